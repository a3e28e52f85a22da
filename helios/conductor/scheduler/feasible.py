"""Feasibility: can this node take this task at all? And, when none can, why not.

The scheduler's first question, kept apart from ranking (as in Nomad's ``feasible/``): a
node is feasible for a task when it is up, its labels match every constraint, it has the
CPU and memory free after its existing tasks, and none of the task's fixed host ports is
taken there. CPU is counted in integer millicpus so that repeated adds and subtracts never
drift the way float sums do (a node must never look over-committed by 1e-16).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from helios.units import format_size

__all__ = ["Allocation", "NodeState", "Request", "explain", "fits", "millis"]


def millis(cpus: float) -> int:
    """CPUs as integer millicpus (0.25 -> 250)."""
    return round(cpus * 1000)


class Allocation(Protocol):
    """What occupies a node: an Assignment (or anything shaped like one). Read-only, so
    frozen records (`Assignment`) fit."""

    @property
    def node(self) -> str: ...
    @property
    def job(self) -> str: ...
    @property
    def cpus(self) -> float: ...
    @property
    def memory(self) -> int: ...
    @property
    def ports(self) -> Mapping[str, int]: ...


@dataclass(frozen=True, slots=True)
class Request:
    """One task to place. ``key`` is the caller's handle (usually the task id); ``ports``
    are the fixed host ports it needs; ``constraints`` are sorted (label, value) pairs."""

    key: str
    job: str
    cpus: float
    memory: int
    ports: tuple[int, ...] = ()
    constraints: tuple[tuple[str, str], ...] = ()
    spread: bool = False

    @classmethod
    def for_spec(cls, key: str, spec: Any) -> Request:
        """The request for one task of a JobSpec."""
        return cls(key=key, job=spec.name, cpus=spec.resources.cpus,
                   memory=spec.resources.memory,
                   ports=tuple(sorted(p.host for p in spec.ports.values() if p.host)),
                   constraints=tuple(sorted(spec.constraints.items())),
                   spread=spec.spread)


@dataclass(slots=True, eq=False)
class NodeState:
    """A node's running totals while a batch of placements is made (mutable, internal)."""

    name: str
    cpu_total: int
    mem_total: int
    labels: Mapping[str, str]
    up: bool
    eligible: bool = True  # not draining and not marked ineligible (conductor/drain.py)
    cpu_free: int = 0
    mem_free: int = 0
    ports: set[int] = field(default_factory=set)
    tasks: int = 0
    jobs: dict[str, int] = field(default_factory=dict)
    pools: list[Any] = field(default_factory=list)
    size: float = 0.0  # capacity relative to the largest node, to open big nodes first

    def add(self, job: str, cpu: int, mem: int, ports: Iterable[int]) -> None:
        self.cpu_free -= cpu
        self.mem_free -= mem
        self.ports.update(ports)
        self.tasks += 1
        self.jobs[job] = self.jobs.get(job, 0) + 1


def fits(node: NodeState, cpu: int, mem: int, ports: tuple[int, ...]) -> bool:
    """Resources and ports (constraints and up-ness are handled by pool membership)."""
    if node.cpu_free < cpu or node.mem_free < mem:
        return False
    return not ports or node.ports.isdisjoint(ports)


def matches(node: NodeState, constraints: tuple[tuple[str, str], ...]) -> bool:
    labels = node.labels
    return all(labels.get(k) == v for k, v in constraints)


def _nodes(n: int) -> str:
    return f"{n} node" if n == 1 else f"{n} nodes"


def _have(k: int, n: int) -> str:
    return f"{k} of {_nodes(n)} " + ("has" if n == 1 else "have")


def explain(nodes: Iterable[NodeState], req: Request) -> str:
    """Why no node can take ``req``: each filter in turn with how many nodes pass it.

    Example: ``no node fits: 3 of 4 nodes up; constraint zone=b: 1 node;
    memory: 0 of 1 nodes have 512 MiB free``. Costs one pass over the nodes; it is only
    called for a task that could not be placed.
    """
    cpu, mem = millis(req.cpus), req.memory
    all_nodes = list(nodes)
    parts = []
    survivors = [n for n in all_nodes if n.up]
    if len(survivors) != len(all_nodes) or not all_nodes:
        parts.append(f"{len(survivors)} of {_nodes(len(all_nodes))} up")
    before = len(survivors)
    survivors = [n for n in survivors if n.eligible]
    if len(survivors) < before:
        parts.append(f"{len(survivors)} of {before} up "
                     f"{'node' if before == 1 else 'nodes'} eligible (the others "
                     "are draining or ineligible)")
    for k, v in req.constraints:
        survivors = [n for n in survivors if n.labels.get(k) == v]
        parts.append(f"constraint {k}={v}: {_nodes(len(survivors))}")
    before = len(survivors)
    survivors = [n for n in survivors if n.cpu_free >= cpu]
    if len(survivors) < before:
        parts.append(f"cpu: {_have(len(survivors), before)} {req.cpus:g} cpus free")
    before = len(survivors)
    survivors = [n for n in survivors if n.mem_free >= mem]
    if len(survivors) < before:
        parts.append(f"memory: {_have(len(survivors), before)} {format_size(mem)} free")
    for port in req.ports:
        before = len(survivors)
        survivors = [n for n in survivors if port not in n.ports]
        if len(survivors) < before:
            parts.append(f"host port {port}: {_have(len(survivors), before)} it free")
    if survivors:  # cannot happen when called after a failed search; say so plainly
        parts.append(f"{_nodes(len(survivors))} would fit")
    return "no node fits: " + "; ".join(parts)
