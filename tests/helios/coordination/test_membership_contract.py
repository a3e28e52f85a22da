"""Membership and the cluster-id guard, run unchanged against both backends."""

from __future__ import annotations

import pytest
import trio

from helios.coordination import (
    ClusterIdMismatch,
    check_cluster,
    init_cluster,
    members,
    paths,
    presence,
    wait_for_cluster,
    watch_members,
)
from tests.helios.coordination.conftest import Backend

WAIT = 30


async def test_presence_and_watch_members(backend: Backend) -> None:
    conductor, n1, n2 = await backend.open(), await backend.open(), await backend.open()
    with trio.fail_after(WAIT):
        async with watch_members(conductor) as updates:
            assert await updates.receive() == frozenset()
            async with presence(n1, "n1", {"address": "127.0.0.1:1"}):
                assert await updates.receive() == {"n1"}
                async with presence(n2, "n2", {"address": "127.0.0.1:2"}):
                    assert await updates.receive() == {"n1", "n2"}
                    found, bad = await members(conductor)
                    assert {m.name for m in found.values() if m.up} == {"n1", "n2"}
                    assert found["n1"].record == {"address": "127.0.0.1:1"} and bad == []
                assert await updates.receive() == {"n1"}
            assert await updates.receive() == frozenset()
            # the records stay after the presences end
            found, _ = await members(conductor)
            assert set(found) == {"n1", "n2"} and not any(m.up for m in found.values())


async def test_node_reregisters_after_session_loss(backend: Backend) -> None:
    node, observer = await backend.open(), await backend.open()
    with trio.fail_after(WAIT):
        async with presence(node, "n1", {"address": "a"}):
            old = node.session_id
            async with trio.open_nursery() as nursery:
                seen: list[object] = []
                back = trio.Event()

                async def watch() -> None:
                    async for entry in observer.watch_data(paths.node_up("n1")):
                        seen.append(entry)
                        if entry is not None and entry.value["session"] != old:
                            back.set()
                            return

                nursery.start_soon(watch)
                await backend.expire(node)
                await back.wait()
            assert node.session_id != old
    found, _ = await members(observer)
    assert found["n1"].up is False            # presence removed when the block ended


async def test_corrupt_member_record_is_reported(backend: Backend) -> None:
    store = await backend.open()
    await backend.write_raw(store, paths.node("bad"), b"{not json")
    async with presence(store, "good", {"address": "x"}):
        found, bad = await members(store)
    assert set(found) == {"good"} and [e.path for e in bad] == [paths.node("bad")]


async def test_cluster_id_guard(backend: Backend) -> None:
    c1, c2, node = await backend.open(), await backend.open(), await backend.open()
    with pytest.raises(ClusterIdMismatch):
        await check_cluster(node, None)              # nothing initialised yet
    cid = await init_cluster(c1)
    assert await init_cluster(c2) == cid             # later conductors adopt it
    assert await check_cluster(node, cid) == cid
    assert set(await c1.children("/")) >= {"cluster-id", "nodes", "jobs", "conductors"}
    with pytest.raises(ClusterIdMismatch):
        await init_cluster(c2, expected="another-cluster")

    await c1.delete("/", recursive=True)             # the store is wiped
    with pytest.raises(ClusterIdMismatch):
        await check_cluster(node, cid)
    with pytest.raises(ClusterIdMismatch):
        await init_cluster(c1, expected=cid)         # a conductor that knew it refuses too

    await c1.create("/jobs/leftover", {"x": 1})      # data without an id: foreign
    with pytest.raises(ClusterIdMismatch):
        await init_cluster(c2)
    await c1.delete("/", recursive=True)

    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            result: list[str] = []

            async def node_waits() -> None:
                result.append(await wait_for_cluster(node, cid, interval=0.05))

            nursery.start_soon(node_waits)
            await trio.sleep(0.2)                    # several retries (interval 0.05)
            assert not result                        # still refusing, retrying
            await c1.create(paths.CLUSTER_ID, {"cluster_id": cid})   # the root is restored
    assert result == [cid]
