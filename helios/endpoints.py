"""Service endpoints: where the healthy tasks of a service job can be reached.

A task that passes its health check is registered as an *ephemeral* entry at
`/services/<job>/<node>/<task>` holding `{"task", "node", "host", "ports"}` (the shape of
`helios endpoints NAME --json`, docs/json.md). Ephemeral means it belongs to the session of
the node that wrote it: if that node dies, ZooKeeper removes its endpoints when the
session expires, without anyone cleaning up.

Why a level per node: ZooKeeper grants create and delete on a parent, for all of its
children at once. With every endpoint directly under `/services/<job>`, any node allowed
to publish there could also delete or fake the endpoints of every other node. The
conductor creates `/services/<job>/<node>` when it assigns the job to the node, writable
by that node alone (helios.coordination.acl), and readers take the node's name from the
path, never from the value a node wrote. Before a task is stopped (rollout, scale
down, `job stop`), its node deregisters it first and waits the job's `grace`, so clients
stop sending it work before it goes away (`drain_endpoint`).

Clients follow a service instead of polling it:

    async for endpoints in follow_endpoints(store, "web"):
        ...                                  # the current list first, then every change

or keep a round-robin `Resolver` current in the background:

    async with Resolver.open(store, "web") as resolver:
        ep = await resolver.next()           # waits until at least one endpoint exists
        host, port = ep["host"], ep["ports"]["http"]

Everything here is plain store calls; it runs unchanged on ZooKeeper and on the embedded
store of `helios solo`.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import trio

from helios.coordination import paths
from helios.coordination.errors import (
    CorruptValue,
    NodeExists,
    NoNode,
    TransactionFailed,
    Unavailable,
)
from helios.coordination.store import Create, Delete, Entry, Store, WakeFlag

log = logging.getLogger(__name__)

__all__ = [
    "Resolver",
    "deregister_endpoint",
    "drain_endpoint",
    "follow_endpoints",
    "list_endpoints",
    "register_endpoint",
]

#: concurrent reads when listing a service's endpoints
_READS = 16
#: how long a follower waits before retrying after the store was unreachable
_RETRY = 1.0


def _endpoint(job: str, task: str, node: str, host: str,
              ports: Mapping[str, int]) -> dict[str, Any]:
    paths.check_name(job)
    paths.check_name(task)
    raw_host: object = host  # from a node's message: typed str, checked all the same
    if not isinstance(raw_host, str) or not raw_host:
        raise ValueError(f"endpoint of {task}: host must be a non-empty string, not {host!r}")
    clean: dict[str, int] = {}
    for name, raw in dict(ports).items():
        port: object = raw  # from a node's message: typed int, checked all the same
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ValueError(f"endpoint of {task}: port {name!r} is {port!r}, not 1-65535")
        clean[str(name)] = port
    return {"task": task, "node": node, "host": host, "ports": clean}


async def register_endpoint(store: Store, job: str, task: str, node: str, host: str,
                            ports: Mapping[str, int]) -> dict[str, Any]:
    """Publish `task` of service `job` as healthy; returns the endpoint written.

    Call it on the store of the node that runs the task, when the task's health check
    first passes (and again after a restart of the node daemon: registering twice is
    harmless). The entry is ephemeral: it lives as long as this store's session. An
    entry left for the same task by an older session (a node daemon that restarted
    before its old session expired) is replaced atomically, so it cannot take the new
    registration with it when that old session ends.

    The node's directory `/services/<job>/<node>` is made with the endpoint when it is
    missing; with ZooKeeper ACLs only the conductor may make it (it does so with the
    assignment), so a node that runs ahead of it gets `NotAuthorized` and retries."""
    value = _endpoint(job, task, node, host, ports)
    path = paths.service(job, node, task)
    for _ in range(10):
        try:
            await store.create(path, value, ephemeral=True)
            return value
        except NodeExists:
            pass
        try:
            await store.transaction([Delete(path), Create(path, value, ephemeral=True)])
            return value
        except TransactionFailed as e:
            if not isinstance(e.cause, NoNode):
                raise
            # vanished in between (its session ended): create it plainly
    raise RuntimeError(f"registering {path} raced with other writers 10 times")


async def deregister_endpoint(store: Store, job: str, task: str, node: str) -> None:
    """Withdraw `task`'s endpoint (nothing happens if it is not registered)."""
    await store.delete(paths.service(job, node, task))


async def drain_endpoint(store: Store, job: str, task: str, node: str,
                         grace: float) -> None:
    """Deregister `task`, then wait `grace` seconds (the job's `grace:`) so clients that
    resolved it just before finish their requests. The node calls this before it stops a
    healthy task of a service job; stopping follows when it returns."""
    await deregister_endpoint(store, job, task, node)
    if grace > 0:
        await trio.sleep(grace)


def _clean(entry: Entry | None, job: str, node: str, task: str) -> dict[str, Any] | None:
    """The endpoint as clients see it. Its task and node come from its path, which the
    store's ACLs vouch for; a value claiming another task or node is not believed."""
    if entry is None:
        return None
    v = entry.value
    if entry.corrupt is not None or not isinstance(v, dict) or not isinstance(
            v.get("host"), str):
        log.warning("ignoring unreadable endpoint %s/%s of %s", node, task, job)
        return None
    if v.get("task") not in (None, task) or v.get("node") not in (None, node):
        log.warning("ignoring endpoint %s/%s of %s: it claims task %r on node %r", node,
                    task, job, v.get("task"), v.get("node"))
        return None
    ports = v.get("ports")
    return {"task": task, "node": node, "host": v["host"],
            "ports": dict(ports) if isinstance(ports, dict) else {}}


def _in_task_order(values: Mapping[tuple[str, str], dict[str, Any] | None]
                   ) -> list[dict[str, Any]]:
    return [ep for _, ep in sorted((key[::-1], ep) for key, ep in values.items()
                                   if ep is not None)]


async def list_endpoints(store: Store, job: str) -> list[dict[str, Any]]:
    """The registered (healthy) endpoints of `job`, sorted by task:
    `[{"task", "node", "host", "ports"}]` ([] for an unknown job)."""
    nodes = await store.children(paths.services(job))
    found: dict[tuple[str, str], dict[str, Any] | None] = {}
    limit = trio.CapacityLimiter(_READS)

    async def read(node: str, task: str) -> None:
        async with limit:
            try:
                entry = await store.get(paths.service(job, node, task))
            except CorruptValue:
                entry = Entry(None, 0, corrupt=CorruptValue(task, "unreadable"))
            found[(node, task)] = _clean(entry, job, node, task)

    async def read_node(node: str) -> None:
        if not paths.is_name(node):
            return
        async with limit:
            tasks = await store.children(paths.service_node(job, node))
        async with trio.open_nursery() as inner:
            for task in tasks:
                if paths.is_name(task):
                    inner.start_soon(read, node, task)

    async with trio.open_nursery() as nursery:
        for node in nodes:
            nursery.start_soon(read_node, node)
    return _in_task_order(found)


class _Fired(WakeFlag):
    """The flag of one path's one-shot watch: records which path fired, wakes the loop."""

    def __init__(self, key: str, fired: set[str], wake: WakeFlag) -> None:
        super().__init__()
        self.key, self.fired, self.wake = key, fired, wake

    def set(self, *_: Any) -> None:
        self.fired.add(self.key)
        self.wake.set()

    def set_threadsafe(self, *_: Any) -> None:
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(self.set)


_DIR = "\x00dir"  # key of the job directory's own watch (no node is named that)


async def follow_endpoints(store: Store, job: str) -> AsyncGenerator[list[dict[str, Any]]]:
    """Follow `job`'s endpoints: yields the current list (as `list_endpoints`), then the
    new list after each change:

        async for endpoints in follow_endpoints(store, job): ...

    One watch on the job's directory, one on each node's directory and one per endpoint,
    each re-armed only when it fires, so a task re-registered with other ports is seen as
    well as tasks and nodes coming and going. Level-triggered: a burst of changes may
    arrive as one update, the final state is never missed, consecutive updates always
    differ. Survives reconnects (everything is re-read); ends with `StoreClosed` when
    the store is closed."""
    directory = paths.services(job)
    wake = WakeFlag()
    fired: set[Any] = {_DIR}
    flags: dict[Any, _Fired] = {}
    untrack: dict[Any, Callable[[], None]] = {"": store._track_flag(wake)}
    tasks: dict[str, list[str]] = {}  # node -> its endpoints' task names
    values: dict[tuple[str, str], dict[str, Any] | None] = {}
    last: list[dict[str, Any]] | None = None

    def flag(key: Any) -> _Fired:
        if key not in flags:
            flags[key] = _Fired(key, fired, wake)
            untrack[key] = store._track_flag(flags[key])
        return flags[key]

    def forget(key: Any) -> None:
        flags.pop(key, None)
        if (undo := untrack.pop(key, None)) is not None:
            undo()

    try:
        while True:
            wake.clear()
            # woken bare (a reconnect): read everything again
            todo = set(fired) if fired else {_DIR, *tasks, *values}
            fired.clear()
            try:
                if _DIR in todo:
                    nodes = [n for n in await store._arm_children(directory, flag(_DIR))
                             if paths.is_name(n)]
                    for gone in set(tasks) - set(nodes):
                        forget(gone)
                        for t in tasks.pop(gone):
                            values.pop((gone, t), None)
                            forget((gone, t))
                    for node in nodes:
                        tasks.setdefault(node, [])
                        if node not in flags:
                            todo.add(node)
                for node in list(tasks):
                    if node in todo:
                        names = [t for t in await store._arm_children(
                            paths.service_node(job, node), flag(node)) if paths.is_name(t)]
                        for gone in set(tasks[node]) - set(names):
                            values.pop((node, gone), None)
                            forget((node, gone))
                        tasks[node] = names
                    for t in tasks[node]:
                        key = (node, t)
                        if key in todo or key not in values:
                            entry = await store._arm_data(paths.service(job, node, t),
                                                          flag(key))
                            values[key] = _clean(entry, job, node, t)
            except Unavailable as e:
                log.info("following %s waits for the store: %s", directory, e)
                fired.update(todo)
                with trio.move_on_after(_RETRY):
                    await wake.wait()
                store._check_open()
                continue
            current = _in_task_order(values)
            if current != last:
                last = current
                yield current
            await wake.wait()
            store._check_open()
    finally:
        for undo in untrack.values():
            undo()


class Resolver:
    """Round-robin over a service's healthy endpoints, kept current by a watch.

    `next()` returns the endpoints in turn, waiting while there are none; `endpoints` is
    the current list. Open it with `async with Resolver.open(store, job) as r:`."""

    def __init__(self, job: str) -> None:
        self.job = job
        self.endpoints: list[dict[str, Any]] = []
        self._i = 0
        self._available = trio.Event()

    @classmethod
    @asynccontextmanager
    async def open(cls, store: Store, job: str) -> AsyncIterator[Resolver]:
        resolver = cls(job)
        async with trio.open_nursery() as nursery:
            ready = trio.Event()

            async def follow() -> None:
                async for eps in follow_endpoints(store, job):
                    resolver.update(eps)
                    ready.set()

            nursery.start_soon(follow)
            await ready.wait()
            try:
                yield resolver
            finally:
                nursery.cancel_scope.cancel()

    def update(self, endpoints: list[dict[str, Any]]) -> None:
        """Replace the list (what `open`'s watch does on every change)."""
        self.endpoints = list(endpoints)
        if self.endpoints:
            self._available.set()
        elif self._available.is_set():
            self._available = trio.Event()

    async def next(self, timeout: float = math.inf) -> dict[str, Any]:
        """The next endpoint in turn; waits up to `timeout` seconds for one to exist
        (`trio.TooSlowError` past it)."""
        with trio.fail_after(timeout):
            while not self.endpoints:
                await self._available.wait()
        ep = self.endpoints[self._i % len(self.endpoints)]
        self._i += 1
        return ep

    def address(self, port: str) -> tuple[str, int]:
        """`(host, port)` of the next endpoint's named port, without waiting; raises
        LookupError when the service has no endpoint (or none with that port)."""
        candidates = [ep for ep in self.endpoints if port in ep["ports"]]
        if not candidates:
            raise LookupError(f"{self.job} has no healthy endpoint with a port {port!r}")
        ep = candidates[self._i % len(candidates)]
        self._i += 1
        return ep["host"], int(ep["ports"][port])
