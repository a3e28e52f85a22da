"""DockerRuntime against the real Docker daemon: lifecycle, ports, limits, labels, stop.

Every container carries the test's cleanup label (see conftest), so teardown removes
it even when an assertion fails; the tests also remove what they make, as a node would.
"""

from __future__ import annotations

import socket
from contextlib import aclosing

import msgpack
import pytest
import trio

from helios.node.health import HealthProbe, check_exec, check_http, check_tcp, run_check
from helios.node.runtime import (
    LABEL_JOB,
    LABEL_MANAGED,
    LABEL_NODE,
    LABEL_PORTS,
    LABEL_TASK,
    LABEL_VERSION,
    ContainerConflict,
    ContainerNotFound,
    ContainerNotRunning,
    ContainerStartFailed,
    DockerRuntime,
    ExecTimeout,
    InvalidSpec,
    LogDriver,
    PortAllocator,
    PortConflict,
    PortMapping,
    RuntimeUnavailable,
)
from tests.fixtures.common import free_port, unique_name

pytestmark = pytest.mark.docker

HTTPD = ["httpd", "-f", "-p", "8080", "-h", "/www"]


async def test_lifecycle_create_start_inspect_stop_remove(docker_rt: DockerRuntime, make_spec):
    spec = make_spec(["sh", "-c", "echo started; exec sleep 60"], version=3)
    cid = await docker_rt.create(spec)
    try:
        created = await docker_rt.inspect(cid)
        assert created.status == "created" and not created.running
        assert created.exit_code is None and created.started_at is None
        assert created.name == spec.name and created.image == spec.image

        await docker_rt.start(cid)
        running = await docker_rt.inspect(cid)
        assert running.status == "running" and running.running and running.pid
        assert running.started_at is not None and running.finished_at is None
        assert running.job == "testjob" and running.task == spec.task

        await docker_rt.stop(cid, grace=1)  # sleep as PID 1 ignores TERM: killed
        stopped = await docker_rt.inspect(cid)
        assert stopped.status == "exited" and not stopped.running
        assert stopped.exit_code == 137
        assert stopped.finished_at is not None and stopped.finished_at >= stopped.started_at
        await docker_rt.stop(cid, grace=1)  # stopping a stopped container is a no-op
        assert await docker_rt.wait(cid) == 137
        # The record crosses actor boundaries as msgpack.
        assert msgpack.unpackb(msgpack.packb(stopped.to_dict()))["exit_code"] == 137
    finally:
        await docker_rt.remove(cid)
    await docker_rt.remove(cid)  # idempotent
    with pytest.raises(ContainerNotFound) as ei:
        await docker_rt.inspect(cid)
    assert cid in ei.value.reason


async def test_exit_code_and_wait(docker_rt: DockerRuntime, make_spec):
    cid = await docker_rt.create(make_spec(["sh", "-c", "exit 7"]))
    try:
        await docker_rt.start(cid)
        assert await docker_rt.wait(cid) == 7
        state = await docker_rt.inspect(cid)
        assert state.status == "exited" and state.exit_code == 7 and not state.oom_killed
    finally:
        await docker_rt.remove(cid)


async def test_name_conflict_and_bad_command(docker_rt: DockerRuntime, make_spec):
    spec = make_spec(["sleep", "60"])
    cid = await docker_rt.create(spec)
    try:
        with pytest.raises(ContainerConflict, match=spec.name):
            await docker_rt.create(spec)
        bad = await docker_rt.create(make_spec(["/no/such/program"]))
        try:
            with pytest.raises(ContainerStartFailed) as ei:
                await docker_rt.start(bad)
            assert "no such file" in ei.value.reason.lower()
        finally:
            await docker_rt.remove(bad)
    finally:
        await docker_rt.remove(cid)
    with pytest.raises(InvalidSpec):
        await docker_rt.create(make_spec(["true"], memory=1024))


async def test_port_published_on_loopback_and_http_tcp_checks(docker_rt: DockerRuntime,
                                                              make_spec):
    spec = make_spec(HTTPD, ports={"http": PortMapping(8080)})
    cid = await docker_rt.create(spec)
    try:
        await docker_rt.start(cid)
        state = await docker_rt.inspect(cid)
        port = state.ports["http"]
        assert 21000 <= port <= 21999
        assert docker_rt.ports.holder(port) == spec.name
        raw = await docker_rt.inspect_raw(cid)
        bindings = raw["NetworkSettings"]["Ports"]["8080/tcp"]
        assert bindings == [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
        env = raw["Config"]["Env"]
        assert "HELIOS_PORT_HTTP=8080" in env and f"HELIOS_HOST_PORT_HTTP={port}" in env

        # httpd may need a moment after start: poll the check (bounded), no timing asserted.
        ok = await _eventually(lambda: check_http("127.0.0.1", port, "/index.html"))
        assert ok.ok, ok.reason
        assert "status 200" in ok.reason
        missing = await check_http("127.0.0.1", port, "/missing.html")
        assert not missing.ok and "404" in missing.reason
        assert (await check_tcp("127.0.0.1", port)).ok
        check = HealthProbe(kind="http", port="http", path="/", timeout=2)
        assert (await run_check(check, runtime=docker_rt, cid=cid, ports=state.ports)).ok
        tcp = HealthProbe(kind="tcp", port="http", timeout=2)
        assert (await run_check(tcp, runtime=docker_rt, cid=cid, ports=state.ports)).ok
        nope = await run_check(tcp, runtime=docker_rt, cid=cid, ports={})
        assert not nope.ok and "no port named 'http'" in nope.reason

        await docker_rt.stop(cid, grace=2)
        assert (await docker_rt.inspect(cid)).ports == {}
        down = await check_tcp("127.0.0.1", port)
        assert not down.ok and "connection refused" in down.reason
    finally:
        await docker_rt.remove(cid)
    assert docker_rt.ports.holder(port) is None  # remove frees the port


async def test_exec_and_exec_health_check(docker_rt: DockerRuntime, make_spec):
    cid = await docker_rt.create(make_spec(["sleep", "60"]))
    try:
        await docker_rt.start(cid)
        result = await docker_rt.exec(cid, ["sh", "-c", "echo out; echo err >&2; exit 3"], 10)
        assert result.exit_code == 3
        assert "out" in result.output and "err" in result.output
        good = await check_exec(docker_rt, cid, ["true"], timeout=10)
        assert good.ok, good.reason
        bad = await check_exec(docker_rt, cid, ["sh", "-c", "echo not ready; exit 1"], 10)
        assert not bad.ok and "exit 1" in bad.reason and "not ready" in bad.reason
        with pytest.raises(ExecTimeout):
            await docker_rt.exec(cid, ["sleep", "30"], timeout=0.5)
        slow = await check_exec(docker_rt, cid, ["sleep", "30"], timeout=0.5)
        assert not slow.ok and "did not finish" in slow.reason
        # The bridge still works after a cancelled call.
        assert (await docker_rt.exec(cid, ["echo", "again"], 10)).output.strip() == "again"
        await docker_rt.stop(cid, grace=0)
        with pytest.raises(ContainerNotRunning):
            await docker_rt.exec(cid, ["true"], 10)
        stopped = await check_exec(docker_rt, cid, ["true"], 10)
        assert not stopped.ok and "not running" in stopped.reason
    finally:
        await docker_rt.remove(cid)


async def test_resource_limits_labels_and_log_config(docker_rt: DockerRuntime, make_spec):
    spec = make_spec(["sleep", "60"], cpus=0.25, memory=64 * 1024 * 1024, version=5,
                     ports={"web": PortMapping(80)}, labels={"team": "core"},
                     log=LogDriver("json-file", {"max-size": "1m", "max-file": "2"}))
    cid = await docker_rt.create(spec)
    try:
        raw = await docker_rt.inspect_raw(cid)
        host = raw["HostConfig"]
        assert host["NanoCpus"] == 250_000_000
        assert host["Memory"] == 64 * 1024 * 1024
        assert host["RestartPolicy"]["Name"] == "no"
        assert host["LogConfig"] == {"Type": "json-file",
                                     "Config": {"max-size": "1m", "max-file": "2"}}
        labels = raw["Config"]["Labels"]
        assert labels[LABEL_NODE] == docker_rt.node
        assert labels[LABEL_JOB] == "testjob"
        assert labels[LABEL_TASK] == spec.task
        assert labels[LABEL_VERSION] == "5"
        assert labels[LABEL_MANAGED] == "true"
        assert labels[LABEL_PORTS] == '{"web": 80}'
        assert labels["team"] == "core"
    finally:
        await docker_rt.remove(cid)


async def test_list_by_labels_and_adopt_after_restart(docker_rt: DockerRuntime, make_spec):
    a = make_spec(HTTPD, job="web", ports={"http": PortMapping(8080)})
    b = make_spec(["sleep", "60"], job="worker")
    ida, idb = await docker_rt.create(a), await docker_rt.create(b)
    try:
        await docker_rt.start(ida)
        mine = {s.name for s in await docker_rt.list()}
        assert mine == {a.name, b.name}
        only_web = await docker_rt.list({LABEL_JOB: "web"})
        assert [s.id for s in only_web] == [ida]
        assert only_web[0].running and "http" in only_web[0].ports
        port = only_web[0].ports["http"]

        # A restarted node: a fresh runtime (and allocator) on the same node name.
        async with DockerRuntime(docker_rt.node, ports=PortAllocator(21000, 21999)) as again:
            found = {s.id: s for s in await again.list()}
            assert set(found) == {ida, idb}
            adopted = await again.adopt(ida)
            assert adopted.ports == {"http": port}
            assert again.ports.holder(port) == a.name
            with pytest.raises(PortConflict):
                again.ports.allocate("someone-else", {"x": port})
            await again.remove(ida)
            assert again.ports.holder(port) is None
        # Another node's runtime sees none of them.
        async with DockerRuntime(unique_name("other-node")) as other:
            assert await other.list() == []
    finally:
        await docker_rt.remove(ida)
        await docker_rt.remove(idb)


async def test_stop_grace_sigterm_then_kill(docker_rt: DockerRuntime, make_spec):
    # Catches TERM and exits cleanly: stop returns with exit code 0, well before the grace.
    polite = await docker_rt.create(make_spec(
        ["sh", "-c", "trap 'echo bye; exit 0' TERM; echo ready; "
                     "while true; do sleep 0.1; done"]))
    # Ignores TERM: killed once the grace has passed.
    stubborn = await docker_rt.create(make_spec(
        ["sh", "-c", "trap '' TERM; echo ready; while true; do sleep 0.1; done"]))
    try:
        await docker_rt.start(polite)
        await docker_rt.start(stubborn)
        for cid in (polite, stubborn):  # stop only once the traps are in place
            async with aclosing(docker_rt.logs(cid, follow=True)) as lines:
                async for line in lines:
                    if line == "ready":
                        break
        await docker_rt.stop(polite, grace=30)
        assert (await docker_rt.inspect(polite)).exit_code == 0
        assert "bye" in [line async for line in docker_rt.logs(polite)]
        await docker_rt.stop(stubborn, grace=1)
        state = await docker_rt.inspect(stubborn)
        assert state.status == "exited" and state.exit_code == 137
    finally:
        await docker_rt.remove(polite)
        await docker_rt.remove(stubborn)


async def test_fixed_host_port_honoured_and_conflicts_refused(docker_rt: DockerRuntime,
                                                             make_spec):
    fixed = free_port()
    first = make_spec(HTTPD, ports={"http": PortMapping(8080, host=fixed)})
    cid = await docker_rt.create(first)
    try:
        await docker_rt.start(cid)
        assert (await docker_rt.inspect(cid)).ports == {"http": fixed}
        with pytest.raises(PortConflict) as ei:
            await docker_rt.create(make_spec(HTTPD, ports={"http": PortMapping(8080, fixed)}))
        assert str(fixed) in ei.value.reason and first.name in ei.value.reason
    finally:
        await docker_rt.remove(cid)

    # A port held by something outside Helios is refused before Docker is asked.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        with pytest.raises(PortConflict) as ei:
            await docker_rt.create(make_spec(HTTPD, ports={"http": PortMapping(8080, busy)}))
        assert "another process" in ei.value.reason
    assert docker_rt.ports.held_by(first.name) == []


async def test_wait_is_cancellable_through_the_bridge(docker_rt: DockerRuntime, make_spec):
    cid = await docker_rt.create(make_spec(["sleep", "60"]))
    try:
        await docker_rt.start(cid)
        with trio.move_on_after(0.3) as scope:
            await docker_rt.wait(cid)
        assert scope.cancelled_caught
        assert (await docker_rt.inspect(cid)).running  # bridge healthy after cancel
    finally:
        await docker_rt.remove(cid)


async def test_unreachable_daemon_is_runtime_unavailable(tmp_path):
    async with DockerRuntime("n", url=f"unix://{tmp_path}/no-docker.sock") as rt:
        with pytest.raises(RuntimeUnavailable) as ei:
            await rt.ping()
        assert "unreachable" in ei.value.reason
    rt_closed = DockerRuntime("n")
    with pytest.raises(RuntimeUnavailable):
        await rt_closed.inspect("x")


async def _eventually(check, attempts: int = 100, interval: float = 0.1):
    """Run `check()` until ok (bounded attempts); return the last result."""
    result = await check()
    for _ in range(attempts):
        if result.ok:
            break
        await trio.sleep(interval)
        result = await check()
    return result


async def test_memory_limit_is_enforced_and_oom_reported(docker_rt: DockerRuntime, make_spec):
    # tail -c keeps the last 90 MiB in memory: far past the 16 MiB limit.
    cid = await docker_rt.create(make_spec(
        ["sh", "-c", "head -c 100m /dev/zero | tail -c 90m > /dev/null"],
        memory=16 * 1024 * 1024))
    try:
        await docker_rt.start(cid)
        assert await docker_rt.wait(cid) == 137
        state = await docker_rt.inspect(cid)
        assert state.oom_killed and state.exit_code == 137
    finally:
        await docker_rt.remove(cid)


async def test_many_waiting_tasks_do_not_starve_other_calls(docker_rt: DockerRuntime,
                                                            make_spec):
    """Each task of a node holds one long-poll `wait`. With 150 of them open (more than
    aiohttp's default pool of 100), a create, an inspect and a stop still go through."""
    first = await docker_rt.create(make_spec(["sleep", "60"]))
    second = await docker_rt.create(make_spec(["sleep", "60"]))
    try:
        await docker_rt.start(first)
        async with trio.open_nursery() as nursery:
            for _ in range(150):
                nursery.start_soon(docker_rt.wait, first)
            # the waits are open: they run in aiodocker's HTTP pool, which tells nothing
            # about a request being on the wire, so this gives them (real) time
            await trio.sleep(0.5)
            with trio.fail_after(30):  # starved, this would hang until the waits end
                await docker_rt.start(second)
                assert (await docker_rt.inspect(second)).running
                await docker_rt.stop(second, grace=0)
            nursery.cancel_scope.cancel()
    finally:
        for cid in (first, second):
            await docker_rt.remove(cid)  # forced
