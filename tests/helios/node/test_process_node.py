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
