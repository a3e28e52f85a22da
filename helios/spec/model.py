"""The job spec's model: a validated :class:`JobSpec` is immutable and normalised (sizes
in bytes, durations in seconds, defaults filled in), so two files that mean the same thing
compare equal, and ``to_dict``/``from_dict`` round-trip it through ZooKeeper.
:meth:`JobSpec.fingerprint` hashes only what a running container was built from; the
reconciler compares it to decide whether a change needs new tasks (a new image) or none
(a new ``count``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

KINDS = ("service", "batch", "cron", "parameterized")
RESTART_POLICIES = ("always", "on-failure", "never")
LOG_DRIVERS = ("json-file", "local", "none", "syslog", "journald", "gelf", "fluentd",
               "awslogs", "splunk", "gcplogs", "logentries", "etwlogs")
MIB = 1024 * 1024
MIN_MEMORY = 6 * MIB  # Docker refuses a smaller memory limit; say so at submit time
#: the longest job name people submit
MAX_NAME = 63
#: the longest stored name: a run of a cron/parameterized job appends "-<run id>"
MAX_STORED_NAME = 255


class FrozenMap(Mapping[str, Any]):
    """An immutable, hashable mapping with sorted keys, so a JobSpec can be frozen, hashed
    and compared regardless of the order fields were written in."""

    __slots__ = ("_d", "_h")

    def __init__(self, items: Mapping[str, Any] | None = None):
        self._d: dict[str, Any] = dict(sorted((items or {}).items(), key=lambda kv: kv[0]))
        self._h: int | None = None

    def __getitem__(self, key: str) -> Any:
        return self._d[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __hash__(self) -> int:
        if self._h is None:
            self._h = hash(tuple(self._d.items()))
        return self._h

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._d == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenMap({self._d!r})"

    def to_dict(self) -> dict[str, Any]:
        return dict(self._d)


@dataclass(frozen=True)
class Resources:
    """What one task reserves on its node; the scheduler packs by these."""

    cpus: float = 0.1
    memory: int = 64 * MIB

    def to_dict(self) -> dict[str, Any]:
        return {"cpus": self.cpus, "memory": self.memory}


@dataclass(frozen=True)
class Port:
    """A container port; ``host`` is fixed when given, else the node picks one."""

    container: int
    host: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"container": self.container} | ({"host": self.host} if self.host else {})


@dataclass(frozen=True)
class HealthCheck:
    """How the node decides a task is healthy (gates rollouts and endpoints).

    ``type`` is http, tcp or exec; ``port`` names an entry of ``ports`` (or is a container
    port number); ``start_grace`` is how long after start failures do not count, and
    ``failures`` how many consecutive failures make a healthy task unhealthy.
    """

    type: str
    port: str | int | None = None
    path: str = "/"
    command: tuple[str, ...] = ()
    interval: float = 10.0
    timeout: float = 2.0
    start_grace: float = 5.0
    failures: int = 3

    def to_dict(self) -> dict[str, Any]:
        if self.type == "http":
            check: dict[str, Any] = {"http": {"port": self.port, "path": self.path}}
        elif self.type == "tcp":
            check = {"tcp": {"port": self.port}}
        else:
            check = {"exec": list(self.command)}
        return check | {"interval": self.interval, "timeout": self.timeout,
                        "start_grace": self.start_grace, "failures": self.failures}


@dataclass(frozen=True)
class RestartPolicy:
    """What the node does when a container exits: policy, attempts (None = unlimited), and
    the base of the exponential backoff between attempts."""

    policy: str = "always"
    max: int | None = None
    backoff: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "max": self.max, "backoff": self.backoff}


@dataclass(frozen=True)
class UpdatePolicy:
    """Rolling update: tasks replaced at once, time for a new task to become healthy, and
    whether a failed rollout goes back to the previous version by itself."""

    parallel: int = 1
    deadline: float = 300.0
    auto_rollback: bool = True
    # A task of a service without a health check counts as healthy once it has run this
    # long (Nomad's min_healthy_time): one that exits at once must not pass for healthy.
    min_healthy_time: float = 10.0

    def to_dict(self) -> dict[str, Any]:
        return {"parallel": self.parallel, "deadline": self.deadline,
                "auto_rollback": self.auto_rollback,
                "min_healthy_time": self.min_healthy_time}


@dataclass(frozen=True)
class ReschedulePolicy:
    """When the conductor places a service slot again after its task failed for good (a
    pull that failed, a crash loop past ``restart.max``, a lost node), as Nomad's
    ``reschedule`` block: the first wait is ``delay``, doubled for each failure of the
    slot in a row before it, capped at ``max_delay``. ``attempts`` (None = unlimited)
    bounds the reschedules within ``interval``; past it the slot stays empty until the
    oldest attempt leaves the interval. Why: a failure that recurs at once (a missing
    image) must not become a loop that burns a node and floods the history."""

    delay: float = 30.0
    max_delay: float = 3600.0
    attempts: int | None = None
    interval: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"delay": self.delay, "max_delay": self.max_delay,
                "attempts": "unlimited" if self.attempts is None else self.attempts,
                "interval": self.interval}


#: Nomad's batch default: rescheduled once within 24h, 5s after the failure
BATCH_RESCHEDULE = ReschedulePolicy(delay=5.0, max_delay=5.0, attempts=1, interval=86400.0)


@dataclass(frozen=True)
class LogConfig:
    """Docker log driver and its options, passed through so logs go where operators route
    Docker logs already."""

    driver: str = "json-file"
    options: FrozenMap = field(default_factory=FrozenMap)

    def to_dict(self) -> dict[str, Any]:
        return {"driver": self.driver, "options": self.options.to_dict()}


@dataclass(frozen=True)
class RegistryAuth:
    """Credentials for pulling from a private registry (kept out of repr and logs)."""

    username: str
    password: str = field(repr=False)
    server: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {"username": self.username, "password": self.password}
        return d | ({"server": self.server} if self.server else {})


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
        d["env"] = self.env.to_dict()
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
        # imported here: validation builds the model's classes, so it imports this module
        from helios.spec.validation import validate

        return validate(data, max_name=MAX_STORED_NAME)

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
