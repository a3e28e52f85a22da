"""The parts a job spec is made of (resources, ports, health check, restart, update,
reschedule and log policies, registry credentials) and the limits the validation
checks them against. Immutable and hashable, like the `JobSpec` they make up.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from helios.secrets.refs import SecretRef

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
    """Credentials for pulling from a private registry (kept out of repr and logs):
    literal, or `secret`, a reference to a secret holding {"username", "password"} JSON
    (docs/security.md), resolved only on the node that pulls."""

    username: str = ""
    password: str = field(default="", repr=False)
    server: str | None = None
    secret: SecretRef | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = (self.secret.to_dict() if self.secret is not None else
                             {"username": self.username, "password": self.password})
        return d | ({"server": self.server} if self.server else {})
