"""The job file (docs/job-file.md): its model, its loading and its validation.

- `errors`: `Problem` and `SpecError`;
- `parts`: what a spec is made of (`Resources`, `HealthCheck`, ...) and the limits;
- `validation`: raw data to a spec's fields (`check_job`), or a `SpecError` naming every
  problem;
- `model`: the immutable, normalised `JobSpec`, `validate` and `run_spec`;
- `loading`: YAML/JSON text or a file to a validated spec (`loads`, `load_file`).

Each imports only those above it.

A job file is refused *before anything changes* when anything in it is wrong, unknown
keys included, and the refusal names every problem with its field path.
"""

from helios.spec.errors import Problem, SpecError
from helios.spec.loading import load_file, loads
from helios.spec.model import PAYLOAD_ENV, JobSpec, run_spec, validate
from helios.spec.parts import (
    KINDS,
    FrozenMap,
    HealthCheck,
    LogConfig,
    Port,
    RegistryAuth,
    ReschedulePolicy,
    Resources,
    RestartPolicy,
    UpdatePolicy,
)

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
