"""Service endpoints on both backends: register, list, vanish with the session, follow."""

from __future__ import annotations

from contextlib import aclosing

import pytest
import trio

from helios.coordination import Store, paths
from helios.endpoints import (
    Resolver,
    deregister_endpoint,
    drain_endpoint,
    follow_endpoints,
    list_endpoints,
    register_endpoint,
)
from tests.helios.coordination.conftest import Backend

WAIT = 20


async def test_register_and_list_in_contract_shape(store: Store) -> None:
    await register_endpoint(store, "web", "web-2b", "n2", "10.0.0.2", {"http": 21005})
    await register_endpoint(store, "web", "web-1a", "n1", "10.0.0.1", {"http": 21004})
    assert await list_endpoints(store, "web") == [
        {"task": "web-1a", "node": "n1", "host": "10.0.0.1", "ports": {"http": 21004}},
        {"task": "web-2b", "node": "n2", "host": "10.0.0.2", "ports": {"http": 21005}},
    ]
    assert await list_endpoints(store, "other") == []
    await deregister_endpoint(store, "web", "web-1a", "n1")
    await deregister_endpoint(store, "web", "web-1a", "n1")  # twice: harmless
    assert [e["task"] for e in await list_endpoints(store, "web")] == ["web-2b"]


async def test_register_again_replaces_the_value(store: Store) -> None:
    await register_endpoint(store, "web", "web-1a", "n1", "h", {"http": 1000})
    await register_endpoint(store, "web", "web-1a", "n1", "h", {"http": 2000})
    assert (await list_endpoints(store, "web"))[0]["ports"] == {"http": 2000}


async def test_registration_left_by_an_older_session_is_taken_over(backend: Backend) -> None:
    """A node daemon restarted before its old session expired registers again: the
    entry must then belong to the new session, or it would vanish with the old one."""
    old, new, reader = await backend.open(), await backend.open(), await backend.open()
    await register_endpoint(old, "web", "web-1a", "n1", "h", {"http": 1000})
    await register_endpoint(new, "web", "web-1a", "n1", "h", {"http": 1001})
    await old.aclose()
    assert await list_endpoints(reader, "web") == [
        {"task": "web-1a", "node": "n1", "host": "h", "ports": {"http": 1001}}]


async def test_endpoints_vanish_when_the_session_closes(backend: Backend) -> None:
    node, client = await backend.open(), await backend.open()
    await register_endpoint(node, "web", "web-1a", "n1", "h", {"http": 1000})
    assert len(await list_endpoints(client, "web")) == 1
    await node.aclose()
    with trio.fail_after(WAIT):
        while await list_endpoints(client, "web"):
            await trio.sleep(0.05)


async def test_endpoints_vanish_when_the_session_expires(backend: Backend) -> None:
    node, client = await backend.open(), await backend.open()
    await register_endpoint(node, "web", "web-1a", "n1", "h", {"http": 1000})
    await backend.expire(node)
    with trio.fail_after(WAIT):
        while await list_endpoints(client, "web"):
            await trio.sleep(0.05)


async def test_invalid_endpoints_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="port"):
        await register_endpoint(store, "web", "web-1a", "n1", "h", {"http": 70000})
    with pytest.raises(ValueError, match="host"):
        await register_endpoint(store, "web", "web-1a", "n1", "", {"http": 80})
    with pytest.raises(ValueError):
        await register_endpoint(store, "web", "../x", "n1", "h", {"http": 80})


async def test_drain_deregisters_then_waits_the_grace(store: Store) -> None:
    await register_endpoint(store, "web", "web-1a", "n1", "h", {"http": 1000})
    start = trio.current_time()
    await drain_endpoint(store, "web", "web-1a", "n1", 0.2)
    assert trio.current_time() - start >= 0.2
    assert await list_endpoints(store, "web") == []


async def test_follow_sees_every_change(backend: Backend) -> None:
    node, client = await backend.open(), await backend.open()
    seen: list[list[tuple[str, int]]] = []

    def short(eps: list[dict]) -> list[tuple[str, int]]:
        return [(e["task"], e["ports"]["http"]) for e in eps]

    with trio.fail_after(WAIT):
        async with aclosing(follow_endpoints(client, "web")) as it:
            seen.append(short(await anext(it)))                      # current: none
            await register_endpoint(node, "web", "web-1a", "n1", "h", {"http": 1000})
            seen.append(short(await anext(it)))
            await register_endpoint(node, "web", "web-1a", "n1", "h", {"http": 1001})
            seen.append(short(await anext(it)))                      # same task, new port
            await register_endpoint(node, "web", "web-2b", "n1", "h", {"http": 1002})
            seen.append(short(await anext(it)))
            await deregister_endpoint(node, "web", "web-1a", "n1")
            seen.append(short(await anext(it)))
            await node.aclose()                                      # session ends
            seen.append(short(await anext(it)))
    assert seen == [[], [("web-1a", 1000)], [("web-1a", 1001)],
                    [("web-1a", 1001), ("web-2b", 1002)], [("web-2b", 1002)], []]


async def test_follow_sees_nodes_and_their_directories_come_and_go(backend: Backend) -> None:
    """Endpoints live one level down, per node: a follower sees a second node's
    directory appear, tasks under each, and a whole node directory removed."""
    n1, n2, client = await backend.open(), await backend.open(), await backend.open()
    with trio.fail_after(WAIT):
        async with aclosing(follow_endpoints(client, "web")) as it:
            assert await anext(it) == []
            await register_endpoint(n1, "web", "web-b", "n1", "h1", {"http": 1})
            assert [(e["task"], e["node"]) for e in await anext(it)] == [("web-b", "n1")]
            await register_endpoint(n2, "web", "web-a", "n2", "h2", {"http": 2})
            assert [(e["task"], e["node"]) for e in await anext(it)] == [
                ("web-a", "n2"), ("web-b", "n1")]                    # in task order
            await n2.aclose()
            assert [e["task"] for e in await anext(it)] == ["web-b"]
            await client.delete(paths.service_node("web", "n2"))      # the collector
            await deregister_endpoint(n1, "web", "web-b", "n1")
            while await anext(it) != []:
                pass


async def test_an_endpoint_claiming_another_node_or_task_is_not_believed(
        store: Store) -> None:
    """Readers take node and task from the path, which ZooKeeper's ACLs vouch for: an
    endpoint that claims to be another node's (or another task) is ignored."""
    await register_endpoint(store, "web", "web-1", "n1", "h", {"http": 1})
    await store.create(paths.service("web", "n1", "web-2"),
                       {"task": "web-2", "node": "n2", "host": "evil", "ports": {"http": 2}})
    await store.create(paths.service("web", "n1", "web-3"),
                       {"task": "web-9", "node": "n1", "host": "evil", "ports": {"http": 3}})
    assert [e["task"] for e in await list_endpoints(store, "web")] == ["web-1"]
    with trio.fail_after(WAIT):
        async with aclosing(follow_endpoints(store, "web")) as it:
            assert [e["host"] for e in await anext(it)] == ["h"]


async def test_follow_coalesces_a_burst_into_its_final_state(store: Store) -> None:
    with trio.fail_after(WAIT):
        async with aclosing(follow_endpoints(store, "web")) as it:
            assert await anext(it) == []
            for i in range(20):
                await register_endpoint(store, "web", f"web-{i}", "n1", "h", {"http": 1000 + i})
            for i in range(19):
                await deregister_endpoint(store, "web", f"web-{i}", "n1")
            while True:
                eps = await anext(it)
                if [e["task"] for e in eps] == ["web-19"]:
                    break


async def test_follow_starts_with_existing_endpoints(store: Store) -> None:
    await register_endpoint(store, "web", "web-1a", "n1", "h", {"http": 1000})
    with trio.fail_after(WAIT):
        async with aclosing(follow_endpoints(store, "web")) as it:
            async for eps in it:
                assert [e["task"] for e in eps] == ["web-1a"]
                break


async def test_resolver_round_robin_and_waiting(backend: Backend) -> None:
    node, client = await backend.open(), await backend.open()
    with trio.fail_after(WAIT):
        async with Resolver.open(client, "web") as r:
            assert r.endpoints == []
            with pytest.raises(LookupError):
                r.address("http")
            async with trio.open_nursery() as n:
                got: list[dict] = []

                async def wait_one() -> None:
                    got.append(await r.next())

                n.start_soon(wait_one)
                await trio.sleep(0.05)
                assert got == []                       # waits while there is none
                await register_endpoint(node, "web", "web-1a", "n1", "h1", {"http": 1000})
            assert got[0]["task"] == "web-1a"
            await register_endpoint(node, "web", "web-2b", "n1", "h2", {"http": 2000})
            while len(r.endpoints) < 2:
                await trio.sleep(0.01)
            picks = [r.address("http") for _ in range(4)]
            assert sorted(set(picks)) == [("h1", 1000), ("h2", 2000)]
            assert picks[0] != picks[1] and picks[0] == picks[2]
            with pytest.raises(trio.TooSlowError):
                await deregister_endpoint(node, "web", "web-1a", "n1")
                await deregister_endpoint(node, "web", "web-2b", "n1")
                while r.endpoints:
                    await trio.sleep(0.01)
                await r.next(timeout=0.1)


async def test_endpoint_paths_follow_the_layout(store: Store) -> None:
    await register_endpoint(store, "web", "web-1a", "n1", "h", {"http": 1000})
    entry = await store.get(paths.service("web", "n1", "web-1a"))
    assert entry is not None and entry.value["node"] == "n1"


async def test_follow_sees_a_quick_re_registration_with_other_ports(backend: Backend) -> None:
    """Deregistered and registered again between two reads: the list of names is the
    same and the version may be too, but the ports changed and must be seen."""
    node, client = await backend.open(), await backend.open()
    await register_endpoint(node, "web", "web-1a", "n1", "h", {"http": 1000})
    with trio.fail_after(WAIT):
        async with aclosing(follow_endpoints(client, "web")) as it:
            assert (await anext(it))[0]["ports"] == {"http": 1000}
            await deregister_endpoint(node, "web", "web-1a", "n1")
            await register_endpoint(node, "web", "web-1a", "n1", "h", {"http": 2000})
            while (await anext(it)) != [
                    {"task": "web-1a", "node": "n1", "host": "h", "ports": {"http": 2000}}]:
                pass


def test_the_service_client_example_runs() -> None:
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[3] / "examples" / "service_client.py"
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    answers = [line.split("-> ")[1] for line in out.splitlines() if "-> " in line]
    assert answers == ["hello from web-1a", "hello from web-2b"] * 2 + ["hello from web-2b"] * 2


@pytest.mark.zookeeper
async def test_the_service_client_example_honours_the_zk_root(zk_hosts: str,
                                                              zk_root: str) -> None:
    """`--zk HOSTS/root` follows the endpoints under that root, not /helios."""
    import subprocess
    import sys
    from pathlib import Path

    from helios.coordination import open_zookeeper

    script = Path(__file__).resolve().parents[3] / "examples" / "service_client.py"
    store = await open_zookeeper(zk_hosts, zk_root)
    async with store:
        await register_endpoint(store, "web", "web-root1", "n1", "127.0.0.1", {"http": 1})
        proc = await trio.lowlevel.open_process(
            [sys.executable, str(script), "--zk", f"{zk_hosts}{zk_root}", "--job", "web"],
            stdout=subprocess.PIPE)
        out = b""
        try:
            with trio.move_on_after(20):
                assert proc.stdout is not None
                while b"web-root1" not in out:
                    chunk = await proc.stdout.receive_some(4096)
                    if not chunk:
                        break
                    out += chunk
        finally:
            proc.kill()
            await proc.wait()
    assert b"web: 1 healthy endpoint(s)" in out and b"web-root1" in out, out
