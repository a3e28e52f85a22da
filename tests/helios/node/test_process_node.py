"""The node with the process runtime: services run, restart policies apply, stop works."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

import actors
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
    async with node_running(state, runtime="process", with_conductor=False,
                            cleanup=False) as node:
        a = assignment(node.name, job)
        await node.assign([a])
        first = await node.wait_state(a["id"], "running")
        name = node.name
    # the daemon comes back with neither conductor nor ZooKeeper reachable
    async with node_running(state, name=name, runtime="process", with_conductor=False,
                            store_url=dead_zk, session_timeout=1.0) as node:
        s = await node.wait_state(a["id"], "running")
        assert s["container"] == first["container"] and s["restarts"] == 0
        # without its store the node cannot tell a leader's epoch from a forged one
        with pytest.raises(actors.RemoteError) as refused:
            await node.ref.ask("assign", 99, 1, [])
        assert refused.value.type_name == "UnverifiedEpoch"
        assert (await node.wait_state(a["id"], "running"))["restarts"] == 0
    async with node_running(state, name=name, runtime="process",
                            with_conductor=False) as node:  # no store: trusts the order
        await node.assign([])
        with trio.fail_after(10):
            while await node.core.runtime.list():
                await trio.sleep(0.05)


async def test_events_buffered_while_conductor_away_then_replayed_in_order(
        tmp_path: Path) -> None:
    import actors
    from helios import protocol
    from tests.fixtures.common import free_port
    from tests.helios.node.conftest import FakeConductor

    port = free_port()
    job = {"name": "ev", "command": ["sleep", "30"], "grace": 0}
    async with node_running(tmp_path / "state", runtime="process", with_conductor=False,
                            conductor=f"127.0.0.1:{port}") as node:
        a = assignment(node.name, job)
        async with actors.open_system("conductor-1", listen=f"127.0.0.1:{port}") as first:
            ref = await first.spawn(FakeConductor, name=protocol.CONDUCTOR_ACTOR)
            fake1 = first._registry[ref.name].actor
            await node.assign([a])
            with trio.fail_after(10):
                while not any(e["state"] == "running" for e in fake1.events):
                    await trio.sleep(0.05)
        # the conductor is gone: changes go on, their events wait in the buffer
        b = assignment(node.name, job, index=1)
        await node.assign([a, b])
        await node.wait_state(b["id"], "running")
        await node.assign([b])
        with trio.fail_after(10):
            while a["id"] in node.core.statuses:  # stopped and forgotten meanwhile
                await trio.sleep(0.05)
        assert node.core.reporter.backlog[1] > 0
        async with actors.open_system("conductor-2", listen=f"127.0.0.1:{port}") as second:
            ref2 = await second.spawn(FakeConductor, name=protocol.CONDUCTOR_ACTOR)
            fake2 = second._registry[ref2.name].actor
            with trio.fail_after(20):
                while node.core.reporter.backlog[1] > 0:
                    await trio.sleep(0.05)
            got = [(e["id"], e["state"]) for e in fake2.events]
        b_states = [s for t, s in got if t == b["id"]]
        a_states = [s for t, s in got if t == a["id"]]
        assert b_states[0] == "starting" and b_states[-1] == "running"
        assert a_states[-2:] == ["stopping", "stopped"]
        # replayed oldest first: b started before a was stopped
        assert got.index((b["id"], "starting")) < got.index((a["id"], "stopping"))



async def test_dispatch_payload_file_for_process_tasks(tmp_path: Path) -> None:
    async with node_running(tmp_path / "state", runtime="process") as node:
        job = {"name": "run-1", "kind": "batch",
               "command": ["sh", "-c", 'cat "$HELIOS_PAYLOAD_FILE"; echo; echo "$HELIOS_PAYLOAD"'],
               "env": {"HELIOS_PAYLOAD": '{"n": 1}'}}
        a = assignment(node.name, job)
        await node.assign([a])
        s = await node.wait_state(a["id"], "exited")
        assert s["exit_code"] == 0
        out = await node.ask("logs", a["id"])
        assert out["lines"] == ['{"n": 1}', '{"n": 1}']
        payload = tmp_path / "state" / "payloads" / a["id"] / "payload"
        assert payload.stat().st_mode & 0o777 == 0o600
        await node.assign([])
        with trio.fail_after(10):
            while payload.parent.exists() or await node.status(a["id"]) is not None:
                await trio.sleep(0.05)  # removed with the task, which is forgotten
        # a finished run's exit is its last word: no stopping/stopped after it
        assert node.events(a["id"])[-1] == "exited"


async def test_following_logs_resumes_at_a_byte_offset(tmp_path: Path) -> None:
    """Cursor reads of a running task: complete lines only while it runs, the partial
    last line once it has ended, nothing read twice."""
    async with node_running(tmp_path / "state", runtime="process") as node:
        script = "echo one; echo two; printf par; sleep 1; echo tial; printf end"
        job = {"name": "talker", "kind": "batch", "command": ["sh", "-c", script]}
        a = assignment(node.name, job)
        await node.assign([a])
        rt = node.core.runtime
        s = await node.wait_state(a["id"], "running")
        got: list[str] = []
        cursor = None
        for _ in range(200):  # bounded
            lines, cursor = await rt.read_logs(s["container"], cursor, limit=1)
            got += lines
            if got[-1:] == ["end"]:
                break
            if not lines:
                await trio.sleep(0.05)
        assert got == ["one", "two", "partial", "end"]
        assert (await rt.read_logs(s["container"], cursor))[0] == []
        lines, _ = await rt.read_logs(s["container"], None, tail=2)
        assert lines == ["partial", "end"]


async def test_only_permanent_launch_failures_fail_a_task_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A launch the engine refuses for a reason a retry may fix goes through the restart
    policy (the task runs after one restart); one in `PERMANENT_FAILURES` (an invalid
    spec) fails the task at once, whatever its policy. The engine's refusals are injected
    into the real process runtime's `create`."""
    from helios.node.runtime import InvalidSpec, RuntimeFailure

    async with node_running(tmp_path / "state", runtime="process") as node:
        rt = node.core.runtime
        real_create = rt.create
        hiccups = [RuntimeFailure("the engine hiccuped")]

        async def create(spec):  # type: ignore[no-untyped-def]
            if spec.job == "flaky" and hiccups:
                raise hiccups.pop()
            if spec.job == "broken":
                raise InvalidSpec("no engine could run this")
            return await real_create(spec)

        monkeypatch.setattr(rt, "create", create)
        restart = {"policy": "always", "backoff": "50ms"}
        flaky = assignment(node.name, {"name": "flaky", "command": ["sleep", "30"],
                                       "grace": "1s", "restart": restart})
        broken = assignment(node.name, {"name": "broken", "command": ["sleep", "30"],
                                        "grace": "1s", "restart": restart})
        await node.assign([flaky, broken])
        s = await node.wait_state(flaky["id"], "running", "failed")
        assert s["state"] == "running" and s["restarts"] == 1
        assert "pending" in node.events(flaky["id"])
        b = await node.wait_state(broken["id"], "running", "failed")
        assert b["state"] == "failed" and b["reason"] == "no engine could run this"
        assert b["restarts"] == 0
