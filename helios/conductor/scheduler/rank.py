"""Ranking: among the nodes that can take a task, which one should.

Default is best-fit bin-packing: a task goes to an already used node that it leaves the
fullest (so whole nodes stay free for big tasks and can be drained), and a new node is
opened only when no used node fits, the largest first (fewer nodes in use). ``spread``
jobs prefer the node with the fewest tasks of that job, then best fit.

Speed is the point of the data structure. A :class:`Pool` is the set of up nodes that match
one constraint signature (all nodes for a task without constraints). It keeps its used
nodes in a list sorted by (free memory, name), so the tightest memory fit is found by
bisection instead of scoring every node, and its empty nodes sorted largest first. After a
placement only the chosen node's entries move (a bisect and a C-level list shift), so one
placement costs O(log n) Python steps plus a short scan, not O(nodes).
"""

from __future__ import annotations

from bisect import bisect_left, insort

from helios.conductor.scheduler.feasible import NodeState, fits

__all__ = ["CANDIDATES", "Pool"]

# Feasible used nodes compared on both resources before choosing; the memory order finds
# them, this breaks ties in favour of the node whose CPU is also tightest.
CANDIDATES = 2
# After the first feasible node, how many more entries to look at for better ones.
WINDOW = 8


SECONDARY_WEIGHT = 2.0


def _score(node: NodeState, cpu: int, mem: int, by_cpu: bool) -> float:
    """How empty the node stays (lower is fuller): the scarce resource counts; the other
    only breaks ties, so tasks heavy in the plentiful resource do not all pile onto the
    same nodes and strand their scarce capacity."""
    c = (node.cpu_free - cpu) / node.cpu_total
    m = (node.mem_free - mem) / node.mem_total
    # Fullness in the scarce resource, plus a penalty when the node's plentiful resource
    # runs out ahead of the scarce one (that would strand the scarce one).
    if by_cpu:
        return c + SECONDARY_WEIGHT * max(0.0, c - m)
    return m + SECONDARY_WEIGHT * max(0.0, m - c)


class Pool:
    """Nodes sharing one constraint signature, ordered for best-fit search."""

    __slots__ = ("by_cpu", "empty", "used")

    def __init__(self, nodes: list[NodeState], by_cpu: bool = False):
        # Used nodes are ordered by free amount of the cluster's scarcer resource: best fit
        # on the resource that runs out first is what keeps the node count low.
        self.by_cpu = by_cpu
        self.used: list[tuple[int, str, NodeState]] = sorted(
            ((n.cpu_free if by_cpu else n.mem_free, n.name, n) for n in nodes if n.tasks),
            key=lambda t: t[:2])
        self.empty: list[tuple[float, str, NodeState]] = sorted(
            ((-n.size, n.name, n) for n in nodes if not n.tasks), key=lambda t: t[:2])
        for n in nodes:
            n.pools.append(self)

    def moved(self, node: NodeState, old_cpu_free: int, old_mem_free: int,
              was_empty: bool) -> None:
        """Re-file ``node`` after its free resources changed from the ``old_`` values."""
        if was_empty:
            lst = self.empty
            i = bisect_left(lst, (-node.size, node.name), key=lambda t: t[:2])
            del lst[i]
        else:
            lst2 = self.used
            old = old_cpu_free if self.by_cpu else old_mem_free
            i = bisect_left(lst2, (old, node.name), key=lambda t: t[:2])
            del lst2[i]
        new = node.cpu_free if self.by_cpu else node.mem_free
        insort(self.used, (new, node.name, node), key=lambda t: t[:2])

    def choose(self, job: str, cpu: int, mem: int, ports: tuple[int, ...],
               spread: bool) -> NodeState | None:
        """The best node of this pool for the task, or None when no node fits."""
        if spread:
            return self._choose_spread(job, cpu, mem, ports)
        used = self.used
        start = bisect_left(used, cpu if self.by_cpu else mem, key=lambda t: t[0])
        best: NodeState | None = None
        best_score = 0.0
        seen = found = 0
        for i in range(start, len(used)):
            node = used[i][2]
            if best is not None:
                seen += 1
                if seen > WINDOW:
                    break
            if not fits(node, cpu, mem, ports):
                continue
            score = _score(node, cpu, mem, self.by_cpu)
            if best is None or score < best_score:
                best, best_score = node, score
            found += 1
            if found >= CANDIDATES:
                break
        if best is not None:
            return best
        for _, _, node in self.empty:
            if fits(node, cpu, mem, ports):
                return node
        return None

    def _choose_spread(self, job: str, cpu: int, mem: int,
                       ports: tuple[int, ...]) -> NodeState | None:
        """Fewest tasks of ``job`` first, then tightest memory fit, then name."""
        best: NodeState | None = None
        best_key: tuple[int, int] | None = None
        used = self.used
        for i in range(bisect_left(used, cpu if self.by_cpu else mem, key=lambda t: t[0]),
                       len(used)):
            node = used[i][2]
            count = node.jobs.get(job, 0)
            if best_key is not None and count >= best_key[0]:
                continue
            if fits(node, cpu, mem, ports):
                best, best_key = node, (count, i)
                if count == 0:
                    return node
        for _, _, node in self.empty:
            if fits(node, cpu, mem, ports):
                return node  # an empty node holds 0 tasks of any job
        return best
