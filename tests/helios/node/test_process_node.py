"""The node with the process runtime: services run, restart policies apply, stop works."""

from __future__ import annotations

from pathlib import Path

import trio

from tests.helios.node.conftest import assignment, node_running


async def test_process_service_runs_and_stops(tmp_path: Path) -> None:
    async with node_running(tmp_path / "state", runtime="process") as node:
        job = {"name": "sleeper", "command": ["sleep", "30"], "grace": "1s"}
        a = assignment(node.name, job)
        reply = await node.assign([a])
        assert reply["accepted"] is True
        s = await node.wait_state(a["id"], "running")
        assert s["container"] and s["healthy"] is None
        # the conductor received the states in order
        await node.wait_event(a["id"], "running")
        assert node.events(a["id"])[:2] == ["starting", "running"]
        await node.assign([])
        await node.wait_event(a["id"], "stopped")
        assert node.events(a["id"])[-2:] == ["stopping", "stopped"]
        assert await node.status(a["id"]) is None  # forgotten once stopped and unassigned
        with trio.fail_after(10):
            while await node.core.runtime.list():
                await trio.sleep(0.05)


async def test_process_http_health_and_restart_on_kill(tmp_path: Path) -> None:
    import os
    import signal
    import sys

    async with node_running(tmp_path / "state", runtime="process") as node:
        job = {"name": "pyweb",
               "command": ["sh", "-c", f"exec {sys.executable} -m http.server "
                                       "$HELIOS_PORT_HTTP --bind 127.0.0.1"],
               "ports": {"http": {"container": 8000}},
               "health": {"http": {"port": "http"}, "interval": "200ms"},
               "restart": {"policy": "always", "backoff": "50ms"}, "grace": "1s"}
        a = assignment(node.name, job)
        await node.assign([a])
        s = await node.wait_for(a["id"], lambda s: s["state"] == "running" and s["healthy"],
                                what="running and healthy")
        assert 21000 <= s["ports"]["http"] <= 21999
        state = await node.core.runtime.inspect(s["container"])
        os.killpg(state.pid, signal.SIGKILL)  # the task dies behind the node's back
        s = await node.wait_for(a["id"], lambda s: s["state"] == "running" and s["healthy"]
                                and s["restarts"] == 1, what="restarted and healthy again")
        assert "pending" in node.events(a["id"])


async def test_restart_without_zookeeper_runs_local_assignments(tmp_path: Path) -> None:
    from tests.fixtures.common import free_port

    state = tmp_path / "state"
    dead_zk = f"zk://127.0.0.1:{free_port()}/helios"  # nothing listens: ZooKeeper is down
    job = {"name": "local", "command": ["sleep", "30"], "grace": 0}
    async with node_running(state, runtime="process", with_conductor=False) as node:
        a = assignment(node.name, job)
        await node.assign([a])
        first = await node.wait_state(a["id"], "running")
        name = node.name
    # the daemon comes back with neither conductor nor ZooKeeper reachable
    async with node_running(state, name=name, runtime="process", with_conductor=False,
                            store_url=dead_zk, session_timeout=1.0) as node:
        s = await node.wait_state(a["id"], "running")
        assert s["container"] == first["container"] and s["restarts"] == 0
        await node.assign([])
        with trio.fail_after(10):
            while await node.core.runtime.list():
                await trio.sleep(0.05)
