"""Reschedule backoff of service slots: when a slot whose task failed is placed again.

Pure, like the reconciler that calls it. A task that failed for good (its pull failed, it
crashed past ``restart.max``, its node was lost) leaves its slot empty; placed again at
once, a failure that recurs at once (a missing image, bad credentials, a command that
exits) becomes a loop that burns its node and floods the history. So each slot keeps a
small tracker in the job's record (``JobRecord.reschedule``, in the store, so a new leader
keeps the backoff): the version it counts for, the last failed task it recorded, the
times of its recent failures, and until when the slot waits. The rules are Nomad's
``reschedule`` block (``spec.ReschedulePolicy``):

- the wait after a failure is ``delay * 2**n`` capped at ``max_delay``, where ``n`` is the
  number of the slot's failures in a row before it (each within twice ``max_delay`` of
  the next: a task that ran longer than that starts again from ``delay``);
- a lost task (its node down past the failover grace, which was its wait) is placed again
  at once, but counts, so a slot whose tasks keep being lost backs off too;
- past ``attempts`` failures within ``interval`` the slot stays empty until the oldest
  of them leaves the window;
- a new version of the job starts with fresh trackers.

A failure also ends the version's deployment once ``update.deadline`` has passed since it
started (or last moved) without a healthy task in every slot, see :func:`deadline_failure`:
a first deployment with a missing image fails instead of retrying in silence.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from helios.conductor.plan import RescheduleMark, RolloutFailure
from helios.model import Assignment, JobRecord, TaskStatus
from helios.spec import ReschedulePolicy
from helios.units import format_duration

__all__ = ["Hold", "Tracker", "deadline_failure", "hold", "record", "reschedule_due",
           "retries_batch_task", "slot_holds"]

_MAX_EVENTS = 64  # a tracker never grows past this, whatever the window


@dataclass(frozen=True)
class Tracker:
    """One slot's failures for one job version, and until when it waits.

    ``due`` is None when the slot used up its ``attempts``."""

    version: int
    task: str  # "<id>@<created>" of the last failed task counted
    events: tuple[float, ...]
    due: float | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "task": self.task, "events": list(self.events),
                "due": self.due, "reason": self.reason}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Tracker:
        return cls(version=int(d.get("version", 0)), task=str(d.get("task", "")),
                   events=tuple(float(t) for t in d.get("events") or ()),
                   due=None if d.get("due") is None else float(d["due"]),
                   reason=str(d.get("reason", "")))


@dataclass(frozen=True)
class Hold:
    """A slot that must not be placed now: until when (None: not known) and why."""

    index: int
    until: float | None
    reason: str
    attempt: int

    def explain(self, now: float) -> str:
        if self.until is None:
            return f"not rescheduled: {self.reason}"
        return (f"rescheduling in {format_duration(math.ceil(max(0.0, self.until - now)))} "
                f"(failure {self.attempt}): {self.reason}")


def _recent(policy: ReschedulePolicy, events: tuple[float, ...], now: float) -> list[float]:
    """The failures that count against ``attempts``: those within ``interval``."""
    if policy.interval <= 0:
        return list(events)
    return [t for t in events if t > now - policy.interval]


def _streak(policy: ReschedulePolicy, events: list[float], now: float) -> int:
    """How many failures came in a row before ``now``: each within twice ``max_delay``
    of the next. A task that ran longer than that before failing starts the slot's
    delay again from ``delay``."""
    n, after = 0, now
    for t in reversed(events):
        if after - t > 2 * policy.max_delay:
            break
        n, after = n + 1, t
    return n


def record(policy: ReschedulePolicy, prev: Tracker | None, version: int, task: str,
           reason: str, now: float, *, immediate: bool = False) -> Tracker:
    """The tracker after ``task`` (of ``version``) failed at ``now`` for ``reason``."""
    events = list(prev.events) if prev and prev.version == version else []
    if policy.attempts is not None and len(_recent(policy, tuple(events), now)) \
            >= policy.attempts:
        return Tracker(version, task, tuple(events), None, reason)
    n = _streak(policy, events, now)
    wait = 0.0 if immediate else min(policy.delay * 2.0 ** min(n, 60), policy.max_delay)
    return Tracker(version, task, (*events, now)[-_MAX_EVENTS:], now + wait, reason)


def hold(policy: ReschedulePolicy, tracker: Tracker | None, version: int, index: int,
         now: float) -> Hold | None:
    """Whether slot ``index`` must wait before a new task is placed in it."""
    if tracker is None or tracker.version != version:
        return None
    recent = _recent(policy, tracker.events, now)
    if tracker.due is None:
        assert policy.attempts is not None
        if len(recent) < policy.attempts:
            return None  # the oldest attempt left the window
        until = recent[0] + policy.interval if recent else None
        return Hold(index, until, f"{policy.attempts} attempts within "
                    f"{format_duration(policy.interval)} used; last failure: "
                    f"{tracker.reason}",
                    len(recent))
    if tracker.due > now:
        return Hold(index, tracker.due, tracker.reason, len(recent))
    return None


def _describe(st: TaskStatus | None) -> str:
    if st is None:
        return "ended"
    return f"{st.state}: {st.reason}" if st.reason else st.state


def slot_holds(job: JobRecord, dead: Mapping[int, list[tuple[Assignment, TaskStatus | None]]],
               now: float) -> tuple[list[RescheduleMark], dict[int, Hold]]:
    """Record this pass's failures of ``job``'s slots and say which slots wait.

    ``dead`` maps a slot to the tasks that ended in it while they should run (a lost
    one with the state ``lost``), as the reconciler found them this pass."""
    policy = job.spec.reschedule
    if policy is None:
        return [], {}
    trackers = {int(k): Tracker.from_dict(v) for k, v in job.reschedule.items()
                if k.isdigit()}
    marks: list[RescheduleMark] = []
    for i in sorted(dead):
        if i >= job.spec.count:
            continue
        prev = trackers.get(i)
        for a, st in sorted(dead[i], key=lambda t: (t[0].created, t[0].id)):
            key = f"{a.id}@{a.created!r}"  # ids of forgotten tasks are drawn again
            if prev is not None and prev.task == key and prev.version == job.version:
                continue  # already counted
            lost = st is not None and st.state == "lost"
            prev = record(policy, prev, job.version, key, f"{a.id} {_describe(st)}", now,
                          immediate=lost)
        if prev is not None and prev != trackers.get(i):
            trackers[i] = prev
            marks.append(RescheduleMark(job.name, job.version, i, prev.to_dict()))
    holds = {}
    for i, tr in trackers.items():
        h = hold(policy, tr, job.version, i, now)
        if h is not None and i < job.spec.count:
            holds[i] = h
    return marks, holds


def retries_batch_task(job: JobRecord, a: Assignment, st: TaskStatus, now: float) -> bool:
    """Whether a batch task that finished ``failed`` (its restarts used up) is run
    again by the job's reschedule policy (Nomad's batch default: once within 24h, after
    5s), rather than its slot being done, failed."""
    policy = job.spec.reschedule
    if policy is None or st.state != "failed" or a.index >= job.spec.count:
        return False
    raw = job.reschedule.get(str(a.index))
    prev = Tracker.from_dict(raw) if raw is not None else None
    return record(policy, prev, job.version, f"{a.id}@{a.created!r}", "", now).due is not None


def deadline_failure(job: JobRecord, now: float) -> RolloutFailure | None:
    """A version not yet out in every slot whose tasks failed and whose
    ``update.deadline`` (from its submission or its rollout's last move) has passed:
    its deployment failed, rolled back where a previous version is known."""
    spec = job.spec
    if (spec.reschedule is None or job.failed_version == job.version
            or job.rolled_out == job.version):
        return None
    failures = [Tracker.from_dict(v) for v in job.reschedule.values()]
    failures = [t for t in failures if t.version == job.version and t.events]
    if not failures or now <= job.progress_since + spec.update.deadline:
        return None
    last = max(failures, key=lambda t: t.events[-1])
    rollback = spec.update.auto_rollback and job.previous is not None
    return RolloutFailure(job.name, job.version,
                          f"not healthy in every slot within "
                          f"{format_duration(spec.update.deadline)}; last failure: "
                          f"{last.reason}", rollback)


def reschedule_due(jobs: Iterable[JobRecord], now: float) -> list[float]:
    """Seconds until each waiting slot may be placed again: the leader wakes then rather
    than at its next periodic pass."""
    out = []
    for job in jobs:
        for raw in job.reschedule.values():
            due = raw.get("due")
            if raw.get("version") == job.version and due is not None and due > now:
                out.append(float(due) - now)
    return out
