"""ZooKeeper-only behaviour: a client process killed with SIGKILL, the server stopped and
restarted under a connected client, a 3-server ensemble losing servers, and digest ACLs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from helios.coordination import (
    ConnectionState,
    NotAuthorized,
    Unavailable,
    init_cluster,
    members,
    open_zookeeper,
    paths,
    presence,
)
from helios.coordination.acl import (
    ENV_CREDENTIAL,
    ENV_CREDENTIAL_FILE,
    conductor_credential,
    issue_node_credential,
    load_credential,
    parse_credential,
)
from tests.fixtures.zookeeper import start_ensemble, start_zookeeper, zookeeper_available

WAIT = 40

pytestmark = pytest.mark.zookeeper


@pytest.fixture(autouse=True)
def _need_zookeeper() -> None:
    if not zookeeper_available():
        from tests.fixtures.common import service_missing

        service_missing("ZooKeeper")


async def retry(fn: Callable[[], Awaitable[Any]], what: str) -> Any:
    """Call `fn` until it stops raising Unavailable (bounded by the caller's fail_after)."""
    while True:
        try:
            return await fn()
        except Unavailable:
            await trio.sleep(0.1)


async def wait_state(store: Any, wanted: ConnectionState) -> None:
    async for state in store.connection_events():
        if state == wanted:
            return


VICTIM = textwrap.dedent("""
    import sys, trio
    from helios.coordination import open_zookeeper, presence

    async def main(hosts, root):
        store = await open_zookeeper(hosts, root, session_timeout=2.0)
        async with presence(store, "victim", {"address": "127.0.0.1:1"}):
            print("ready", flush=True)
            await trio.sleep(600)

    trio.run(main, sys.argv[1], sys.argv[2])
""")


async def test_presence_vanishes_after_sigkill(zk_hosts: str, zk_root: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", VICTIM, zk_hosts, zk_root],
                            stdout=subprocess.PIPE, cwd=Path(__file__).parents[3],
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])})
    try:
        assert proc.stdout is not None
        line = await trio.to_thread.run_sync(proc.stdout.readline)
        assert line.strip() == b"ready"
        async with await open_zookeeper(zk_hosts, zk_root, session_timeout=4.0) as observer:
            assert await observer.exists(paths.node_up("victim"))
            proc.kill()                                   # SIGKILL, by PID
            await trio.to_thread.run_sync(proc.wait, 10)
            with trio.fail_after(WAIT):                   # gone once the session expires
                async for entry in observer.watch_data(paths.node_up("victim")):
                    if entry is None:
                        break
            found, _ = await members(observer)
            assert found["victim"].up is False and found["victim"].record is not None
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


async def test_server_stopped_and_restarted_under_a_client(tmp_path: Path) -> None:
    server = start_zookeeper(tmp_path / "zk")
    try:
        store = await open_zookeeper(server.hosts, "/helios", session_timeout=4.0,
                                     op_timeout=1.0)
        async with store:
            await store.create("/jobs/web", {"v": 1})
            with trio.fail_after(WAIT):
                async with presence(store, "n1", {"address": "a"}):
                    await trio.to_thread.run_sync(server.stop)
                    await wait_state(store, ConnectionState.SUSPENDED)
                    ticks = 0

                    async def ticker() -> None:
                        nonlocal ticks
                        while True:
                            ticks += 1
                            await trio.sleep(0.01)

                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(ticker)
                        await trio.sleep(0)
                        before = ticks
                        with pytest.raises(Unavailable) as exc:
                            await store.set("/jobs/web", {"v": 2})
                        nursery.cancel_scope.cancel()
                    assert "ZooKeeper" in str(exc.value)
                    assert ticks > before + 1    # the loop kept running meanwhile
                    await trio.to_thread.run_sync(server.start)
                    await wait_state(store, ConnectionState.CONNECTED)
                    await retry(lambda: store.set("/jobs/web", {"v": 2}), "set")
                    assert (await store.get("/jobs/web")).value == {"v": 2}
                    assert (await store.get("/jobs/web")).value == {"v": 2}
                    # present again, whether the session survived or was replaced
                    while not await retry(lambda: store.exists(paths.node_up("n1")), "up"):
                        await trio.sleep(0.1)
    finally:
        server.stop()


async def test_leader_steps_down_when_zookeeper_is_unreachable(tmp_path: Path) -> None:
    """kazoo only learns of session expiry after reconnecting: a leader cut off from
    ZooKeeper must drop leadership by itself, before its session could expire."""
    server = start_zookeeper(tmp_path / "zk")
    try:
        store = await open_zookeeper(server.hosts, "/helios", session_timeout=2.0,
                                     op_timeout=1.0)
        async with store:
            with trio.fail_after(WAIT):
                async with store.leadership("c1") as term:
                    await trio.to_thread.run_sync(server.kill)
                    await term.lost.wait()        # no server: nothing else can tell it
                    assert store.state != ConnectionState.CONNECTED
    finally:
        server.stop()


async def test_ensemble_survives_one_server_not_two(tmp_path: Path) -> None:
    ensemble = start_ensemble(tmp_path / "ensemble", size=3)
    try:
        store = await open_zookeeper(ensemble.hosts, "/helios", session_timeout=4.0,
                                     op_timeout=1.5)
        async with store:
            with trio.fail_after(WAIT * 2):
                for i in range(10):
                    await store.create(f"/jobs/j{i}", {"i": i})

                await trio.to_thread.run_sync(ensemble.servers[0].stop)   # one down
                for i in range(10):
                    await retry(lambda i=i: store.set(f"/jobs/j{i}", {"i": i, "round": 2}),
                                "set")
                await retry(lambda: store.create("/jobs/after-one-down", {"ok": 1}), "create")

                await trio.to_thread.run_sync(ensemble.servers[1].stop)   # no quorum
                with pytest.raises(Unavailable) as exc:
                    for _ in range(50):          # until the lone server notices
                        await store.set("/jobs/j0", {"i": 0, "round": 3})
                        await trio.sleep(0.1)
                assert "ZooKeeper" in str(exc.value)

                await trio.to_thread.run_sync(ensemble.servers[1].start)  # quorum again
                names = await retry(lambda: store.children("/jobs"), "children")
                assert sorted(names) == sorted([f"j{i}" for i in range(10)]
                                               + ["after-one-down"])
                for i in range(1, 10):
                    entry = await retry(lambda i=i: store.get(f"/jobs/j{i}"), "get")
                    assert entry.value == {"i": i, "round": 2} and entry.version == 1
                # j0's last write may or may not have landed (outcome unknown), but the
                # value is one of the two whole values written, never a torn one
                j0 = await retry(lambda: store.get("/jobs/j0"), "get")
                assert j0.value in ({"i": 0, "round": 2}, {"i": 0, "round": 3})
                await retry(lambda: store.set("/jobs/j0", {"i": 0, "round": 4}), "set")
                assert (await store.get("/jobs/j0")).value == {"i": 0, "round": 4}
    finally:
        ensemble.stop()


def test_credentials_come_from_file_or_environment(tmp_path: Path) -> None:
    assert load_credential({}) is None
    line = issue_node_credential("cluster-secret", "n1")
    assert load_credential({ENV_CREDENTIAL: line}).name == "n1"
    file = tmp_path / "cred"
    file.write_text("conductor:cluster-secret\n")
    cred = load_credential({ENV_CREDENTIAL_FILE: str(file), ENV_CREDENTIAL: line})
    assert cred.role == "conductor"
    assert "cluster-secret" not in repr(cred)
    node = parse_credential(line)
    assert node.cluster_secret is None and "cluster-secret" not in line
    with pytest.raises(ValueError):
        parse_credential("node:n1")


async def test_acls_confine_a_node_to_its_own_subtrees(zk_hosts: str, zk_root: str) -> None:
    secret = "test-cluster-secret"
    conductor = await open_zookeeper(zk_hosts, zk_root, session_timeout=4.0,
                                     credential=conductor_credential(secret))
    n1 = await open_zookeeper(zk_hosts, zk_root, session_timeout=4.0,
                              credential=parse_credential(issue_node_credential(secret, "n1")))
    n2 = await open_zookeeper(zk_hosts, zk_root, session_timeout=4.0,
                              credential=parse_credential(issue_node_credential(secret, "n2")))
    anonymous = await open_zookeeper(zk_hosts, zk_root, session_timeout=4.0)
    try:
        await init_cluster(conductor)
        await conductor.create(paths.job("web"), {"image": "x"})
        await conductor.create(paths.assignment("n1", "web-1"), {"job": "web"})
        with trio.fail_after(WAIT):
            async with presence(n1, "n1", {"address": "a"}), \
                    presence(n2, "n2", {"address": "b"}):
                await n1.create(paths.status("n1", "web-1"), {"state": "running"})
                await n2.create(paths.status("n2", "web-2"), {"state": "running"})
                await n1.set(paths.status("n1", "web-1"), {"state": "stopped"})
                # a node reads everything
                assert (await n1.get(paths.job("web"))).value == {"image": "x"}
                assert (await n1.get(paths.status("n2", "web-2"))).value["state"] == "running"
                assert await n1.children(paths.assignments("n1")) == ["web-1"]
                # ...but writes only its own subtrees
                for attempt in (
                    lambda: n1.set(paths.status("n2", "web-2"), {"state": "failed"}),
                    lambda: n1.delete(paths.status("n2", "web-2")),
                    lambda: n1.set(paths.node("n2"), {"address": "evil"}),
                    lambda: n1.set(paths.job("web"), {"image": "evil"}),
                    lambda: n1.create(paths.job("evil"), {}),
                    lambda: n1.delete(paths.assignment("n1", "web-1")),
                    lambda: n1.set(paths.CLUSTER_ID, {}),
                ):
                    with pytest.raises(NotAuthorized):
                        await attempt()
                assert (await conductor.get(paths.status("n2", "web-2"))).value == \
                    {"state": "running"}
                assert (await conductor.get(paths.job("web"))).value == {"image": "x"}
                # a node publishes its endpoints in the directory the conductor made for
                # it; another node can neither rewrite, delete nor fake them, and no
                # node can make a directory for a node name of its choice
                await conductor.create(paths.service_node("web", "n1"))
                await conductor.create(paths.service_node("web", "n2"))
                await n1.create(paths.service("web", "n1", "web-1"), {"port": 1},
                                ephemeral=True)
                for attack in (
                    lambda: n2.set(paths.service("web", "n1", "web-1"), {"port": 666}),
                    lambda: n2.delete(paths.service("web", "n1", "web-1")),
                    lambda: n2.create(paths.service("web", "n1", "fake"), {"port": 666},
                                      ephemeral=True),
                    lambda: n2.create(paths.service_node("web", "n3")),
                    lambda: n2.delete(paths.service_node("web", "n1")),
                    lambda: n2.create(paths.services("other")),
                ):
                    with pytest.raises(NotAuthorized):
                        await attack()
                await n2.create(paths.service("web", "n2", "web-2"), {"port": 2},
                                ephemeral=True)
                await n1.delete(paths.service("web", "n1", "web-1"))  # its own: allowed
                # conductors write everything, including a node's status
                await conductor.set(paths.status("n1", "web-1"), {"state": "lost"})
                # without the credential nothing can be read
                with pytest.raises(NotAuthorized):
                    await anonymous.get(paths.job("web"))
    finally:
        for s in (n1, n2, anonymous):
            await s.aclose()
        await conductor.delete("/", recursive=True)      # ACLs keep the fixture out
        await conductor.aclose()


async def test_zk_store_fixture_gives_an_open_store(zk_store: object, zk_root: str) -> None:
    from helios.coordination import ZooKeeperStore

    assert isinstance(zk_store, ZooKeeperStore) and zk_store.root == zk_root
    await zk_store.create("/jobs/web", {"ok": True})
    assert await zk_store.children("/jobs") == ["web"]
