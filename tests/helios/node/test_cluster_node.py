"""The node daemon with real ZooKeeper and Docker: SIGKILL and restart, store outage.

The node is real: a subprocess (`python -m helios.node`) in the SIGKILL test, an
in-process `run_node` in the outage test. The conductor is a small actor in the test's
own actor system, published at the leader path like the real one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

import actors
from helios import protocol
from helios.coordination import Store, init_cluster, open_zookeeper, paths
from helios.node.runtime import LABEL_NODE
from tests.fixtures.common import unique_name
from tests.fixtures.docker import docker_cli, remove_containers
from tests.fixtures.zookeeper import start_zookeeper
from tests.helios.node.conftest import FakeConductor, assignment, claim_epoch, node_running

pytestmark = [pytest.mark.docker, pytest.mark.zookeeper, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]


def inspect(cid: str) -> dict[str, Any]:
    return json.loads(docker_cli("inspect", cid).stdout)[0]


def node_containers(name: str) -> list[str]:
    return docker_cli("ps", "-aq", "--no-trunc", "--filter",
                      f"label={LABEL_NODE}={name}").stdout.split()


def start_node_process(name: str, zk: str, state_dir: Path, labels: dict[str, str],
                       log: Path) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "helios.node", "--zk", zk, "--name", name,
            "--state-dir", str(state_dir), "--session-timeout", "2",
            *[f"--container-label={k}={v}" for k, v in labels.items()]]
    with open(log, "ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                stdin=subprocess.DEVNULL)


async def wait_record(store: Store, name: str, not_url: str | None = None,
                      proc: subprocess.Popen[bytes] | None = None, log: Path | None = None
                      ) -> str:
    """The node actor URL from the node's record, once registered (a new one if given)."""
    with trio.move_on_after(30):
        while True:
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"node exited: {log.read_text()[-3000:] if log else ''}")
            entry = await store.get(paths.node(name))
            if entry is not None and entry.value.get("url") and entry.value["url"] != not_url:
                return entry.value["url"]
            await trio.sleep(0.1)
    raise AssertionError(f"node {name} did not register: "
                         f"{log.read_text()[-3000:] if log else ''}")


async def wait_status(ref: actors.ActorRef, task: str, pred: Any, timeout: float = 30.0
                      ) -> dict[str, Any]:
    last = None
    with trio.move_on_after(timeout):
        while True:
            try:
                for s in await ref.ask("statuses"):
                    if s["id"] == task:
                        last = s
                        if pred(s):
                            return s
            except actors.ActorError:
                pass
            await trio.sleep(0.1)
    raise AssertionError(f"task {task}: condition not met within {timeout}s; last {last}")


async def wait_store_status(store: Store, node: str, task: str, pred: Any,
                            timeout: float = 30.0) -> dict[str, Any]:
    last = None
    with trio.move_on_after(timeout):
        while True:
            try:
                entry = await store.get(paths.status(node, task))
                last = entry.value if entry else None
                if last is not None and pred(last):
                    return last
            except Exception:  # the store may still be reconnecting
                pass
            await trio.sleep(0.1)
    raise AssertionError(f"status of {task} in the store: not met within {timeout}s; {last}")


async def test_sigkill_node_then_restart_adopts_and_restarts(
        zk_hosts: str, zk_root: str, tmp_path: Path, docker_labels: dict[str, str],
        docker_test_image: str) -> None:
    name = unique_name("node")
    state_dir, log = tmp_path / "state", tmp_path / "node.log"
    store = await open_zookeeper(zk_hosts, zk_root, session_timeout=2.0)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        await init_cluster(store)
        async with actors.open_system("conductor", listen="127.0.0.1:0") as client:
            fake_ref = await client.spawn(FakeConductor, name=protocol.CONDUCTOR_ACTOR)
            fake = client._registry[fake_ref.name].actor
            await store.put(protocol.LEADER_PATH, {"name": "test", "url": fake_ref.url,
                                                   "epoch": 1})
            procs.append(start_node_process(name, zk_hosts + zk_root, state_dir,
                                            docker_labels, log))
            url = await wait_record(store, name, proc=procs[0], log=log)
            node = client.ref(url)
            job = {"name": "svc", "image": docker_test_image, "command": ["sleep", "300"],
                   "grace": 0, "restart": {"policy": "always", "backoff": "100ms"}}
            survivor, victim = assignment(name, job), assignment(name, job, index=1)
            await claim_epoch(store, 1)
            reply = await node.ask("assign", 1, 1, [survivor, victim])
            assert reply["accepted"]
            s1 = await wait_status(node, survivor["id"], lambda s: s["state"] == "running")
            s2 = await wait_status(node, victim["id"], lambda s: s["state"] == "running")
            started1 = inspect(s1["container"])["State"]["StartedAt"]
            started2 = inspect(s2["container"])["State"]["StartedAt"]

            os.kill(procs[0].pid, signal.SIGKILL)
            procs[0].wait(10)
            docker_cli("kill", s2["container"])  # dies while no node watches it

            procs.append(start_node_process(name, zk_hosts + zk_root, state_dir,
                                            docker_labels, log))
            url2 = await wait_record(store, name, not_url=url, proc=procs[1], log=log)
            node2 = client.ref(url2)
            a1 = await wait_status(node2, survivor["id"], lambda s: s["state"] == "running")
            assert a1["container"] == s1["container"]            # adopted: same container
            assert inspect(a1["container"])["State"]["StartedAt"] == started1  # not restarted
            a2 = await wait_status(node2, victim["id"],
                                   lambda s: s["state"] == "running" and s["restarts"] >= 1)
            assert inspect(a2["container"])["State"]["Running"]
            assert inspect(a2["container"])["State"]["StartedAt"] != started2
            ids = node_containers(name)
            assert sorted(ids) == sorted({a1["container"], a2["container"]})  # no duplicates
            # the restarted node reports to the conductor and to the store again
            await wait_store_status(store, name, victim["id"],
                                    lambda v: v["state"] == "running" and v["restarts"] >= 1)
            with trio.fail_after(20):
                while not any(e["id"] == victim["id"] and e["restarts"] >= 1
                              and e["state"] == "running" for e in fake.events):
                    await trio.sleep(0.1)
            with trio.fail_after(20):  # presence is back (after the old session expired)
                while "up" not in await store.children(paths.node(name)):
                    await trio.sleep(0.1)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        remove_containers(f"{LABEL_NODE}={name}")
        await store.aclose()


async def test_zookeeper_outage_keeps_tasks_running_and_catches_up(
        tmp_path: Path, docker_labels: dict[str, str], docker_test_image: str) -> None:
    server = await trio.to_thread.run_sync(start_zookeeper, tmp_path / "zk")
    name = unique_name("node")
    try:
        store = await open_zookeeper(server.hosts, "/helios", session_timeout=2.0)
        await init_cluster(store)
        await store.aclose()
        async with node_running(tmp_path / "state", name=name,
                                store_url=f"zk://{server.hosts}/helios", session_timeout=2.0,
                                container_labels=docker_labels) as node:
            job = {"name": "svc", "image": docker_test_image, "command": ["sleep", "300"],
                   "grace": 0, "restart": {"policy": "always", "backoff": "100ms"}}
            a = assignment(name, job)
            await node.assign([a])
            s = await node.wait_state(a["id"], "running")
            reader = await open_zookeeper(server.hosts, "/helios", session_timeout=2.0)
            await wait_store_status(reader, name, a["id"], lambda v: v["state"] == "running")
            await reader.aclose()

            await trio.to_thread.run_sync(server.stop)
            docker_cli("kill", s["container"])
            s2 = await node.wait_for(a["id"], lambda s: s["state"] == "running"
                                     and s["restarts"] == 1, what="restarted while ZK is down")
            assert s2["container"] == s["container"]
            await trio.sleep(3)  # longer than the session timeout: the session expires
            assert inspect(s["container"])["State"]["Running"]

            await trio.to_thread.run_sync(server.start)
            reader = await open_zookeeper(server.hosts, "/helios", session_timeout=2.0)
            try:
                await wait_store_status(reader, name, a["id"],
                                        lambda v: v["state"] == "running" and v["restarts"] == 1)
                with trio.fail_after(30):  # membership re-registered on the new session
                    while "up" not in await reader.children(paths.node(name)):
                        await trio.sleep(0.1)
            finally:
                await reader.aclose()
    finally:
        await trio.to_thread.run_sync(server.stop)
        remove_containers(f"{LABEL_NODE}={name}")
