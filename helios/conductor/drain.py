"""Draining and eligibility of nodes (`helios node drain`, `helios node eligibility`).

Why a record of its own (`/drain/<node>`) rather than a field of the node's record: the
node daemon writes `/nodes/<name>` itself, every time it registers, and may write only
that (ACLs); the operator's decision must survive the daemon re-registering and a
conductor failover, so the leader keeps it in the store next to the desired state and
writes it fenced, like assignments (`apply.diff_ops`).

What a drain means is decided in the pure reconciler, from `NodeInfo.draining` (this
module only overlays the records on the nodes, `with_drains`):

- a draining or ineligible node gets no new placements (`NodeInfo.schedulable`);
- a service task on a draining node is replaced like an old version in a rolling update
  (`rollout.plan_service`): the new copy starts elsewhere, `update.parallel` slots at a
  time, and the old one is stopped only once the new one is healthy and registered, so
  clients following endpoints see no failed request;
- a batch task keeps running until the drain deadline, then it is stopped and placed
  again elsewhere (batch work is at-least-once);
- when nothing runs there any more, the drain is complete (`finish_drains`): the record
  says `draining: false`, and the node stays ineligible until
  `helios node eligibility NAME --enable`, as in Nomad.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from helios.conductor.plan import ClusterState, Pending, RolloutStep
from helios.model import FINISHED_STATES, NodeInfo
from helios.units import format_duration

__all__ = ["DEFAULT_DEADLINE", "DrainState", "drain_report", "finish_drains", "set_drain",
           "with_drains"]

#: how long batch tasks of a draining node may run before they are moved (docs/cli.md)
DEFAULT_DEADLINE = 3600.0


@dataclass(frozen=True)
class DrainState:
    """The operator's word on one node. `deadline` (epoch seconds) bounds its batch tasks;
    `since` is when the drain started, `done` when it completed (None while running).
    `reason` is "drain" (the node stays ineligible once empty) or "rebalance" (a node
    freed by `helios rebalance` takes placements again once empty: its room is the
    point)."""

    eligible: bool = True
    draining: bool = False
    deadline: float | None = None
    since: float | None = None
    done: float | None = None
    reason: str = "drain"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DrainState:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in dict(data).items() if k in names})

    @property
    def default(self) -> bool:
        """Eligible and not draining: the record can go."""
        return self.eligible and not self.draining


def with_drains(nodes: Mapping[str, NodeInfo], drains: Mapping[str, DrainState]
                ) -> dict[str, NodeInfo]:
    """The nodes as the reconciler must see them: drain records overlaid (only the few
    drained nodes are copied, so a large cluster costs one dict copy)."""
    out = dict(nodes)
    for name, d in drains.items():
        n = out.get(name)
        if n is not None:
            out[name] = dataclasses.replace(n, eligible=d.eligible, draining=d.draining,
                                            drain_deadline=d.deadline)
    return out


def _remaining(state: ClusterState, name: str) -> list[dict[str, Any]]:
    """Tasks still holding the node: assignments to run, and stops not yet finished."""
    node = state.nodes.get(name)
    out = []
    for a in sorted(state.assignments.values(), key=lambda a: a.id):
        if a.node != name:
            continue
        st = state.statuses.get(a.id)
        st = st if st is not None and st.node == name else None
        if st is not None and st.state in FINISHED_STATES:
            continue
        if a.desired == "stop" and (node is None or not node.up):
            continue  # the node is down: nothing runs there to wait for
        job = state.jobs.get(a.job)
        out.append({"task": a.id, "job": a.job,
                    "kind": job.spec.kind if job is not None else "",
                    "desired": a.desired, "state": st.state if st is not None else "pending"})
    return out


def _service_wait(task: str, job: str, pending: Sequence[Pending],
                  steps: Sequence[RolloutStep]) -> str:
    """What a service task on a draining node waits for, from the last plan."""
    for p in pending:
        if p.job == job and task in p.explanation:
            _, _, why = p.explanation.partition(": ")
            return f"room on another node ({why or p.explanation})"
    for step in steps:
        if step.job == job and step.old == task and step.new:
            return f"its replacement {step.new} to be healthy and registered"
    return f"its turn (update.parallel slots of {job} move at a time)"


def drain_report(state: ClusterState, name: str, now: float,
                 pending: Sequence[Pending] = (),
                 steps: Sequence[RolloutStep] = ()) -> dict[str, Any]:
    """`helios node drain --json`: the node's drain, and exactly what it still waits for
    (each remaining task with the reason, from the last plan's `pending` and rollout
    `steps`)."""
    d = state.drains.get(name, DrainState())
    remaining = _remaining(state, name)
    for r in remaining:
        if r["desired"] == "stop":
            r["waiting_for"] = f"{r['task']} to stop ({r['state']})"
        elif r["kind"] == "service":
            r["waiting_for"] = _service_wait(r["task"], r["job"], pending, steps)
        elif d.deadline is not None and now < d.deadline:
            r["waiting_for"] = (f"batch task {r['task']} to finish (moved after the "
                                f"deadline, in {format_duration(d.deadline - now)})")
        else:
            r["waiting_for"] = f"batch task {r['task']} to stop and run elsewhere"
    complete = not d.draining and d.done is not None
    return {"node": name, "eligible": d.eligible, "draining": d.draining,
            "deadline": d.deadline, "since": d.since, "done": d.done,
            "complete": complete or (d.draining and not remaining),
            "remaining": remaining}


def finish_drains(state: ClusterState, now: float) -> list[str]:
    """Mark complete every drain whose node holds nothing any more; returns their names
    (the caller writes the changed records and logs it)."""
    finished = []
    for name, d in sorted(state.drains.items()):
        if d.draining and not _remaining(state, name):
            if d.reason == "rebalance":
                del state.drains[name]
            else:
                state.drains[name] = dataclasses.replace(d, draining=False, eligible=False,
                                                         done=now)
            finished.append(name)
    return finished


def draining_nodes(drains: Mapping[str, DrainState]) -> set[str]:
    return {n for n, d in drains.items() if d.draining}


def records(values: Iterable[tuple[str, Any]]) -> dict[str, DrainState]:
    """Drain records read from the store (name, value); junk is skipped."""
    out = {}
    for name, value in values:
        if isinstance(value, dict):
            try:
                out[name] = DrainState.from_dict(value)
            except TypeError:
                continue
    return out


def set_drain(state: ClusterState, name: str, now: float, *, deadline: float | None = None,
              draining: bool = True, eligible: bool | None = None,
              reason: str = "drain") -> bool:
    """Apply an operator's command to `state.drains`; returns whether anything changed.

    `eligible` given: only eligibility changes (`helios node eligibility`); enabling a
    draining node also ends its drain, moving nothing further. Else `draining=True`
    starts a drain with batch tasks allowed `deadline` seconds (default an hour); a drain
    already running keeps its start, and its deadline unless a new one is given.
    `draining=False` ends it."""
    d = state.drains.get(name, DrainState())
    if eligible is not None:
        new = dataclasses.replace(d, eligible=eligible,
                                  draining=d.draining and not eligible)
    elif draining:
        if reason == "rebalance":
            until = None
        elif deadline is not None:
            until = now + max(0.0, float(deadline))
        elif d.draining and d.deadline is not None:
            until = d.deadline  # asked again without a deadline: keep the running one
        else:
            until = now + DEFAULT_DEADLINE
        new = DrainState(eligible=False, draining=True, deadline=until,
                         since=d.since if d.draining and d.since else now, reason=reason)
    else:
        new = dataclasses.replace(d, draining=False)
    if new.default:
        return state.drains.pop(name, None) is not None
    if new == d and name in state.drains:
        return False
    state.drains[name] = new
    return True
