"""A plan: what the reconciler decided should change, as plain data.

Why data and not calls: the conductor applies a plan (ZooKeeper writes, messages to
nodes), ``helios job plan``-style output prints it, logs record it, and tests assert on it
and feed it back in. :func:`apply` is the pure meaning of a plan on the desired state, the
same change the conductor makes in ZooKeeper; running the reconciler on the result gives a
plan with no changes (only reports such as ``pending`` may repeat).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from helios.model import Assignment, JobRecord, NodeInfo, TaskStatus, remember_version

__all__ = [
    "ClusterState",
    "InPlace",
    "Lost",
    "Pending",
    "Placement",
    "Plan",
    "Remove",
    "RescheduleMark",
    "RolloutFailure",
    "RolloutMark",
    "RolloutStep",
    "Stop",
    "apply",
]


def _plain(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


@dataclass(frozen=True)
class Placement:
    """Start a new task: write ``task`` (an Assignment with its node) and tell the node."""

    task: Assignment
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task.to_dict(), "reason": self.reason}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Placement:
        return cls(task=Assignment.from_dict(d["task"]), reason=d["reason"])


@dataclass(frozen=True)
class Stop:
    """Set a task's desired state to stop (the node stops it, after the job's grace)."""

    task: str
    job: str
    node: str
    reason: str


@dataclass(frozen=True)
class Lost:
    """The task's node is down past the failover grace: mark it lost and stop it there
    when the node comes back; a replacement is placed in the same plan when possible."""

    task: str
    job: str
    node: str
    reason: str


@dataclass(frozen=True)
class InPlace:
    """The job changed in a way the running container does not care about (count,
    restart policy, ...): move the task to the new version without replacing it."""

    task: str
    job: str
    node: str
    version: int


@dataclass(frozen=True)
class Remove:
    """Forget a stopped task: delete its assignment and its status (garbage collection)."""

    task: str
    job: str
    node: str
    reason: str


@dataclass(frozen=True)
class Pending:
    """A task that should exist but is not placed now; ``explanation`` says why.

    ``kind`` is ``placement`` (it fits on no node: what ``job run`` warns about),
    ``waiting`` (a rollout waits for an old task to stop) or ``reschedule`` (the slot
    backs off after a failure)."""

    job: str
    index: int
    explanation: str
    kind: str = "placement"


@dataclass(frozen=True)
class RolloutStep:
    """One slot of a rolling update: start ``new``, then stop ``old`` once ``new`` is
    healthy. ``action`` is ``start`` (new placed this plan), ``wait`` (new not healthy
    yet), ``stop-first`` (no room to start first: old stops, new follows) or ``done``
    (old stopped because new is healthy)."""

    job: str
    version: int
    index: int
    old: str | None
    new: str | None
    action: str


@dataclass(frozen=True)
class RolloutFailure:
    """A rollout that cannot succeed (a new task failed or missed the update deadline).
    With ``rollback`` the conductor restores the previous spec as a new version."""

    job: str
    version: int
    reason: str
    rollback: bool


@dataclass(frozen=True)
class RolloutMark:
    """Rollout bookkeeping kept in the job's record (``JobRecord.progress`` and
    ``rolled_out``), so a new leader resumes with the same deadlines: ``progress`` when
    this plan moved the rollout (its update deadline for an empty slot restarts),
    ``rolled_out`` when the version now has a healthy task in every slot."""

    job: str
    version: int
    progress: bool = False
    rolled_out: bool = False


@dataclass(frozen=True)
class RescheduleMark:
    """A slot's reschedule tracker after a failure (``conductor/reschedule.py``), kept
    in the job's record (``JobRecord.reschedule``) so the backoff survives a failover."""

    job: str
    version: int
    index: int
    tracker: Mapping[str, Any]


_SIMPLE = {"stop": Stop, "lost": Lost, "update": InPlace, "remove": Remove,
           "pending": Pending, "rollout": RolloutStep, "failures": RolloutFailure,
           "marks": RolloutMark, "reschedules": RescheduleMark}


@dataclass
class Plan:
    """Everything one reconciliation decided. Lists are in a deterministic order."""

    place: list[Placement] = field(default_factory=list)
    stop: list[Stop] = field(default_factory=list)
    lost: list[Lost] = field(default_factory=list)
    update: list[InPlace] = field(default_factory=list)
    remove: list[Remove] = field(default_factory=list)
    pending: list[Pending] = field(default_factory=list)
    rollout: list[RolloutStep] = field(default_factory=list)
    failures: list[RolloutFailure] = field(default_factory=list)
    marks: list[RolloutMark] = field(default_factory=list)
    reschedules: list[RescheduleMark] = field(default_factory=list)

    def has_changes(self) -> bool:
        """Whether applying the plan changes the desired state. ``pending`` and waiting
        rollout steps are reports: they repeat until the cluster changes."""
        return bool(self.place or self.stop or self.lost or self.update or self.remove
                    or self.failures or self.marks or self.reschedules)

    def __bool__(self) -> bool:
        return self.has_changes()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"place": [p.to_dict() for p in self.place]}
        for key in _SIMPLE:
            d[key] = [_plain(x) for x in getattr(self, key)]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Plan:
        plan = cls(place=[Placement.from_dict(p) for p in d.get("place", [])])
        for key, typ in _SIMPLE.items():
            setattr(plan, key, [typ(**x) for x in d.get(key, [])])
        return plan

    def describe(self) -> list[str]:
        """Human lines grouped by job, like ``nomad job plan``."""
        by_job: dict[str, list[str]] = {}

        def add(job: str, line: str) -> None:
            by_job.setdefault(job, []).append(line)

        for f in self.failures:
            then = "rolling back to the previous version" if f.rollback else "rollout halted"
            add(f.job, f"x rollout of v{f.version} failed: {f.reason}; {then}")
        for p in self.place:
            t = p.task
            add(t.job, f"+ place {t.id} (v{t.version}, slot {t.index}) on {t.node}: {p.reason}")
        for s in self.stop:
            add(s.job, f"- stop {s.task} on {s.node}: {s.reason}")
        for lo in self.lost:
            add(lo.job, f"! lost {lo.task} on {lo.node}: {lo.reason}")
        for u in self.update:
            add(u.job, f"~ update {u.task} on {u.node} to v{u.version} in place")
        for r in self.rollout:
            text = {
                "start": f"started {r.new}; {r.old} stops once it is healthy",
                "wait": f"waiting for {r.new} to be healthy (and registered, with ports) "
                        f"before stopping {r.old}",
                "stop-first": f"no room to start first: stopping {r.old}, then its "
                              "replacement",
                "done": f"{r.new} is healthy; stopping {r.old}",
            }.get(r.action, r.action)
            add(r.job, f"> rollout v{r.version} slot {r.index}: {text}")
        for m in self.marks:
            if m.rolled_out:
                add(m.job, f"= v{m.version} has a healthy task in every slot")
        for rs in self.reschedules:
            due = rs.tracker.get("due")
            add(rs.job, f"! slot {rs.index} failed ({rs.tracker.get('reason', '')}); "
                        + ("attempts used up" if due is None else "rescheduling after a delay"))
        for pe in self.pending:
            add(pe.job, f"? pending slot {pe.index}: {pe.explanation}")
        for rm in self.remove:
            add(rm.job, f"  forget {rm.task} on {rm.node}: {rm.reason}")
        if not by_job:
            return ["no changes"]
        lines = []
        for job in sorted(by_job):
            lines.append(f"job {job}:")
            lines.extend(f"  {line}" for line in by_job[job])
        return lines

    def __str__(self) -> str:
        return "\n".join(self.describe())


@dataclass
class ClusterState:
    """The reconciler's whole input, keyed for lookup: handy for the conductor's cache
    and for tests that apply plans repeatedly."""

    jobs: dict[str, JobRecord] = field(default_factory=dict)
    nodes: dict[str, NodeInfo] = field(default_factory=dict)
    assignments: dict[str, Assignment] = field(default_factory=dict)
    statuses: dict[str, TaskStatus] = field(default_factory=dict)
    #: node -> its drain record (drain.DrainState), kept apart from the node's own record
    drains: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, jobs: Iterable[JobRecord] = (), nodes: Iterable[NodeInfo] = (),
           assignments: Iterable[Assignment] = (),
           statuses: Iterable[TaskStatus] = ()) -> ClusterState:
        return cls(jobs={j.name: j for j in jobs}, nodes={n.name: n for n in nodes},
                   assignments={a.id: a for a in assignments},
                   statuses={s.id: s for s in statuses})

    def copy(self) -> ClusterState:
        return ClusterState(dict(self.jobs), dict(self.nodes), dict(self.assignments),
                            dict(self.statuses), dict(self.drains))


def apply(state: ClusterState, plan: Plan, now: float = 0.0) -> ClusterState:
    """The desired-state change a plan means (what the conductor writes), as a new state.

    Node behaviour (containers starting, stopping, reporting) is not simulated here;
    tests do that separately.
    """
    out = state.copy()
    for f in plan.failures:
        job = out.jobs.get(f.job)
        if job is None or job.version != f.version:
            continue
        if f.rollback and job.previous is not None:
            out.jobs[f.job] = job.replace(spec=job.previous, version=job.version + 1,
                                          previous=None, failed_version=job.version,
                                          submitted=now, progress=0.0, failure=f.reason,
                                          versions=remember_version(
                                              job.versions, job.version + 1, job.previous,
                                              now))
        else:
            out.jobs[f.job] = job.replace(failed_version=job.version, failure=f.reason)
    for m in plan.marks:
        job = out.jobs.get(m.job)
        if job is None or job.version != m.version:
            continue
        if m.progress:
            job = job.replace(progress=now)
        if m.rolled_out:
            job = job.replace(rolled_out=m.version)
        out.jobs[m.job] = job
    for rs in plan.reschedules:
        job = out.jobs.get(rs.job)
        if job is None or job.version != rs.version:
            continue
        kept = {k: v for k, v in job.reschedule.items() if v.get("version") == job.version}
        out.jobs[rs.job] = job.replace(reschedule={**kept, str(rs.index): dict(rs.tracker)})
    for p in plan.place:
        out.assignments[p.task.id] = p.task
    for s in plan.stop:
        a = out.assignments.get(s.task)
        if a is not None and a.node == s.node:
            out.assignments[s.task] = a.replace(desired="stop")
        else:  # an orphan copy reported by a node: record that it must stop there
            out.assignments[s.task] = Assignment(id=s.task, job=s.job, version=0,
                                                 node=s.node, desired="stop", created=now)
    for lo in plan.lost:
        a = out.assignments.get(lo.task)
        if a is not None:
            out.assignments[lo.task] = a.replace(desired="stop")
        st = out.statuses.get(lo.task)
        out.statuses[lo.task] = (st.replace(state="lost", reason=lo.reason, since=now)
                                 if st is not None else
                                 TaskStatus(id=lo.task, node=lo.node, job=lo.job,
                                            state="lost", reason=lo.reason, since=now,
                                            updated=now))
    for u in plan.update:
        a = out.assignments.get(u.task)
        job = out.jobs.get(u.job)
        if a is not None:
            out.assignments[u.task] = a.replace(version=u.version,
                                                spec=job.spec if job else a.spec)
    for r in plan.remove:
        out.assignments.pop(r.task, None)
        st = out.statuses.get(r.task)
        if st is not None and st.node == r.node:
            del out.statuses[r.task]
    return out
