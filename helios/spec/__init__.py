"""The job file (docs/job-file.md): its model, its loading and its validation.

- `model`: the immutable, normalised `JobSpec` and its parts, and `run_spec`;
- `loading`: YAML/JSON text or a file to a validated spec (`loads`, `load_file`);
- `validation`: raw data to a `JobSpec`, or a `SpecError` naming every problem;
- `errors`: `Problem` and `SpecError`.

A job file is refused *before anything changes* when anything in it is wrong, unknown
keys included, and the refusal names every problem with its field path.
"""

from helios.spec.errors import Problem, SpecError
from helios.spec.loading import load_file, loads
from helios.spec.model import (
    KINDS,
    PAYLOAD_ENV,
    FrozenMap,
    HealthCheck,
    JobSpec,
    LogConfig,
    Port,
    RegistryAuth,
    ReschedulePolicy,
    Resources,
    RestartPolicy,
    UpdatePolicy,
    run_spec,
)
from helios.spec.validation import validate

__all__ = [
    "KINDS",
    "PAYLOAD_ENV",
    "FrozenMap",
    "HealthCheck",
    "JobSpec",
    "LogConfig",
    "Port",
    "Problem",
    "RegistryAuth",
    "ReschedulePolicy",
    "Resources",
    "RestartPolicy",
    "SpecError",
    "UpdatePolicy",
    "load_file",
    "loads",
    "run_spec",
    "validate",
]
