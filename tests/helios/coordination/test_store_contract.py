"""The Store contract, run unchanged against ZooKeeper and the embedded store."""

from __future__ import annotations

import pytest
import trio

from helios.coordination import (
    Check,
    ConnectionState,
    CorruptValue,
    Create,
    Delete,
    NodeExists,
    NoNode,
    NotEmpty,
    Set,
    Store,
    TransactionFailed,
    ValueTooLarge,
    VersionConflict,
    paths,
)
from helios.coordination.codec import MAX_VALUE_BYTES
from tests.helios.coordination.conftest import Backend

WAIT = 20  # bound on every wait for an event that must come


async def test_create_get_set_delete(store: Store) -> None:
    assert await store.get("/jobs/web") is None
    assert await store.create("/jobs/web", {"image": "a"}) == "/jobs/web"
    entry = await store.get("/jobs/web")
    assert entry is not None and entry.value == {"image": "a"} and entry.version == 0
    assert await store.set("/jobs/web", {"image": "b"}) == 1
    assert (await store.get("/jobs/web")).value == {"image": "b"}
    with pytest.raises(NodeExists):
        await store.create("/jobs/web", {})
    with pytest.raises(NoNode):
        await store.set("/jobs/nope", {})
    with pytest.raises(NoNode):
        await store.create("/missing/parent/x", 1, makepath=False)
    assert await store.children("/jobs") == ["web"]
    assert await store.children("/nothing-here") == []
    await store.delete("/jobs/web")
    assert await store.get("/jobs/web") is None
    await store.delete("/jobs/web")  # deleting a missing path is not an error


async def test_sequential_and_recursive_delete(store: Store) -> None:
    a = await store.create(paths.history_event_prefix("web"), {"n": 1}, sequential=True)
    b = await store.create(paths.history_event_prefix("web"), {"n": 2}, sequential=True)
    assert a.startswith("/history/web/e-") and paths.sequence_of(b) > paths.sequence_of(a)
    with pytest.raises(NotEmpty):
        await store.delete(paths.history("web"))
    await store.delete(paths.HISTORY, recursive=True)
    assert await store.children(paths.HISTORY) == []
    assert not await store.exists(paths.history("web"))


async def test_compare_and_set_conflicts(backend: Backend) -> None:
    a, b = await backend.open(), await backend.open()
    await a.create("/cron/nightly", {"tick": 1})
    entry = await a.get("/cron/nightly")
    await b.set("/cron/nightly", {"tick": 2}, version=entry.version)  # b wins the race
    with pytest.raises(VersionConflict) as exc:
        await a.set("/cron/nightly", {"tick": 2}, version=entry.version)
    assert exc.value.path == "/cron/nightly"
    with pytest.raises(VersionConflict):
        await a.delete("/cron/nightly", version=entry.version)
    assert (await a.get("/cron/nightly")).value == {"tick": 2}
    await a.delete("/cron/nightly", version=entry.version + 1)
    assert await b.get("/cron/nightly") is None


async def test_transaction_all_or_nothing(store: Store) -> None:
    await store.create("/jobs/web", {"v": 1})
    ops = [Create("/jobs/api", {"v": 1}), Set("/jobs/web", {"v": 2}, version=7),
           Delete("/jobs/web")]
    with pytest.raises(TransactionFailed) as exc:
        await store.transaction(ops)
    assert exc.value.index == 1 and isinstance(exc.value.cause, VersionConflict)
    assert exc.value.op == ops[1]
    assert await store.get("/jobs/api") is None          # nothing applied
    assert (await store.get("/jobs/web")).value == {"v": 1}

    with pytest.raises(TransactionFailed) as exc:
        await store.transaction([Check("/jobs/web"), Create("/jobs/web", 1)])
    assert exc.value.index == 1 and isinstance(exc.value.cause, NodeExists)

    result = await store.transaction([
        Check("/jobs/web", 0), Set("/jobs/web", {"v": 2}, version=0),
        Create("/jobs/api", {"v": 1}), Create("/jobs/api/x", None),
        Create("/jobs/seq-", 1, sequential=True),
    ])
    assert result[:4] == [None, 1, "/jobs/api", "/jobs/api/x"]
    assert result[4].startswith("/jobs/seq-")
    assert (await store.get("/jobs/web")).value == {"v": 2}


async def test_watch_data_fires_once_per_change_and_rearms(backend: Backend) -> None:
    watcher, writer = await backend.open(), await backend.open()
    seen: list = []
    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            send, recv = trio.open_memory_channel(100)

            async def watch() -> None:
                async for entry in watcher.watch_data("/jobs/web"):
                    await send.send(entry)

            nursery.start_soon(watch)
            assert await recv.receive() is None                  # current state first
            await writer.create("/jobs/web", {"v": 0})
            seen.append(await recv.receive())
            for v in range(1, 4):                                # each change, once
                await writer.set("/jobs/web", {"v": v})
                seen.append(await recv.receive())
            await writer.delete("/jobs/web")
            seen.append(await recv.receive())
            await writer.create("/jobs/web", {"v": 9})
            seen.append(await recv.receive())
            await trio.sleep(0.3)                   # time for a duplicate to arrive, if any
            with pytest.raises(trio.WouldBlock):                # no duplicate deliveries
                recv.receive_nowait()
            nursery.cancel_scope.cancel()
    values = [None if e is None else e.value["v"] for e in seen]
    assert values == [0, 1, 2, 3, None, 9]
    assert [e.version for e in seen if e is not None] == [0, 1, 2, 3, 0]


async def test_watch_children(backend: Backend) -> None:
    watcher, writer = await backend.open(), await backend.open()
    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            send, recv = trio.open_memory_channel(100)

            async def watch() -> None:
                async for names in watcher.watch_children("/assignments/n1"):
                    await send.send(names)

            nursery.start_soon(watch)
            assert await recv.receive() == []
            await writer.create("/assignments/n1/t1", {})
            assert await recv.receive() == ["t1"]
            await writer.create("/assignments/n1/t2", {})
            assert await recv.receive() == ["t1", "t2"]
            await writer.set("/assignments/n1/t1", {"x": 1})     # data change: no event
            await writer.delete("/assignments/n1/t1")
            assert await recv.receive() == ["t2"]
            nursery.cancel_scope.cancel()


async def test_ephemeral_vanishes_when_session_closes(backend: Backend) -> None:
    owner, observer = await backend.open(), await backend.open()
    await owner.create(paths.node_up("n1"), {"session": owner.session_id}, ephemeral=True)
    assert await observer.exists(paths.node_up("n1"))
    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            gone = trio.Event()

            async def watch() -> None:
                async for entry in observer.watch_data(paths.node_up("n1")):
                    if entry is None:
                        gone.set()
                        return

            nursery.start_soon(watch)
            await owner.aclose()
            await gone.wait()
    assert owner.state == ConnectionState.CLOSED


async def test_ephemeral_vanishes_when_session_expires(backend: Backend) -> None:
    owner, observer = await backend.open(), await backend.open()
    await owner.create("/services/web/t1", {"port": 1}, ephemeral=True)
    await owner.create("/services/web/kept", {"port": 2})
    events: list[ConnectionState] = []
    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            reconnected = trio.Event()

            async def states() -> None:
                async for state in owner.connection_events():
                    events.append(state)
                    if ConnectionState.LOST in events and state == ConnectionState.CONNECTED:
                        reconnected.set()
                        return

            nursery.start_soon(states)
            await trio.sleep(0)
            old = owner.session_id
            await backend.expire(owner)
            await reconnected.wait()
    assert owner.session_id != old
    assert await observer.children("/services/web") == ["kept"]
    await owner.create("/services/web/t1", {"port": 1}, ephemeral=True)  # works again


async def test_value_too_large_is_refused_before_sending(store: Store) -> None:
    big = {"blob": "x" * (MAX_VALUE_BYTES + 1)}
    with pytest.raises(ValueTooLarge) as exc:
        await store.create("/jobs/huge", big)
    assert exc.value.path == "/jobs/huge" and exc.value.size > exc.value.limit
    assert await store.get("/jobs/huge") is None
    half = {"blob": "x" * (MAX_VALUE_BYTES // 2 + 10)}
    with pytest.raises(ValueTooLarge):
        await store.transaction([Create("/jobs/a", half), Create("/jobs/b", half)])
    assert await store.children("/jobs") == []
    await store.create("/jobs/fits", {"blob": "x" * 1000})   # the store still works


async def test_corrupt_value_is_reported_not_crashed_on(backend: Backend) -> None:
    store = await backend.open()
    await backend.write_raw(store, "/jobs/foreign", b"\x89PNG\x00\xff")
    await store.create("/jobs/good", {"ok": True})
    with pytest.raises(CorruptValue) as exc:
        await store.get("/jobs/foreign")
    assert exc.value.path == "/jobs/foreign"
    assert (await store.get("/jobs/good")).value == {"ok": True}
    with trio.fail_after(WAIT):
        async for entry in store.watch_data("/jobs/foreign"):
            assert entry is not None and entry.corrupt is not None and entry.value is None
            break
    await store.set("/jobs/foreign", {"repaired": True})    # can be overwritten
    assert (await store.get("/jobs/foreign")).value == {"repaired": True}


async def test_put_upserts(store: Store) -> None:
    assert await store.put("/cron/x", {"t": 1}) == 0
    assert await store.put("/cron/x", {"t": 2}) == 1
    assert (await store.get("/cron/x")).value == {"t": 2}


async def test_watch_survives_session_loss(backend: Backend) -> None:
    watcher, writer = await backend.open(), await backend.open()
    await writer.create("/jobs/web", {"v": 0})
    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            send, recv = trio.open_memory_channel(100)

            async def watch() -> None:
                async for entry in watcher.watch_data("/jobs/web"):
                    await send.send(entry)

            nursery.start_soon(watch)
            assert (await recv.receive()).value == {"v": 0}
            await backend.expire(watcher)              # its server-side watches are gone
            await backend.wait_connected(watcher)
            await writer.set("/jobs/web", {"v": 1})
            while (await recv.receive()).value != {"v": 1}:
                pass                                  # re-armed on the new session
            await writer.set("/jobs/web", {"v": 2})
            assert (await recv.receive()).value == {"v": 2}
            nursery.cancel_scope.cancel()


def test_paths_refuse_escapes() -> None:
    assert paths.status("n1", "web-1") == "/status/n1/web-1"
    assert paths.normalize("jobs//web/") == "/jobs/web"
    for bad in ("..", "a/b", "", "-x" * 200):
        with pytest.raises(ValueError):
            paths.job(bad)
    with pytest.raises(ValueError):
        paths.normalize("/jobs/../x")
