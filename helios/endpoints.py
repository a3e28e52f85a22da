"""Service endpoints: where the healthy tasks of a service job can be reached.

A task that passes its health check is registered as an *ephemeral* entry at
`/services/<job>/<task>` holding `{"task", "node", "host", "ports"}` (the shape of
`helios endpoints NAME --json`, docs/json.md). Ephemeral means it belongs to the session of
the node that wrote it: if that node dies, ZooKeeper removes its endpoints when the
session expires, without anyone cleaning up. Before a task is stopped (rollout, scale
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
from collections.abc import AsyncIterator, Mapping
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
    registration with it when that old session ends."""
    value = _endpoint(job, task, node, host, ports)
    path = paths.service(job, task)
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


async def deregister_endpoint(store: Store, job: str, task: str) -> None:
    """Withdraw `task`'s endpoint (nothing happens if it is not registered)."""
    await store.delete(paths.service(job, task))


async def drain_endpoint(store: Store, job: str, task: str, grace: float) -> None:
    """Deregister `task`, then wait `grace` seconds (the job's `grace:`) so clients that
    resolved it just before finish their requests. The node calls this before it stops a
    healthy task of a service job; stopping follows when it returns."""
    await deregister_endpoint(store, job, task)
    if grace > 0:
        await trio.sleep(grace)


def _clean(entry: Entry | None, job: str, name: str) -> dict[str, Any] | None:
    if entry is None:
        return None
    v = entry.value
    if entry.corrupt is not None or not isinstance(v, dict) or not isinstance(
            v.get("host"), str):
        log.warning("ignoring unreadable endpoint %s of %s", name, job)
        return None
    return {"task": str(v.get("task") or name), "node": str(v.get("node") or ""),
            "host": v["host"], "ports": dict(v.get("ports") or {})}


async def list_endpoints(store: Store, job: str) -> list[dict[str, Any]]:
    """The registered (healthy) endpoints of `job`, sorted by task:
    `[{"task", "node", "host", "ports"}]` ([] for an unknown job)."""
    names = await store.children(paths.services(job))
    found: dict[str, dict[str, Any]] = {}
    limit = trio.CapacityLimiter(_READS)

    async def read(name: str) -> None:
        async with limit:
            try:
                entry = await store.get(paths.service(job, name))
            except CorruptValue:
                entry = Entry(None, 0, corrupt=CorruptValue(name, "unreadable"))
            ep = _clean(entry, job, name)
            if ep is not None:
                found[name] = ep

    async with trio.open_nursery() as nursery:
        for name in names:
            nursery.start_soon(read, name)
    return [found[n] for n in sorted(found)]


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


_DIR = "\x00dir"  # key of the directory's own watch (no task is named that)


async def follow_endpoints(store: Store, job: str) -> AsyncIterator[list[dict[str, Any]]]:
    """Follow `job`'s endpoints: yields the current list (as `list_endpoints`), then the
    new list after each change:

        async for endpoints in follow_endpoints(store, job): ...

    One watch on the directory and one per endpoint, each re-armed only when it fires,
    so a task re-registered with other ports is seen as well as tasks coming and going.
    Level-triggered: a burst of changes may arrive as one update, the final state is
    never missed, consecutive updates always differ. Survives reconnects (everything is
    re-read); ends with `StoreClosed` when the store is closed."""
    directory = paths.services(job)
    wake = WakeFlag()
    fired: set[str] = {_DIR}
    flags: dict[str, _Fired] = {}
    untrack = {"": store._track_flag(wake)}
    values: dict[str, dict[str, Any] | None] = {}
    names: list[str] = []
    last: list[dict[str, Any]] | None = None

    def flag(key: str) -> _Fired:
        if key not in flags:
            flags[key] = _Fired(key, fired, wake)
            untrack[key] = store._track_flag(flags[key])
        return flags[key]

    try:
        while True:
            wake.clear()
            todo = set(fired) if fired else {_DIR, *names}  # woken bare: reconnect
            fired.clear()
            try:
                if _DIR in todo:
                    names = await store._arm_children(directory, flag(_DIR))
                for gone in set(values) - set(names):
                    values.pop(gone)
                    flags.pop(gone, None)
                    if (undo := untrack.pop(gone, None)) is not None:
                        undo()
                for name in names:
                    if name in todo or name not in values:
                        entry = await store._arm_data(paths.service(job, name), flag(name))
                        values[name] = _clean(entry, job, name)
            except Unavailable as e:
                log.info("following %s waits for the store: %s", directory, e)
                fired.update(todo)
                with trio.move_on_after(_RETRY):
                    await wake.wait()
                store._check_open()
                continue
            current = [ep for n in sorted(values) if (ep := values[n]) is not None]
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
