"""What submitting a job would do, computed by the same pure reconciler the leader runs.

``helios job plan FILE`` shows it without applying anything (like ``nomad job plan``),
and ``helios job run`` returns the part about placement so the CLI can warn at once
that a task fits on no node, instead of leaving the user to find out from ``--wait``
running out. Pure: a cluster state, a candidate record and a time in, plain data out.
"""

from __future__ import annotations

from typing import Any

from helios.conductor.plan import ClusterState, Plan
from helios.conductor.reconcile import reconcile
from helios.model import JobRecord, remember_version
from helios.spec import JobSpec

__all__ = ["candidate_record", "placement_problems", "preview"]

#: spec fields ``job plan`` compares to say what a new version changes
_FIELDS = ("kind", "image", "command", "env", "count", "resources", "ports", "constraints",
           "spread", "health", "restart", "update", "grace", "reschedule", "schedule",
           "timezone", "overlap", "catch_up", "payload", "log", "registry_auth")


def candidate_record(rec: JobRecord | None, spec: JobSpec, now: float,
                     rollback_target: JobSpec | None) -> JobRecord | None:
    """The record ``job run`` writes for ``spec`` over ``rec`` (None: nothing changes).

    ``rollback_target`` is what an automatic rollback of the new version restores."""
    if rec is not None and rec.spec == spec and not rec.stopped:
        return None
    if rec is None:
        return JobRecord(spec=spec, version=1, created=now, submitted=now,
                         versions=remember_version((), 1, spec, now))
    return JobRecord(spec=spec, version=rec.version + 1, parent=rec.parent,
                     previous=rollback_target, created=rec.created, submitted=now,
                     rolled_out=rec.rolled_out,
                     versions=remember_version(rec.versions, rec.version + 1, spec, now))


def changed_fields(old: JobSpec | None, new: JobSpec) -> list[str]:
    """Top-level fields of the job file whose value changes (all of them for a new job)."""
    a = old.to_dict() if old is not None else {}
    b = new.to_dict()
    return [k for k in _FIELDS if a.get(k) != b.get(k)]


def placement_problems(plan: Plan, job: str) -> dict[str, Any]:
    """The part of ``plan`` a submitter must hear about at once: slots that fit on no
    node, and a rollout that fails (e.g. a new version that fits nowhere)."""
    return {"unplaced": [{"index": p.index, "reason": p.explanation}
                         for p in plan.pending if p.job == job and p.kind == "placement"],
            "failures": [f.reason for f in plan.failures if f.job == job]}


def preview(state: ClusterState, candidate: JobRecord, now: float, failover_grace: float,
            registered: Any = None, old: JobSpec | None = None) -> dict[str, Any]:
    """``job plan``: the plan for ``candidate`` in ``state``, limited to its job."""
    jobs = dict(state.jobs)
    jobs[candidate.name] = candidate
    plan = reconcile(jobs, state.nodes, state.assignments, state.statuses, now,
                     failover_grace, registered)
    mine = Plan(
        place=[p for p in plan.place if p.task.job == candidate.name],
        stop=[s for s in plan.stop if s.job == candidate.name],
        lost=[x for x in plan.lost if x.job == candidate.name],
        update=[u for u in plan.update if u.job == candidate.name],
        remove=[r for r in plan.remove if r.job == candidate.name],
        pending=[p for p in plan.pending if p.job == candidate.name],
        rollout=[r for r in plan.rollout if r.job == candidate.name],
        failures=[f for f in plan.failures if f.job == candidate.name])
    return {"name": candidate.name, "version": candidate.version,
            "changes": changed_fields(old, candidate.spec),
            "place": [{"task": p.task.id, "index": p.task.index, "node": p.task.node,
                       "reason": p.reason} for p in mine.place],
            "stop": [{"task": s.task, "node": s.node, "reason": s.reason} for s in mine.stop],
            "update": [{"task": u.task, "node": u.node} for u in mine.update],
            **placement_problems(mine, candidate.name),
            "plan": mine.describe()}
