"""The job spec's model: a validated :class:`JobSpec` is immutable and normalised (sizes
in bytes, durations in seconds, defaults filled in), so two files that mean the same thing
compare equal, and ``to_dict``/``from_dict`` round-trip it through ZooKeeper.
:meth:`JobSpec.fingerprint` hashes only what a running container was built from; the
reconciler compares it to decide whether a change needs new tasks (a new image) or none
(a new ``count``). `validate` is the one way from raw data to a `JobSpec`: the rules are
in `validation.py` (`check_job`), which knows the parts but not this class, so the two
modules do not import each other.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from helios.secrets.refs import plain
from helios.spec.parts import (
    BATCH_RESCHEDULE,
    MAX_NAME,
    MAX_STORED_NAME,
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
from helios.spec.validation import check_job

__all__ = ["PAYLOAD_ENV", "JobSpec", "run_spec", "validate"]


@dataclass(frozen=True)
class JobSpec:
    """A validated, normalised job file. Build one with :func:`validate` or :func:`loads`."""

    name: str
    kind: str = "service"
    image: str | None = None
    command: tuple[str, ...] | None = None
    env: FrozenMap = field(default_factory=FrozenMap)
    count: int = 1
    resources: Resources = field(default_factory=Resources)
    ports: Mapping[str, Port] = field(default_factory=FrozenMap)  # FrozenMap of Port
    constraints: FrozenMap = field(default_factory=FrozenMap)
    spread: bool = False
    health: HealthCheck | None = None
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    update: UpdatePolicy = field(default_factory=UpdatePolicy)
    grace: float = 3.0
    reschedule: ReschedulePolicy | None = None  # service and batch (validate fills it in)
    schedule: str | None = None
    timezone: str | None = None
    overlap: str | None = None
    catch_up: str | None = None
    payload: str | None = None
    log: LogConfig = field(default_factory=LogConfig)
    registry_auth: RegistryAuth | None = None
    user: str | None = None
    _fp: str | None = field(default=None, init=False, repr=False, compare=False, hash=False)

    # ---- storage

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/msgpack data that :meth:`from_dict` turns back into an equal spec."""
        d: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.image is not None:
            d["image"] = self.image
        if self.command is not None:
            d["command"] = list(self.command)
        d["env"] = {k: plain(v) for k, v in self.env.items()}  # references as mappings
        d["count"] = self.count
        d["resources"] = self.resources.to_dict()
        d["ports"] = {k: p.to_dict() for k, p in self.ports.items()}
        d["constraints"] = self.constraints.to_dict()
        d["spread"] = self.spread
        if self.health is not None:
            d["health"] = self.health.to_dict()
        d["restart"] = self.restart.to_dict()
        d["update"] = self.update.to_dict()
        d["grace"] = self.grace
        if self.reschedule is not None:
            d["reschedule"] = self.reschedule.to_dict()
        for key in ("schedule", "timezone", "overlap", "catch_up", "payload"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        d["log"] = self.log.to_dict()
        if self.registry_auth is not None:
            d["registry_auth"] = self.registry_auth.to_dict()
        if self.user is not None:
            d["user"] = self.user
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobSpec:
        """Validate stored data as a job file (allowing runs' longer names): unknown keys
        are refused like any other problem, and SpecError lists every problem. Unlike the
        records of `helios.model`, a spec is never read leniently: a key this version does
        not know could change what the container is, so it must not be dropped."""
        return cls(**check_job(data, max_name=MAX_STORED_NAME))

    def fingerprint(self) -> str:
        """Hash of what a task's container is made of: changing it needs new tasks.

        Left out on purpose: count, spread, restart, update, grace and the cron/dispatch
        settings, which the conductor or node apply without replacing a running container.
        """
        if self._fp is not None:
            return self._fp
        d = self.to_dict()
        keep = ("kind", "image", "command", "env", "resources", "ports", "constraints",
                "health", "log", "registry_auth")
        fields = {k: d.get(k) for k in keep}
        if self.user is not None:  # only when set: older specs keep their fingerprint
            fields["user"] = self.user
        canon = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        fp = hashlib.sha256(canon.encode()).hexdigest()[:16]
        object.__setattr__(self, "_fp", fp)  # frozen: cache the hash, it is pure
        return fp

    def replace(self, **changes: Any) -> JobSpec:
        """A copy with some fields changed (not re-validated: for code, not for users)."""
        return dataclasses.replace(self, **changes)


PAYLOAD_ENV = "HELIOS_PAYLOAD"


def run_spec(parent: JobSpec, run_id: str, payload: str | None = None,
             env: Mapping[str, str] | None = None) -> JobSpec:
    """The batch job one cron tick or one dispatch of ``parent`` runs as.

    Why: the reconciler knows how to run batch jobs; a cron or parameterized job is only a
    template, and each firing becomes a child batch job named ``<parent>-<run_id>``
    (like Nomad's periodic and dispatched children). A dispatch ``payload`` (text, e.g.
    JSON) reaches the task as the ``HELIOS_PAYLOAD`` environment variable; ``env`` adds
    more variables.
    """
    merged = dict(parent.env) | dict(env or {})
    if payload is not None:
        merged[PAYLOAD_ENV] = payload
    return dataclasses.replace(
        parent, name=f"{parent.name}-{run_id}", kind="batch", env=FrozenMap(merged),
        schedule=None, timezone=None, overlap=None, catch_up=None, payload=None,
        reschedule=BATCH_RESCHEDULE)


def validate(data: Mapping[str, Any], *, max_name: int = MAX_NAME) -> JobSpec:
    """Turn raw job-file data into a JobSpec, or raise SpecError naming every problem.

    ``max_name`` is 63 for what people submit; stored specs (``from_dict``) allow the
    longer names of runs made by :func:`run_spec`.
    """
    return JobSpec(**check_job(data, max_name=max_name))
