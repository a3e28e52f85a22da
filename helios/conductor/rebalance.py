"""Defragmenting a cluster (`helios rebalance`): a pure planner of moves that free whole
nodes, with the gain stated.

Why whole nodes: a cluster packed over months ends with many nodes a quarter full, so a
large task fits nowhere although the free capacity in total would hold it many times,
and no machine can be returned. Freeing a node is the unit an operator can use (a big
placement, a decommission); moving single tasks around for a nicer score is churn.

The plan, greedy and deterministic (the same state gives the same plan, so `--dry-run`
shows what will be done):

1. candidates are schedulable nodes whose every task can move: service tasks of the
   job's current version, running and healthy (a node with a batch task still running,
   a task starting or stopping, or a job being rolled out is left alone);
2. take the emptiest candidate (least CPU, then memory, then name); try to place all of
   its tasks on the other schedulable nodes that are not being freed, with the
   scheduler itself (`Cluster.place`: feasibility, constraints, ports, best fit),
   counting the moves already planned; if all fit, the node is freed and its moves
   join the plan, else it keeps its tasks;
3. repeat until no candidate is left (or `limit` nodes are freed).

Carrying a plan out (the conductor) marks each freed node as draining for the
rebalance: the reconciler then moves every task with the rollout's rules (the new copy
healthy and registered before the old one stops, `update.parallel` at a time), so no
service ever has fewer healthy tasks than it needs. The scheduler places the new copies;
the plan's `to` is where the planner found room, which the placement follows unless the
cluster changed meanwhile. A node freed by a rebalance becomes eligible again once empty
(the room is the point).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from helios.conductor.plan import ClusterState
from helios.conductor.scheduler.place import Cluster, Request
from helios.model import FINISHED_STATES, Assignment, NodeInfo

__all__ = ["Move", "RebalancePlan", "plan_rebalance"]

#: most candidate nodes tried per plan (each try builds a scheduler view of the cluster)
MAX_TRIES = 200


@dataclass(frozen=True)
class Move:
    """Move task `task` of `job` from node `src` to node `dst`."""

    task: str
    job: str
    src: str
    dst: str

    def to_dict(self) -> dict[str, str]:
        return {"task": self.task, "job": self.job, "from": self.src, "to": self.dst}


@dataclass
class RebalancePlan:
    """Moves, the nodes they free, and the gain in words and figures."""

    moves: list[Move] = field(default_factory=list)
    frees: list[str] = field(default_factory=list)
    nodes_used_before: int = 0
    nodes_used_after: int = 0
    cpu_use_before: float = 0.0  # mean CPU share used on nodes that hold tasks
    cpu_use_after: float = 0.0

    @property
    def gain(self) -> str:
        if not self.frees:
            return "no node can be freed"
        return (f"frees {len(self.frees)} of {self.nodes_used_before} nodes in use; "
                f"CPU use of the nodes in use {self.cpu_use_before:.0%} -> "
                f"{self.cpu_use_after:.0%}")

    def to_dict(self) -> dict[str, Any]:
        return {"moves": [m.to_dict() for m in self.moves], "frees": list(self.frees),
                "gain": self.gain, "nodes_used_before": self.nodes_used_before,
                "nodes_used_after": self.nodes_used_after,
                "cpu_use_before": round(self.cpu_use_before, 4),
                "cpu_use_after": round(self.cpu_use_after, 4)}


def _occupying(state: ClusterState) -> list[Assignment]:
    """Assignments whose task still holds room on its node."""
    out = []
    for a in state.assignments.values():
        st = state.statuses.get(a.id)
        st = st if st is not None and st.node == a.node else None
        if st is not None and (st.state in FINISHED_STATES or st.state == "lost"):
            continue
        if st is None and a.desired != "run":
            continue
        out.append(a)
    return out


def _movable(state: ClusterState, a: Assignment) -> bool:
    """A running, healthy service task of its job's current version, meant to run."""
    job = state.jobs.get(a.job)
    st = state.statuses.get(a.id)
    if job is None or job.stopped or job.spec.kind != "service" or a.desired != "run":
        return False
    if a.fingerprint != job.spec.fingerprint() or st is None or st.node != a.node:
        return False
    return st.state == "running" and (job.spec.health is None or st.healthy is True)


def _cpu_use(nodes: Mapping[str, NodeInfo], used: Mapping[str, float]) -> float:
    busy = [n for n in used if used[n] > 0 and n in nodes]
    if not busy:
        return 0.0
    return sum(used[n] / max(nodes[n].cpus, 1e-9) for n in busy) / len(busy)


def plan_rebalance(state: ClusterState, nodes: Mapping[str, NodeInfo] | None = None,
                   limit: int | None = None) -> RebalancePlan:
    """The moves that free whole nodes; `nodes` are the nodes as the reconciler sees
    them (drain records overlaid; default `state.nodes`). Pure."""
    node_map = dict(state.nodes if nodes is None else nodes)
    occupying = _occupying(state)
    by_node: dict[str, list[Assignment]] = {}
    for a in occupying:
        by_node.setdefault(a.node, []).append(a)
    usable = {n for n, info in node_map.items() if info.schedulable}
    candidates = sorted(
        (n for n in usable if by_node.get(n)
         and all(_movable(state, a) for a in by_node[n])),
        key=lambda n: (sum(a.cpus for a in by_node[n]), sum(a.memory for a in by_node[n]),
                       n))
    used = {n: sum(a.cpus for a in by_node.get(n, [])) for n in node_map}
    plan = RebalancePlan(nodes_used_before=sum(1 for n in used if used[n] > 0
                                               or by_node.get(n)),
                         cpu_use_before=_cpu_use(node_map, used))
    freed: set[str] = set()
    # where every task is, moves included: task id -> (assignment, node)
    where: dict[str, tuple[Assignment, str]] = {a.id: (a, a.node) for a in occupying}
    tries = 0
    while candidates and tries < MAX_TRIES and (limit is None or len(freed) < limit):
        tries += 1
        src = candidates.pop(0)
        targets = [node_map[n] for n in sorted(usable - freed - {src})]
        allocs = [a.replace(node=node) for a, node in where.values()
                  if node != src and node not in freed]
        cluster = Cluster(targets, allocs)
        moving = sorted(by_node[src], key=lambda a: (-a.cpus, -a.memory, a.id))
        planned: list[Move] = []
        for a in moving:
            spec = state.jobs[a.job].spec
            req = Request.for_spec(a.id, spec)
            dst = cluster.place(req)
            if dst is None:
                break
            planned.append(Move(a.id, a.job, src, dst))
        if len(planned) != len(moving):
            continue
        freed.add(src)
        plan.frees.append(src)
        plan.moves.extend(planned)
        for m in planned:
            where[m.task] = (where[m.task][0], m.dst)
            used[m.dst] = used.get(m.dst, 0.0) + where[m.task][0].cpus
        used[src] = 0.0
        by_dst = {m.dst for m in planned}
        # a node that just took tasks is no longer worth emptying before the others
        candidates = [n for n in candidates if n not in by_dst]
    plan.nodes_used_after = plan.nodes_used_before - len(plan.frees)
    plan.cpu_use_after = _cpu_use(node_map, used)
    return plan
