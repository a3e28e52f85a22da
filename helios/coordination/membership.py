"""Node membership: a persistent record plus an ephemeral presence.

`/nodes/<name>` holds the node's record (address, resources, labels) and outlives the
node's session; `/nodes/<name>/up` exists exactly while a session of that node lives.
`presence()` keeps `up` there for as long as its block runs: when the session is lost
(and with it the ephemeral), it re-registers as soon as a new session is connected.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

import helios.coordination.paths as paths
from helios.coordination.errors import CoordinationError, CorruptValue, NodeExists, Unavailable
from helios.coordination.store import Store, wait_connected

log = logging.getLogger(__name__)


async def register_node(store: Store, name: str, record: dict[str, Any]) -> None:
    """Create or replace the node's record."""
    await store.put(paths.node(name), record)


@dataclass(frozen=True)
class Member:
    """A registered node: its record and whether a session of it is alive."""

    name: str
    record: dict[str, Any] | None
    up: bool


async def members(store: Store) -> tuple[dict[str, Member], list[CorruptValue]]:
    """All registered nodes, and the records that do not decode (reported, skipped)."""
    out: dict[str, Member] = {}
    bad: list[CorruptValue] = []
    for name in await store.children(paths.NODES):
        try:
            entry = await store.get(paths.node(name))
        except CorruptValue as e:
            log.warning("%s", e)
            bad.append(e)
            continue
        if entry is None:
            continue
        up = "up" in await store.children(paths.node(name))
        out[name] = Member(name, entry.value, up)
    return out, bad


async def _claim_up(store: Store, name: str, instance: str | None = None) -> None:
    """Create our presence; wait for a stale one (our previous, dead session) to expire.
    ``instance`` (the daemon's state-directory id, `node/identity.py`) goes into it, so a
    daemon of the same name from another state directory is told apart and refused."""
    up = paths.node_up(name)
    warned = False
    async with aclosing(store.watch_data(up)) as watch:
        async for entry in watch:
            if entry is not None:
                value = entry.value if isinstance(entry.value, dict) else {}
                if value.get("session") == store.session_id:
                    return
                if not warned:
                    log.warning("presence of node %s is held by session %s (an earlier run, "
                                "or another process with the same name); waiting for it to "
                                "end", name, value.get("session"))
                    warned = True
                continue
            while True:
                await wait_connected(store)
                try:
                    value = {"session": store.session_id, "since": time.time()}
                    if instance:
                        value["instance"] = instance
                    await store.create(up, value, ephemeral=True)
                    return
                except NodeExists:
                    break          # someone else's (or a race): the watch shows it
                except Unavailable as e:
                    log.info("cannot register node %s yet (%s)", name, e)
                    await trio.sleep(0.5)


async def _keep_up(store: Store, name: str, record: dict[str, Any] | None = None,
                   instance: str | None = None) -> None:
    """Re-create the presence whenever it vanishes (session lost, or deleted by hand).

    If the record went too (`helios node rm --force` of a node whose daemon still
    runs), register again, as a kubelet does when its Node object is deleted: a live
    daemon is a member; only stopping it keeps the machine out."""
    up = paths.node_up(name)
    async with aclosing(store.watch_data(up)) as watch:
        async for entry in watch:
            if entry is None:
                if record is not None and not await store.exists(paths.node(name)):
                    log.warning("node %s was removed from the cluster while it runs; "
                                "registering again", name)
                    await register_node(store, name, record)
                else:
                    log.warning("presence of node %s vanished; re-registering", name)
                await _claim_up(store, name, instance)


@asynccontextmanager
async def presence(store: Store, name: str, record: dict[str, Any] | None = None,
                   instance: str | None = None) -> AsyncIterator[None]:
    """Register (`record`, if given) and be present until the block ends."""
    if record is not None:
        await register_node(store, name, record)
    await _claim_up(store, name, instance)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_keep_up, store, name, record, instance)
            try:
                yield
            finally:
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            try:
                entry = await store.get(paths.node_up(name))
                if entry is not None and isinstance(entry.value, dict) \
                        and entry.value.get("session") == store.session_id:
                    await store.delete(paths.node_up(name), version=entry.version)
            except CoordinationError:
                pass


async def _watch_node(store: Store, name: str, send: trio.MemorySendChannel[tuple[str, bool]]
                      ) -> None:
    async for names in store.watch_children(paths.node(name)):
        await send.send((name, "up" in names))


@asynccontextmanager
async def watch_members(store: Store) -> AsyncIterator[trio.MemoryReceiveChannel[frozenset[str]]]:
    """A channel of the set of node names that are up: the current set first, then a new
    set after each change. Use as::

        async with watch_members(store) as updates:
            async for up in updates: ...
    """
    out_send, out_recv = trio.open_memory_channel[frozenset[str]](16)
    ev_send, ev_recv = trio.open_memory_channel[tuple[str, bool]](1024)

    async def names_loop(nursery: trio.Nursery) -> None:
        watched: dict[str, trio.CancelScope] = {}
        async for names in store.watch_children(paths.NODES):
            for name in names:
                if name not in watched:
                    scope = trio.CancelScope()
                    watched[name] = scope

                    async def one(name: str = name, scope: trio.CancelScope = scope) -> None:
                        with scope:
                            await _watch_node(store, name, ev_send)

                    nursery.start_soon(one)
            for name in set(watched) - set(names):
                watched.pop(name).cancel()
                await ev_send.send((name, False))
            if not names:
                await ev_send.send(("", False))

    async def merge() -> None:
        up: set[str] = set()
        last: frozenset[str] | None = None
        async for name, is_up in ev_recv:
            if name:
                (up.add if is_up else up.discard)(name)
            # coalesce a burst into one update
            while True:
                try:
                    name, is_up = ev_recv.receive_nowait()
                except trio.WouldBlock:
                    break
                if name:
                    (up.add if is_up else up.discard)(name)
            current = frozenset(up)
            if current != last:
                last = current
                await out_send.send(current)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(names_loop, nursery)
        nursery.start_soon(merge)
        try:
            yield out_recv
        finally:
            nursery.cancel_scope.cancel()
