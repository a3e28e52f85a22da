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
from collections.abc import Iterable

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
    """Nodes sharing one constraint signature, ordered for best-fit search.

    Besides the two sorted lists it keeps two counters that let a search skip work that
    cannot succeed: how many of its nodes hold each fixed host port (when every used node
    holds it, only empty nodes are tried), and, per spread job, how many nodes hold 0, 1,
    2... tasks of that job (so the search stops at the first node on the lowest level
    instead of comparing every node).
    """

    __slots__ = ("by_cpu", "empty", "level_nodes", "levels", "port_nodes", "size", "used")

    def __init__(self, nodes: list[NodeState], by_cpu: bool = False):
        # Used nodes are ordered by free amount of the cluster's scarcer resource: best fit
        # on the resource that runs out first is what keeps the node count low.
        self.by_cpu = by_cpu
        self.size = len(nodes)
        # Entries are (key, name, node): names are unique, so comparisons never reach the
        # node, and bisecting with a shorter tuple needs no key function (kept off the
        # hot path: a key lambda doubled the cost of a placement).
        self.used: list[tuple[int, str, NodeState]] = sorted(
            (n.cpu_free if by_cpu else n.mem_free, n.name, n) for n in nodes if n.tasks)
        self.empty: list[tuple[float, str, NodeState]] = sorted(
            (-n.size, n.name, n) for n in nodes if not n.tasks)
        self.port_nodes: dict[int, int] = {}
        self.levels: dict[str, dict[int, int]] = {}
        # per spread job: level (>= 1) -> nodes holding that many of its tasks, by name
        self.level_nodes: dict[str, dict[int, list[tuple[str, NodeState]]]] = {}
        for n in nodes:
            n.pools.append(self)
            for port in n.ports:
                self.port_nodes[port] = self.port_nodes.get(port, 0) + 1

    def moved(self, node: NodeState, old_cpu_free: int, old_mem_free: int,
              was_empty: bool, job: str, new_ports: tuple[int, ...]) -> None:
        """Re-file ``node`` after a task of ``job`` with ``new_ports`` landed on it."""
        if was_empty:
            lst = self.empty
            i = bisect_left(lst, (-node.size, node.name))
            del lst[i]
        else:
            lst2 = self.used
            old = old_cpu_free if self.by_cpu else old_mem_free
            i = bisect_left(lst2, (old, node.name))
            del lst2[i]
        new = node.cpu_free if self.by_cpu else node.mem_free
        insort(self.used, (new, node.name, node))
        for port in new_ports:
            self.port_nodes[port] = self.port_nodes.get(port, 0) + 1
        levels = self.levels.get(job)
        if levels is not None:
            c = node.jobs[job]  # already counts the new task
            levels[c - 1] -= 1
            levels[c] = levels.get(c, 0) + 1
            by_level = self.level_nodes[job]
            if c - 1 >= 1:
                lst3 = by_level[c - 1]
                del lst3[bisect_left(lst3, (node.name,))]
            insort(by_level.setdefault(c, []), (node.name, node))

    def choose(self, job: str, cpu: int, mem: int, ports: tuple[int, ...],
               spread: bool, hosts: Iterable[NodeState] = ()) -> NodeState | None:
        """The best node of this pool for the task, or None when no node fits.
        ``hosts`` are the nodes already holding tasks of ``job`` (used by spread)."""
        if spread:
            return self._choose_spread(job, cpu, mem, ports, hosts)
        used = self.used
        skip_used = bool(ports) and any(self.port_nodes.get(p, 0) >= len(used)
                                        for p in ports)
        start = len(used) if skip_used else bisect_left(used, (cpu if self.by_cpu else mem,))
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

    def _levels(self, job: str, hosts: Iterable[NodeState]) -> dict[int, int]:
        """Per level, how many pool nodes hold that many tasks of ``job``; built from the
        nodes that hold the job at all (``hosts``), so it costs O(job), not O(pool)."""
        levels = self.levels.get(job)
        if levels is None:
            by_level: dict[int, list[tuple[str, NodeState]]] = {}
            held = 0
            for n in hosts:
                if any(p is self for p in n.pools):
                    by_level.setdefault(n.jobs[job], []).append((n.name, n))
                    held += 1
            levels = {c: len(lst) for c, lst in by_level.items()}
            levels[0] = self.size - held
            for lst in by_level.values():
                lst.sort()
            self.levels[job] = levels
            self.level_nodes[job] = by_level
        return levels

    def _choose_spread(self, job: str, cpu: int, mem: int, ports: tuple[int, ...],
                       hosts: Iterable[NodeState]) -> NodeState | None:
        """Fewest tasks of ``job`` first; among nodes without it best fit (used nodes
        before empty ones), among nodes that already hold some the best fit of the first
        few by name. Each level is searched through its own list, so the cost does not
        grow with the nodes that already hold more of the job."""
        levels = self._levels(job, hosts)
        if levels.get(0, 0) > 0:
            node = self._level_zero(job, cpu, mem, ports, levels[0])
            if node is not None:
                return node
        for c in sorted(c for c, k in levels.items() if k > 0 and c > 0):
            best: NodeState | None = None
            best_score = 0.0
            found = 0
            for _, node in self.level_nodes[job].get(c, ()):
                if fits(node, cpu, mem, ports):
                    score = _score(node, cpu, mem, self.by_cpu)
                    if best is None or score < best_score:
                        best, best_score = node, score
                    found += 1
                    if found >= CANDIDATES:
                        break
            if best is not None:
                return best
        return None

    def _level_zero(self, job: str, cpu: int, mem: int, ports: tuple[int, ...],
                    zero: int) -> NodeState | None:
        """Best node holding no task of ``job``: a used one (best fit) or an empty one."""
        if zero > len(self.empty):  # some used nodes lack the job: look there first
            used = self.used
            for i in range(bisect_left(used, (cpu if self.by_cpu else mem,)), len(used)):
                node = used[i][2]
                if job not in node.jobs and fits(node, cpu, mem, ports):
                    return node
        for _, _, node in self.empty:
            if fits(node, cpu, mem, ports):
                return node
        return None
