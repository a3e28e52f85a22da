"""Rolling updates of a service job, one slot at a time, decided from state alone.

A slot (task index) holds at most one task built from the job's current fingerprint (the
*keeper*) and possibly older ones. The rules, re-derived on every reconciliation so a
conductor can die mid-rollout and its successor carries on:

- a healthy keeper replaces the old tasks of its slot: they stop now;
- an unhealthy keeper is waited for, up to ``update.deadline`` after it was placed; a
  keeper that fails or misses the deadline fails the rollout (rolled back when
  ``update.auto_rollback`` and a previous version is known);
- slots with only old tasks are replaced ``update.parallel`` at a time: the new task is
  started first (surge), and only if no node has room does the old one stop first;
- slots being replaced or empty count against ``parallel``, so a rollout never takes more
  than ``parallel`` slots out of healthy service beyond what failures already did;
- a new task lost with its node is not a failure of the version: the slot is replaced
  again (the reconciler passes such tasks with the state ``lost``);
- a new task that fits on no node even in the room of the old task it replaces fails
  the rollout at once (``reconcile._place``) instead of stopping the old task for
  nothing: a rollout never stalls on a task that cannot be placed;
- a slot left with no task (its old one stopped first, or lost, and the room gone since)
  fails the rollout once it has stayed empty for ``update.deadline`` after the rollout
  last moved (``JobRecord.progress_since``, checked in ``reconcile._place``): a rollout
  never waits forever for room. Once every slot has run a healthy task of the version
  (``complete``, kept as ``JobRecord.rolled_out``) an empty slot is plain pending again.

Pure: the reconciler supplies the tasks, a health predicate and ``now``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from helios.conductor.plan import RolloutFailure, RolloutStep
from helios.model import Assignment, JobRecord, TaskStatus
from helios.units import format_duration

__all__ = ["ServiceDecision", "plan_service"]


@dataclass
class ServiceDecision:
    """What to do with a service job's slots below ``count``."""

    stops: list[tuple[Assignment, str]] = field(default_factory=list)
    fills: list[tuple[int, str]] = field(default_factory=list)
    surges: list[tuple[int, Assignment]] = field(default_factory=list)
    steps: list[RolloutStep] = field(default_factory=list)
    failure: RolloutFailure | None = None
    complete: bool = False  # every slot runs a healthy task of this version, nothing old


def _order(tasks: list[Assignment], healthy: Callable[[Assignment], bool]) -> list[Assignment]:
    """Best task to keep first: healthy, then oldest, then by id (deterministic)."""
    if len(tasks) < 2:
        return tasks
    return sorted(tasks, key=lambda t: (not healthy(t), t.created, t.id))


def plan_service(job: JobRecord, live: Mapping[int, list[Assignment]],
                 dead: Mapping[int, list[tuple[Assignment, TaskStatus | None]]],
                 healthy: Callable[[Assignment], bool], now: float,
                 gate: str = "healthy",
                 moving: Callable[[Assignment], bool] | None = None) -> ServiceDecision:
    """Decide stops, fills and surge placements for slots ``0..count-1`` of ``job``.

    ``live`` maps slot -> tasks that run or are starting; ``dead`` maps slot -> tasks that
    ended while they should run (with their status), which the caller already stops.
    ``gate`` names what ``healthy`` checks, for the deadline's failure reason.
    ``moving`` marks tasks that must leave their node (it is draining): they are
    replaced exactly like tasks of an old version, but a replacement that is slow or
    fails is no failure of the version (nothing rolls back; the slot is retried).
    """
    spec, version = job.spec, job.version
    fp = spec.fingerprint()
    out = ServiceDecision()
    failed = job.failed_version == version
    inflight = 0
    candidates: list[tuple[int, Assignment]] = []
    failure_reason: str | None = None
    settled = 0  # slots that keep only a healthy task of this version

    movers: list[tuple[int, Assignment]] = []
    for i in range(spec.count):
        tasks = live.get(i, [])
        moves = {t.id for t in tasks if moving is not None and moving(t)}
        match = _order([t for t in tasks if t.fingerprint == fp and t.id not in moves],
                       healthy)
        old = _order([t for t in tasks if t.fingerprint != fp or t.id in moves], healthy)
        new_version = any(t.fingerprint != fp for t in old)  # a rollout, not only a move
        keeper = match[0] if match else None
        for extra in match[1:]:
            out.stops.append((extra, f"duplicate in slot {i}; keeping {keeper.id}"
                              if keeper else f"duplicate in slot {i}"))
        if keeper is not None and healthy(keeper):
            settled += 1  # its old tasks and duplicates stop in this very plan
            for o in old:
                out.stops.append((o, f"replaced by {keeper.id} (v{version}), healthy"))
                out.steps.append(RolloutStep(spec.name, version, i, o.id, keeper.id, "done"))
            continue
        if keeper is not None:
            inflight += 1  # a new task not yet healthy: part of the current batch
            if old:
                out.steps.append(RolloutStep(spec.name, version, i, old[0].id, keeper.id,
                                             "wait"))
                waited = now - keeper.created
                if not failed and waited > spec.update.deadline and failure_reason is None \
                        and new_version:
                    failure_reason = (f"{keeper.id} not {gate} within "
                                      f"{format_duration(spec.update.deadline)}")
            continue
        if old:
            for gone, st in dead.get(i, []):
                if st is not None and st.state == "lost":
                    continue  # its node died: not the new version's fault, place again
                if gone.fingerprint == fp and not failed and failure_reason is None \
                        and new_version:
                    why = f"{st.state}: {st.reason}" if st is not None and st.reason else \
                        (st.state if st is not None else "ended")
                    failure_reason = f"new task {gone.id} {why}"
            for extra in old[1:]:
                out.stops.append((extra, f"duplicate in slot {i}"))
            (candidates if new_version else movers).append((i, old[0]))
        else:
            inflight += 1
            out.fills.append((i, "missing"))

    if failure_reason is not None:
        rollback = spec.update.auto_rollback and job.previous is not None
        out.failure = RolloutFailure(spec.name, version, failure_reason, rollback)
        failed = True
    budget = max(0, spec.update.parallel - inflight)
    if not failed:
        out.surges.extend(candidates[:budget])
        budget = max(0, budget - len(candidates))
    # Moves off draining nodes go on even after a failed rollout: the node must empty.
    out.surges.extend(movers[:budget])
    out.complete = settled == spec.count
    return out
