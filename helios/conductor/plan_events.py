"""History events and push targets of a plan the leader applied: pure functions of the
plan and the states around it, so what the conductor records and whom it tells are
tested without a cluster."""

from __future__ import annotations

from typing import Any

from helios.conductor import views
from helios.conductor.history import event
from helios.conductor.plan import ClusterState, Plan
from helios.units import format_duration

__all__ = ["plan_events", "rollout_events", "touched_nodes"]


def plan_events(plan: Plan, now: float) -> list[dict[str, Any]]:
    """History records for the conductor's own decisions."""
    out = []
    for p in plan.place:
        out.append(event(p.task.job, p.task.id, p.task.node, "placed", p.reason, at=now,
                         version=p.task.version))
    for s in plan.stop:
        out.append(event(s.job, s.task, s.node, "stop", s.reason, at=now))
    for lo in plan.lost:
        out.append(event(lo.job, lo.task, lo.node, "lost", lo.reason, at=now))
    for rs in plan.reschedules:
        due = rs.tracker.get("due")
        wait = ("attempts used up" if due is None else
                f"placed again in {format_duration(max(0.0, float(due) - now))}")
        out.append(event(rs.job, "", "", "reschedule", f"slot {rs.index}: "
                         f"{rs.tracker.get('reason', '')}; {wait}", at=now,
                         version=rs.version, slot=rs.index))
    for f in plan.failures:
        out.append(event(f.job, "", "", "rollout failed", f.reason, at=now,
                         version=f.version))
    return out


#: history event names of rollout steps (RolloutStep.action); `wait` is a report only
_STEP_EVENTS = {"start": "rollout start", "stop-first": "rollout stop-first",
                "done": "rollout replaced"}


def rollout_events(plan: Plan, after: ClusterState, now: float) -> list[dict[str, Any]]:
    """History of a rollout: each slot's step (new task started, old one stopped first
    for lack of room, old one replaced once the new is healthy), then `rollout complete`
    when a step finished the job's last slot. Only steps that change something are
    recorded, and each happens once (the reconciler moves past it), so a new leader
    repeats none of them."""
    out = []
    finishing: set[str] = set()
    for r in plan.rollout:
        name = _STEP_EVENTS.get(r.action)
        if name is None:
            continue
        out.append(event(r.job, r.new or r.old or "", "", name,
                         next(iter(Plan(rollout=[r]).describe()[1:]), "").strip(),
                         at=now, version=r.version, slot=r.index, old=r.old, new=r.new))
        if r.action == "done":
            finishing.add(r.job)
    for job in sorted(finishing):
        rec = after.jobs.get(job)
        if rec is None:
            continue
        progress = views.rollout_progress(after, rec)
        if progress["state"] in ("complete", "rolled back"):
            out.append(event(job, "", "", f"rollout {progress['state']}",
                             f"{progress['updated']} of {progress['total']} tasks at "
                             f"v{rec.version}", at=now, version=rec.version))
    return out


def touched_nodes(plan: Plan, before: ClusterState, after: ClusterState) -> set[str]:
    """Nodes whose assignment set a plan changed: they get their new complete set."""
    out: set[str] = set()
    out.update(p.task.node for p in plan.place)
    out.update(s.node for s in plan.stop)
    out.update(lo.node for lo in plan.lost)
    out.update(u.node for u in plan.update)
    for r in plan.remove:
        if r.task in before.assignments:
            out.add(r.node)
    return out


# ---------------------------------------------------------------------- actors
