"""ProcessRuntime: local process groups with on-disk records (no Docker involved).

Every test removes its tasks through the runtime, which kills the process group by its
recorded PID; the `proc_rt` fixture also removes leftovers, so a failing assertion never
leaves a process behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path

import pytest
import trio

from helios.node.health import HealthProbe, check_exec, check_tcp, run_check
from helios.node.runtime import (
    LABEL_JOB,
    LABEL_NODE,
    ContainerConflict,
    ContainerNotFound,
    ContainerNotRunning,
    ContainerSpec,
    ContainerStartFailed,
    ExecTimeout,
    InvalidSpec,
    PortAllocator,
    PortMapping,
    ProcessRuntime,
)
from tests.fixtures.common import unique_name


@pytest.fixture
async def proc_rt(tmp_path: Path) -> AsyncIterator[ProcessRuntime]:
    rt = ProcessRuntime("pnode", tmp_path / "state", ports=PortAllocator(23000, 23099))
    async with rt:
        try:
            yield rt
        finally:
            with trio.CancelScope(shield=True):
                for state in await rt.list():
                    await rt.remove(state.id)


#: A process listening where the runtime told it to (HELIOS_PORT_<NAME>).
LISTENER = (
    "import os, socket, time\n"
    "s = socket.socket()\n"
    "s.bind(('127.0.0.1', int(os.environ['HELIOS_PORT_SVC'])))\n"
    "s.listen()\n"
    "time.sleep(60)\n"
)


def spec(command: list[str], **kw) -> ContainerSpec:
    kw.setdefault("name", unique_name("proc"))
    kw.setdefault("job", "pjob")
    kw.setdefault("task", unique_name("ptask"))
    return ContainerSpec(image="ignored", command=command, **kw)


def _reap(pid: int | None) -> None:
    """Collect a zombie child left by an earlier runtime instance in this process."""
    if pid:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


async def test_run_exit_code_and_logs(proc_rt: ProcessRuntime):
    s = spec(["sh", "-c", "echo one; echo two >&2; printf partial; exit 4"])
    cid = await proc_rt.create(s)
    assert (await proc_rt.inspect(cid)).status == "created"
    await proc_rt.start(cid)
    assert await proc_rt.wait(cid) == 4
    state = await proc_rt.inspect(cid)
    assert state.status == "exited" and state.exit_code == 4 and not state.running
    assert state.started_at is not None and state.finished_at is not None
    assert state.labels[LABEL_NODE] == "pnode" and state.job == "pjob"
    assert [line async for line in proc_rt.logs(cid)] == ["one", "two", "partial"]
    assert [line async for line in proc_rt.logs(cid, tail=1)] == ["two", "partial"]
    await proc_rt.remove(cid)
    await proc_rt.remove(cid)  # idempotent
    with pytest.raises(ContainerNotFound):
        await proc_rt.inspect(cid)


async def test_spec_errors(proc_rt: ProcessRuntime):
    with pytest.raises(InvalidSpec):
        await proc_rt.create(spec([]))
    s = spec(["/no/such/program"])
    cid = await proc_rt.create(s)
    with pytest.raises(ContainerConflict):
        await proc_rt.create(s)
    await proc_rt.start(cid)  # the wrapper shell starts; the command fails inside it
    assert await proc_rt.wait(cid) == 127
    bad_shell = ProcessRuntime("pnode", proc_rt.state_dir, python="/no/such/python")
    with pytest.raises(ContainerStartFailed):
        await bad_shell.start(cid)


async def test_ports_env_and_health_checks(proc_rt: ProcessRuntime):
    s = spec([sys.executable, "-c", LISTENER], ports={"svc": PortMapping(9999)})
    cid = await proc_rt.create(s)
    try:
        await proc_rt.start(cid)
        state = await proc_rt.inspect(cid)
        port = state.ports["svc"]
        assert 23000 <= port <= 23099
        ok = await check_tcp("127.0.0.1", port, timeout=1)
        for _ in range(100):  # nc needs a moment to listen; bounded
            if ok.ok:
                break
            await trio.sleep(0.05)
            ok = await check_tcp("127.0.0.1", port, timeout=1)
        assert ok.ok, ok.reason
        check = HealthProbe(kind="tcp", port="svc")
        assert (await run_check(check, runtime=proc_rt, cid=cid, ports=state.ports)).ok
        env = await proc_rt.exec(cid, ["sh", "-c", "echo $HELIOS_PORT_SVC"], timeout=10)
        assert env.exit_code == 0 and env.output.strip() == str(port)
        assert (await check_exec(proc_rt, cid, ["true"], timeout=10)).ok
        failing = await check_exec(proc_rt, cid, ["sh", "-c", "echo nope; exit 2"], 10)
        assert not failing.ok and "exit 2 (nope)" in failing.reason
        with pytest.raises(ExecTimeout):
            await proc_rt.exec(cid, ["sleep", "30"], timeout=0.3)
    finally:
        await proc_rt.remove(cid)
    assert proc_rt.ports.holder(port) is None


async def test_stop_grace_then_kill(proc_rt: ProcessRuntime):
    polite = await proc_rt.create(spec(["sleep", "60"]))
    stubborn = await proc_rt.create(spec(
        ["sh", "-c", "trap '' TERM; echo ready; while true; do sleep 0.1; done"]))
    await proc_rt.start(polite)
    await proc_rt.start(stubborn)
    async with aclosing(proc_rt.logs(stubborn, follow=True)) as lines:  # trap is set
        async for line in lines:
            if line == "ready":
                break
    await proc_rt.stop(polite, grace=30)  # default TERM ends sleep: 128 + 15
    assert (await proc_rt.inspect(polite)).exit_code == 143
    await proc_rt.stop(stubborn, grace=0.5)
    state = await proc_rt.inspect(stubborn)
    assert state.status == "exited" and state.exit_code == 137
    await proc_rt.stop(stubborn, grace=0.5)  # no-op on a stopped task
    with pytest.raises(ContainerNotRunning):
        await proc_rt.exec(stubborn, ["true"], 1)


async def test_follow_logs(proc_rt: ProcessRuntime):
    cid = await proc_rt.create(spec(
        ["sh", "-c", "for i in 1 2 3; do echo tick$i; sleep 0.1; done"]))
    await proc_rt.start(cid)
    got = []
    with trio.fail_after(30):
        async with aclosing(proc_rt.logs(cid, follow=True)) as lines:
            async for line in lines:
                got.append(line)
    assert got == ["tick1", "tick2", "tick3"]


async def test_adoption_by_a_new_runtime_instance(tmp_path: Path):
    state_dir = tmp_path / "state"
    first = ProcessRuntime("pnode", state_dir, ports=PortAllocator(23100, 23199))
    s = spec(["sh", "-c", "echo up; exec sleep 60"], ports={"svc": PortMapping(1)})
    async with first:
        cid = await first.create(s)
        await first.start(cid)
        before = await first.inspect(cid)
    assert before.running and before.pid
    pid = before.pid
    try:
        # The node restarts: a new instance, new allocator, same state directory.
        second = ProcessRuntime("pnode", state_dir, ports=PortAllocator(23100, 23199))
        async with second:
            found = await second.list({LABEL_JOB: "pjob"})
            assert [f.id for f in found] == [cid] and found[0].running
            adopted = await second.adopt(cid)
            assert adopted.pid == pid and adopted.ports == before.ports
            assert second.ports.holder(before.ports["svc"]) == cid
            assert await second.list({LABEL_JOB: "other"}) == []
            assert await ProcessRuntime("othernode", state_dir).list() == []
            await second.stop(cid, grace=0.5)
            gone = await second.inspect(cid)
            assert not gone.running and gone.exit_code == 143  # TERM ended sleep in time
            await second.remove(cid)
            assert not (state_dir / cid).exists()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, 9)
        _reap(pid)


async def test_pid_reuse_is_not_mistaken_for_the_task(proc_rt: ProcessRuntime):
    cid = await proc_rt.create(spec(["sleep", "60"]))
    await proc_rt.start(cid)
    record_path = proc_rt.state_dir / cid / "record.json"
    record = json.loads(record_path.read_text())
    # Same pid, different kernel start time: as if the pid had been recycled.
    record["start_ticks"] = record["start_ticks"] - 1
    record_path.write_text(json.dumps(record))
    fresh = ProcessRuntime("pnode", proc_rt.state_dir)
    state = await fresh.inspect(cid)
    assert not state.running and state.status == "exited"
    # The original runtime still owns the child: it stops it by PID.
    record["start_ticks"] += 1
    record_path.write_text(json.dumps(record))
    await proc_rt.remove(cid)
