"""Loading the cluster's state from the store, for a conductor that just took the lead.

Why its own module: a new leader knows nothing but what ZooKeeper holds (the conductor is
stateless apart from it), so this read must be complete and must survive junk: a record
that does not decode is logged and skipped, never fatal. Reads run concurrently (bounded),
because kazoo's cost is per call and a takeover should not take seconds per thousand tasks.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import trio

from helios.conductor.plan import ClusterState
from helios.coordination import paths
from helios.coordination.errors import CorruptValue
from helios.coordination.store import Store
from helios.model import Assignment, JobRecord, NodeInfo, TaskStatus

log = logging.getLogger(__name__)

__all__ = ["Snapshot", "load_snapshot", "node_from_record", "node_url"]

T = TypeVar("T")

#: concurrent reads while loading (kazoo pipelines them on one connection). 128 rather
#: than 32: at 1,000 nodes / 10,000 tasks a takeover reads ~45,000 znodes, and more
#: requests in flight hide ZooKeeper's latency on a busy machine (4,200 -> 4,700 reads/s
#: on an idle one; bench/fleet_bench.py measures the failover)
READ_CONCURRENCY = 128


@dataclass
class Snapshot:
    """The store's desired and reported state, plus which directories already exist
    (so the first writes know whether to create a node's directory)."""

    state: ClusterState
    dirs: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    records: dict[str, Any] = field(default_factory=dict)  # raw node records


def node_url(address: str) -> str:
    """A node record's `address` (`h:p` or `tcp://h:p`) -> its node actor's URL."""
    from helios.protocol import NODE_ACTOR

    base = address if "://" in address else f"tcp://{address}"
    base = base.rstrip("/")
    return base if base.endswith(f"/{NODE_ACTOR}") else f"{base}/{NODE_ACTOR}"


def node_from_record(name: str, record: Any, up: bool, down_since: float | None) -> NodeInfo:
    """A NodeInfo from the node's `/nodes/<name>` record (whatever extra keys it has)."""
    data = dict(record) if isinstance(record, dict) else {}
    data["name"] = name
    data["status"] = "up" if up else "down"
    data["down_since"] = None if up else down_since
    try:
        data["cpus"] = float(data.get("cpus", 1.0))
        data["memory"] = int(data.get("memory", 0))
    except (TypeError, ValueError):
        data["cpus"], data["memory"] = 0.0, 0
    return NodeInfo.from_dict(data)


async def _gather(calls: list[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run `calls` concurrently, at most READ_CONCURRENCY at a time, keeping order."""
    results: list[Any] = [None] * len(calls)
    limit = trio.Semaphore(READ_CONCURRENCY)

    async def one(i: int, fn: Callable[[], Awaitable[T]]) -> None:
        async with limit:
            results[i] = await fn()

    async with trio.open_nursery() as nursery:
        for i, fn in enumerate(calls):
            nursery.start_soon(one, i, fn)
    return results


def _parsed(values: dict[str, Any], parse: Callable[[Any], T], what: str,
            problems: list[str]) -> list[T]:
    """The values that parse; each one that does not is logged and named in `problems`
    (junk in the store is skipped, never fatal)."""
    out: list[T] = []
    for path, value in values.items():
        if value is None:
            continue
        try:
            out.append(parse(value))
        except Exception as e:
            log.warning("skipping %s %s: %s", what, path, e)
            problems.append(f"{path}: {e}")
    return out


async def _read(store: Store, path: str, problems: list[str]) -> Any:
    try:
        entry = await store.get(path)
    except CorruptValue as e:
        log.warning("skipping %s", e)
        problems.append(str(e))
        return None
    return None if entry is None else entry.value


async def _read_tree(store: Store, top: str, problems: list[str]
                     ) -> tuple[dict[str, Any], set[str]]:
    """`top/<dir>/<leaf>` values keyed by leaf path, and the `top/<dir>` paths."""
    dirs = [f"{top}/{d}" for d in await store.children(top)]
    children = await _gather([functools.partial(store.children, d) for d in dirs])
    leaves = [f"{d}/{c}" for d, names in zip(dirs, children, strict=True) for c in names]
    values = await _gather([functools.partial(_read, store, p, problems) for p in leaves])
    return dict(zip(leaves, values, strict=True)), set(dirs)


async def load_snapshot(store: Store, now: float | None = None) -> Snapshot:
    """Everything the reconciler needs, read from the store.

    Nodes without presence are down since `now` (the new leader gives them a full
    failover grace: it cannot know how long they have been gone)."""
    now = time.time() if now is None else now
    problems: list[str] = []
    state = ClusterState()

    job_names = await store.children(paths.JOBS)
    job_values = await _gather([functools.partial(_read, store, paths.job(n), problems)
                                for n in job_names])
    for name, value in zip(job_names, job_values, strict=True):
        if value is None:
            continue
        try:
            state.jobs[name] = JobRecord.from_dict(value)
        except Exception as e:  # a record written by a future version, or damaged
            log.warning("skipping job %s: %s", name, e)
            problems.append(f"job {name}: {e}")

    node_names = await store.children(paths.NODES)

    async def one_node(name: str) -> tuple[Any, bool]:
        record = await _read(store, paths.node(name), problems)
        up = "up" in await store.children(paths.node(name))
        return record, up

    node_values = await _gather([functools.partial(one_node, n) for n in node_names])
    records: dict[str, Any] = {}
    for name, (record, up) in zip(node_names, node_values, strict=True):
        if record is None:
            continue
        records[name] = record
        try:
            state.nodes[name] = node_from_record(name, record, up, now)
        except Exception as e:
            log.warning("skipping node %s: %s", name, e)
            problems.append(f"node {name}: {e}")

    assigns, adirs = await _read_tree(store, paths.ASSIGNMENTS, problems)
    for a in _parsed(assigns, Assignment.from_dict, "assignment", problems):
        state.assignments[a.id] = a
    stats, sdirs = await _read_tree(store, paths.STATUS, problems)
    for st in _parsed(stats, TaskStatus.from_dict, "status", problems):
        prev = state.statuses.get(st.id)
        if prev is None or st.updated >= prev.updated:
            state.statuses[st.id] = st
    if await store.exists(paths.DRAIN):  # operators' drain records (drain.py)
        from helios.conductor.drain import records as drain_records

        adirs.add(paths.DRAIN)
        names = await store.children(paths.DRAIN)
        values = await _gather([functools.partial(_read, store, paths.drain(n), problems)
                                for n in names])
        state.drains = drain_records(zip(names, values, strict=True))
    return Snapshot(state, adirs | sdirs | await _service_dirs(store), problems, records)


async def _service_dirs(store: Store) -> set[str]:
    """The endpoint directories that exist (`/services/<job>/<node>`, made by earlier
    leaders): known, the writer does not try to create them again."""
    if not await store.exists(paths.SERVICES):
        return set()
    jobs = [paths.services(j) for j in await store.children(paths.SERVICES)
            if paths.is_name(j)]
    nodes = await _gather([functools.partial(store.children, d) for d in jobs])
    out = {paths.SERVICES, *jobs}
    out.update(f"{d}/{n}" for d, names in zip(jobs, nodes, strict=True) for n in names)
    return out

