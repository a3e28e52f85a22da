"""Where should each task go? Feasibility (``feasible``) then ranking (``rank``).

Pure and deterministic: the same nodes, allocations and requests always give the same
placements (ties are broken by node name), so a plan can be shown as a dry run and then
applied unchanged. The conductor builds a :class:`Cluster` from a snapshot, places a batch,
and sends the result; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from helios.conductor.scheduler.feasible import (
    Allocation,
    NodeState,
    Request,
    explain,
    matches,
    millis,
)
from helios.conductor.scheduler.rank import Pool
from helios.model import NodeInfo

__all__ = ["Allocation", "Cluster", "Placements", "Request", "cpu_is_scarcer", "place"]


@dataclass
class Placements:
    """Result of :func:`place`: ``placed`` maps request key -> node name; ``failed`` maps
    request key -> explanation of why no node fits."""

    placed: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


class Cluster:
    """Free capacity of a snapshot of nodes, updated as placements are made.

    Only up nodes that are eligible and not draining are candidates. Allocations on
    unknown or down nodes are ignored (they hold nothing a placement could use). Pools
    per constraint signature are built the first time a signature is asked for, from an
    index of label -> nodes.
    """

    def __init__(self, nodes: Iterable[NodeInfo], allocations: Iterable[Allocation] = (),
                 *, cpu_first: bool = False):
        self.cpu_first = cpu_first
        infos = sorted(nodes, key=lambda n: n.name)
        self.nodes: dict[str, NodeState] = {}
        top_cpu = max((n.cpus for n in infos), default=1.0) or 1.0
        top_mem = max((n.memory for n in infos), default=1) or 1
        for n in infos:
            st = NodeState(name=n.name, cpu_total=max(millis(n.cpus), 1),
                           mem_total=max(n.memory, 1), labels=dict(n.labels), up=n.up,
                           eligible=n.eligible and not n.draining)
            st.cpu_free, st.mem_free = millis(n.cpus), n.memory
            st.size = n.cpus / top_cpu + n.memory / top_mem
            self.nodes[n.name] = st
        self._hosts: dict[str, set[NodeState]] = {}  # job -> nodes holding its tasks
        for a in allocations:
            held = self.nodes.get(a.node)
            if held is not None:
                held.add(a.job, millis(a.cpus), a.memory, a.ports.values())
                self._hosts.setdefault(a.job, set()).add(held)
        self._label_index: dict[tuple[str, str], list[NodeState]] = {}
        for st in self.nodes.values():
            if st.up and st.eligible:
                for kv in st.labels.items():
                    self._label_index.setdefault(kv, []).append(st)
        self._pools: dict[tuple[tuple[str, str], ...], Pool] = {}
        self._failed: dict[tuple, str] = {}

    def _pool(self, constraints: tuple[tuple[str, str], ...]) -> Pool:
        pool = self._pools.get(constraints)
        if pool is None:
            if not constraints:
                members = [n for n in self.nodes.values() if n.up and n.eligible]
            else:
                # Start from the rarest label, then check the others on those few nodes.
                lists = sorted((self._label_index.get(kv, []) for kv in constraints), key=len)
                members = [n for n in lists[0] if matches(n, constraints)]
            pool = self._pools[constraints] = Pool(members, by_cpu=self.cpu_first)
        return pool

    def place(self, req: Request) -> str | None:
        """Choose a node for ``req`` and reserve its resources there; None if none fits."""
        cpu, mem = millis(req.cpus), req.memory
        fail_key = (req.constraints, cpu, mem, req.ports)
        if fail_key in self._failed:
            return None  # capacity only shrinks within a Cluster: it still cannot fit
        node = self._pool(req.constraints).choose(req.job, cpu, mem, req.ports, req.spread,
                                                  self._hosts.get(req.job, ()))
        if node is None:
            self._failed[fail_key] = ""
            return None
        old_cpu, old_mem, was_empty = node.cpu_free, node.mem_free, node.tasks == 0
        node.add(req.job, cpu, mem, req.ports)
        self._hosts.setdefault(req.job, set()).add(node)
        for pool in node.pools:
            pool.moved(node, old_cpu, old_mem, was_empty, req.job, req.ports)
        return node.name

    def explain(self, req: Request) -> str:
        """Why ``req`` cannot be placed now (counts per filter)."""
        key = (req.constraints, millis(req.cpus), req.memory, req.ports)
        text = self._failed.get(key)
        if not text:
            text = explain(self.nodes.values(), req)
            self._failed[key] = text
        return text

    def free(self, node: str) -> tuple[float, int]:
        """(cpus, memory bytes) still free on ``node``."""
        st = self.nodes[node]
        return st.cpu_free / 1000, st.mem_free


def cpu_is_scarcer(nodes: Sequence[NodeInfo], requests: Sequence[Request],
                   allocations: Iterable[Allocation] = ()) -> bool:
    """Whether CPU will run out before memory, counting existing and requested load."""
    up = [n for n in nodes if n.up]
    cpu_cap = sum(n.cpus for n in up) or 1.0
    mem_cap = sum(n.memory for n in up) or 1
    cpu = sum(r.cpus for r in requests)
    mem = sum(r.memory for r in requests)
    for a in allocations:
        cpu += a.cpus
        mem += a.memory
    return cpu / cpu_cap > mem / mem_cap


def place(requests: Sequence[Request], nodes: Iterable[NodeInfo],
          allocations: Iterable[Allocation] = (), *, constrained_first: bool = True,
          cluster: Cluster | None = None) -> Placements:
    """Place ``requests`` on ``nodes`` given what ``allocations`` already hold.

    Requests are placed in the given order, except that with ``constrained_first``
    those with more constraints go first (stable, so still deterministic).
    """
    infos = list(nodes)
    cl = cluster if cluster is not None else Cluster(
        infos, allocations, cpu_first=cpu_is_scarcer(infos, requests, allocations))
    # Most constrained first: they have the fewest places to go. Otherwise the given
    # order: sorting by size clusters alike tasks, which measured worse for two-resource
    # packing (1.29 vs 1.00 nodes over the lower bound in bench/scheduler_bench.py).
    order = sorted(requests, key=lambda r: -len(r.constraints)) if constrained_first \
        else requests
    out = Placements()
    for req in order:
        node = cl.place(req)
        if node is None:
            out.failed[req.key] = cl.explain(req)
        else:
            out.placed[req.key] = node
    return out
