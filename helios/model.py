"""The plain records the conductor, the nodes and the CLI exchange and store.

Each is a frozen dataclass with ``to_dict``/``from_dict`` producing only msgpack- and
JSON-friendly values (str, int, float, bool, None, list, dict), because the same records
cross the actor wire, sit in ZooKeeper and are printed by ``--json``. ``from_dict`` ignores
keys it does not know, so a newer writer does not break an older reader during an upgrade;
the one exception is the job spec inside a `JobRecord`, read by `JobSpec.from_dict`, which
validates it as a job file and refuses unknown keys (a dropped key could change what the
container is).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from helios.spec import JobSpec

__all__ = [
    "ACTIVE_STATES",
    "FINISHED_STATES",
    "TASK_STATES",
    "Assignment",
    "JobRecord",
    "NodeInfo",
    "Task",
    "TaskStatus",
    "remember_version",
    "task_ready",
]

TASK_STATES = ("pending", "pulling", "starting", "healthchecking", "running", "stopping",
               "stopped", "exited", "failed", "lost")
# Reported by a node: the container is gone and holds no resources.
FINISHED_STATES = frozenset({"stopped", "exited", "failed"})
ACTIVE_STATES = frozenset(TASK_STATES) - FINISHED_STATES - {"lost"}
NODE_STATUSES = ("up", "down")
DESIRED = ("run", "stop")


#: characters kept of a reason (a task's, an event's): reasons come from nodes and
#: containers (an exit message, a Docker error), so their size is not ours to choose
MAX_REASON = 1000


def clip(text: str, limit: int) -> str:
    """`text`, cut to `limit` characters with a mark that says how much went."""
    return text if len(text) <= limit else text[:limit] + f"… [{len(text) - limit} more]"


def _known(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass(frozen=True)
class NodeInfo:
    """A machine as the conductor sees it: capacity, labels, and whether its session lives.

    ``down_since`` (epoch seconds) is set while ``status`` is down; the reconciler moves the
    node's tasks only once it has been down longer than the failover grace.

    ``eligible`` / ``draining`` / ``drain_deadline`` come from the operator's drain record
    (``/drain/<name>``, see ``conductor/drain.py``), never from the node's own record:
    an ineligible or draining node gets no new placements, and a draining node's tasks
    move away (batch tasks once ``drain_deadline``, epoch seconds, has passed).
    """

    name: str
    address: str = ""
    cpus: float = 1.0
    memory: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    status: str = "up"
    down_since: float | None = None
    runtime: str = "docker"
    publish: str = ""  # the host its tasks' ports are published on (empty: address's)
    eligible: bool = True
    draining: bool = False
    drain_deadline: float | None = None

    def __post_init__(self) -> None:
        if self.status not in NODE_STATUSES:
            raise ValueError(f"node status {self.status!r} is not up or down")

    @property
    def up(self) -> bool:
        return self.status == "up"

    @property
    def schedulable(self) -> bool:
        """May take new placements: up, eligible and not draining."""
        return self.up and self.eligible and not self.draining

    def __hash__(self) -> int:
        return hash((self.name, self.status, self.down_since))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address, "cpus": self.cpus,
                "memory": self.memory, "labels": dict(self.labels), "status": self.status,
                "down_since": self.down_since, "runtime": self.runtime,
                "publish": self.publish}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodeInfo:
        d = _known(cls, data)
        d["labels"] = dict(d.get("labels") or {})
        return cls(**d)


@dataclass(frozen=True)
class Assignment:
    """Desired state of one task: which node runs it, for which job version, and whether
    it should run or stop. The conductor writes it; the node obeys it.

    ``ports`` holds only fixed host ports (name -> port) the scheduler reserved; a port
    without ``host:`` in the job file is picked by the node. ``index`` is the task's slot
    in its job (0..count-1): replacements keep the slot, scaling down removes the highest.
    ``fingerprint`` is the job spec's fingerprint the task was built from; ``spec`` is
    that spec, so a node can run the task from its own disk while the conductor is away.
    """

    id: str
    job: str
    version: int
    node: str
    index: int = 0
    cpus: float = 0.0
    memory: int = 0
    ports: Mapping[str, int] = field(default_factory=dict)
    desired: str = "run"
    fingerprint: str = ""
    created: float = 0.0
    spec: JobSpec | None = field(default=None, compare=False, repr=False)
    #: secret name -> value, only in the message the leader pushes (helios.secrets.resolve);
    #: never in `to_dict()`, so never in the store nor in a node's files
    secrets: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.desired not in DESIRED:
            raise ValueError(f"desired state {self.desired!r} is not run or stop")

    def __hash__(self) -> int:
        return hash((self.id, self.node, self.version, self.desired))

    def replace(self, **changes: Any) -> Assignment:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = {"id": self.id, "job": self.job, "version": self.version, "node": self.node,
             "index": self.index, "cpus": self.cpus, "memory": self.memory,
             "ports": dict(self.ports), "desired": self.desired,
             "fingerprint": self.fingerprint, "created": self.created}
        if self.spec is not None:
            d["spec"] = self.spec.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Assignment:
        d = _known(cls, data)
        d["ports"] = dict(d.get("ports") or {})
        if d.get("spec") is not None:
            d["spec"] = JobSpec.from_dict(d["spec"])
        return cls(**d)


Task = Assignment  # the name the CLI and docs use for "one placed copy of a job"


@dataclass(frozen=True)
class TaskStatus:
    """Last state a node reported for one task (docs/json.md task states).

    ``healthy`` is None when the job has no health check. Timestamps are epoch seconds:
    ``since`` is when ``state`` was entered, ``started``/``finished`` bound the container's
    life, ``updated`` is the report time.
    """

    id: str
    node: str
    job: str = ""
    state: str = "pending"
    healthy: bool | None = None
    container: str | None = None
    ports: Mapping[str, int] = field(default_factory=dict)
    exit_code: int | None = None
    reason: str = ""
    since: float = 0.0
    started: float | None = None
    finished: float | None = None
    updated: float = 0.0
    restarts: int = 0

    def __post_init__(self) -> None:
        if self.state not in TASK_STATES:
            raise ValueError(f"task state {self.state!r} is not one of {TASK_STATES}")
        reason: object = self.reason  # from the wire: typed str, checked all the same
        if not isinstance(reason, str) or len(reason) > MAX_REASON:
            object.__setattr__(self, "reason", clip(str(self.reason), MAX_REASON))

    def __hash__(self) -> int:
        return hash((self.id, self.node, self.state, self.healthy))

    @property
    def finished_state(self) -> bool:
        """The container is gone: its resources are free again."""
        return self.state in FINISHED_STATES

    def replace(self, **changes: Any) -> TaskStatus:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "node": self.node, "job": self.job, "state": self.state,
                "healthy": self.healthy, "container": self.container,
                "ports": dict(self.ports), "exit_code": self.exit_code, "reason": self.reason,
                "since": self.since, "started": self.started, "finished": self.finished,
                "updated": self.updated, "restarts": self.restarts}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskStatus:
        d = _known(cls, data)
        d["ports"] = dict(d.get("ports") or {})
        return cls(**d)


@dataclass(frozen=True)
class JobRecord:
    """A job as stored: its spec plus what the conductor tracks about it.

    ``version`` grows on every change of the spec. ``stopped`` is ``helios job stop``
    (tasks stop, the job stays defined). ``parent`` names the cron or parameterized job a
    run was made from. ``failed_version`` marks a version whose rollout failed, so the
    reconciler stops advancing it; ``previous`` is the last version that rolled out
    fully, which an automatic rollback restores.

    The rollout clock, kept here so that a new leader resumes a rollout where it was
    rather than restarting its deadlines: ``created`` is when the job was first
    submitted, ``submitted`` when this version was; ``progress`` is the last time this
    version's rollout moved (a new task started, an old one stopped first, an old one
    replaced), from which ``update.deadline`` runs for a slot left with no task;
    ``rolled_out`` is the newest version that once had a healthy task in every slot,
    after which an empty slot is plain pending, no longer the rollout's failure.

    ``reschedule`` maps a slot (as a string) to its reschedule tracker (see
    ``conductor/reschedule.py``): when its tasks failed, and until when the slot waits
    before it is placed again. Kept here, like the rollout clock, so a new leader keeps
    the backoff instead of placing a crash-looping slot again at once.
    """

    spec: JobSpec
    version: int = 1
    stopped: bool = False
    parent: str | None = None
    failed_version: int | None = None
    previous: JobSpec | None = field(default=None, compare=False)
    created: float = 0.0
    submitted: float = 0.0
    progress: float = 0.0
    rolled_out: int = 0
    failure: str = ""  # why the rollout of ``failed_version`` failed
    reschedule: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, hash=False)
    # the newest specs submitted, oldest first: [{"version", "submitted", "spec"}], for
    # `job versions` / `job revert` (the last KEEP_VERSIONS, see `remember_version`)
    versions: tuple[Mapping[str, Any], ...] = field(default=(), hash=False)

    @property
    def rolling(self) -> bool:
        """This version is being rolled out over an earlier one (not a first deployment,
        not yet in every slot): a slot it cannot fill counts against its deadline."""
        return (self.rolled_out != self.version and self.failed_version != self.version
                and (self.previous is not None or self.failed_version is not None
                     or self.rolled_out > 0))

    @property
    def progress_since(self) -> float:
        """When the rollout's ``update.deadline`` for an empty slot started running."""
        return max(self.submitted or self.created, self.progress)

    @property
    def name(self) -> str:
        return self.spec.name

    def replace(self, **changes: Any) -> JobRecord:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec.to_dict(), "version": self.version, "stopped": self.stopped,
                "parent": self.parent, "failed_version": self.failed_version,
                "previous": self.previous.to_dict() if self.previous else None,
                "created": self.created, "submitted": self.submitted,
                "progress": self.progress, "rolled_out": self.rolled_out,
                "failure": self.failure,
                "reschedule": {k: dict(v) for k, v in self.reschedule.items()},
                "versions": [dict(v) for v in self.versions]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobRecord:
        d = _known(cls, data)
        d["spec"] = JobSpec.from_dict(d["spec"])
        if d.get("previous") is not None:
            d["previous"] = JobSpec.from_dict(d["previous"])
        d["versions"] = tuple(v for v in d.get("versions") or () if isinstance(v, dict))
        return cls(**d)


def task_ready(spec: JobSpec, st: TaskStatus, now: float | None) -> bool:
    """Whether a task counts as healthy for its rollout and for `--wait`: running and
    passing its health check, or, without a check, running for ``min_healthy_time``
    (so a task that exits at once never passes). ``now`` None skips the time test."""
    if st.state != "running":
        return False
    if spec.health is not None:
        return st.healthy is True
    return now is None or now - st.since >= spec.update.min_healthy_time


#: versions of a job's spec kept in its record for `job versions` / `job revert` (Nomad
#: keeps 6 by default; specs are small, and a record stays far below the store's limit)
KEEP_VERSIONS = 10


def remember_version(versions: tuple[Mapping[str, Any], ...], version: int, spec: JobSpec,
                     now: float) -> tuple[Mapping[str, Any], ...]:
    """``versions`` with ``spec`` recorded as ``version``, the oldest beyond
    KEEP_VERSIONS dropped."""
    entry = {"version": version, "submitted": now, "spec": spec.to_dict()}
    return (*[v for v in versions if v.get("version") != version], entry)[-KEEP_VERSIONS:]
