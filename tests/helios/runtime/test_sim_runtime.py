"""SimRuntime: simulated tasks with no container and no process.

The health checks used here are the node's real ones (`helios.node.health`): a sim task
with a port must pass an http and a tcp check over a real loopback socket, and stop
answering once stopped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from helios.node.health import HealthProbe, run_check
from helios.node.runtime import (
    LABEL_JOB,
    ContainerConflict,
    ContainerNotFound,
    ContainerNotRunning,
    ContainerSpec,
    PortAllocator,
    PortMapping,
    SimRuntime,
)
from helios.node.runtime.sim import STOPPED_CODE, sim_behaviour
from tests.fixtures.common import unique_name


@pytest.fixture
async def sim_rt() -> AsyncIterator[SimRuntime]:
    rt = SimRuntime(unique_name("snode"), ports=PortAllocator(24000, 24099))
    async with rt:
        try:
            yield rt
        finally:
            for state in await rt.list():
                await rt.remove(state.id)


def spec(command: list[str], **kw) -> ContainerSpec:
    kw.setdefault("name", unique_name("sim"))
    kw.setdefault("job", "sjob")
    kw.setdefault("task", unique_name("stask"))
    return ContainerSpec(image="", command=command, **kw)


def test_behaviour_follows_the_command() -> None:
    assert sim_behaviour(["sleep", "1.5"]) == (1.5, 0)
    assert sim_behaviour(["/bin/true"]) == (0.0, 0)
    assert sim_behaviour(["false"]) == (0.0, 1)
    assert sim_behaviour(["exit", "3"]) == (0.0, 3)
    assert sim_behaviour(["httpd", "-f"]) == (None, 0)
    assert sim_behaviour([]) == (None, 0)
    assert sim_behaviour(["sleep", "soon"]) == (None, 0)


async def test_a_server_runs_until_stopped(sim_rt: SimRuntime) -> None:
    cid = await sim_rt.create(spec(["server"]))
    assert (await sim_rt.inspect(cid)).status == "created"
    await sim_rt.start(cid)
    st = await sim_rt.inspect(cid)
    assert st.running and st.status == "running" and st.labels[LABEL_JOB] == "sjob"
    assert [s.id for s in await sim_rt.list({LABEL_JOB: "sjob"})] == [cid]
    assert await sim_rt.list({LABEL_JOB: "other"}) == []
    async with trio.open_nursery() as nursery:
        codes: list[int] = []

        async def waiter() -> None:
            codes.append(await sim_rt.wait(cid))

        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()  # the waiter is parked in wait()
        assert codes == []  # still running
        await sim_rt.stop(cid, grace=1.0)
    assert codes == [STOPPED_CODE]
    st = await sim_rt.inspect(cid)
    assert not st.running and st.exit_code == STOPPED_CODE and st.finished_at is not None
    await sim_rt.remove(cid)
    await sim_rt.remove(cid)  # idempotent
    with pytest.raises(ContainerNotFound):
        await sim_rt.inspect(cid)


async def test_batch_work_exits_by_itself(sim_rt: SimRuntime) -> None:
    cid = await sim_rt.create(spec(["sleep", "0.2"]))
    await sim_rt.start(cid)
    assert await sim_rt.wait(cid) == 0
    st = await sim_rt.inspect(cid)
    assert st.status == "exited" and st.exit_code == 0
    bad = await sim_rt.create(spec(["exit", "7"]))
    await sim_rt.start(bad)
    assert await sim_rt.wait(bad) == 7
    lines = [line async for line in sim_rt.logs(bad)]
    assert lines[-1] == "sim: exited with code 7"
    await sim_rt.start(bad)  # a restart runs the program again
    assert await sim_rt.wait(bad) == 7


async def test_names_are_unique(sim_rt: SimRuntime) -> None:
    s = spec(["server"])
    await sim_rt.create(s)
    with pytest.raises(ContainerConflict):
        await sim_rt.create(s)


async def test_ports_answer_the_real_health_checks_until_stopped(sim_rt: SimRuntime) -> None:
    cid = await sim_rt.create(spec(["server"], ports={"http": PortMapping(container=80)}))
    await sim_rt.start(cid)
    ports = (await sim_rt.inspect(cid)).ports
    assert set(ports) == {"http"} and 24000 <= ports["http"] <= 24099
    http = HealthProbe("http", port="http", path="/health")
    tcp = HealthProbe("tcp", port="http")
    ok, why = await run_check(http, runtime=sim_rt, cid=cid, ports=ports)
    assert ok, why
    assert (await run_check(tcp, runtime=sim_rt, cid=cid, ports=ports)).ok
    assert (await run_check(HealthProbe("exec", command=("true",)), runtime=sim_rt,
                            cid=cid, ports=ports)).ok
    assert not (await run_check(HealthProbe("exec", command=("false",)), runtime=sim_rt,
                                cid=cid, ports=ports)).ok
    assert sim_rt.requests >= 1
    await sim_rt.stop(cid, grace=1.0)
    with trio.fail_after(10):  # the listener closes in its own task
        while (result := await run_check(http, runtime=sim_rt, cid=cid, ports=ports)).ok:
            await trio.sleep(0.01)
    ok, why = result
    assert not ok and "refused" in why
    with pytest.raises(ContainerNotRunning):
        await sim_rt.exec(cid, ["true"], 1.0)
    await sim_rt.remove(cid)
    assert sim_rt.ports.held_by(cid) == []


async def test_adoption_after_a_daemon_restart_keeps_tasks(sim_rt: SimRuntime) -> None:
    cid = await sim_rt.create(spec(["server"], ports={"http": PortMapping(container=80)}))
    await sim_rt.start(cid)
    port = (await sim_rt.inspect(cid)).ports["http"]
    sim_rt.ports.release(cid)  # as a new daemon's allocator would start
    st = await sim_rt.adopt(cid)
    assert st.running and sim_rt.ports.held_by(cid) == [port]
