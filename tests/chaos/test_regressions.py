"""Regression tests of bugs the chaos soak found (issue 18), each focused on one bug.

**A container the engine refused to start was started again, for ever.** With restarts
of the Docker daemon among the soak's faults, a cron run's container was created just
as the daemon went down; the daemon that came back refused every start of it (`task
...: already exists`, containerd's leftover of the interrupted start). The node's
restart policy retried starting *that same container* with a growing backoff, so the
run stayed `pending` until its restarts ran out. The fix (helios/node/job.py
`_after_exit`): after the engine refused a start, the restart makes a new container.
The test injects exactly that refusal into a real node on the real Docker daemon.

**A returning node's stale report of a task the leader had forgotten.** In the soak, a
node cut off from ZooKeeper and the conductors lost its task (replaced elsewhere); when
the partition healed it stopped its copy and reported `stopped`, from its buffered
events and from its `statuses()` answer (the leader re-reads every node's reports when
the node comes back and every 15 s). The leader took each such report as a new status,
found no assignment owning it and planned `forget <task> on <node>: orphan status
(stopped)`: the same task forgotten again and again (14 times in one run), a write to
ZooKeeper and a history event each time. The fix (the conductor's `_merge_reports`, in
helios/conductor/conductor.py): a node's report is taken only for a task assigned to that
node or whose last known status came from it; anything else is ignored (and logged).
Here the conductor runs against fake nodes (tests/helios/conductor/fakenode.py); the
returning node's reports of its stopped copy are sent as `task_events` (the path both
replayed events and `statuses()` answers take); without the fix the forgotten status
comes back and is forgotten again each time.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import trio

import actors
from helios.cli import Client, CLIError
from helios.coordination import paths
from helios.coordination.zookeeper import open_zookeeper
from helios.node.runtime import LABEL_TASK
from helios.node.runtime.base import ContainerStartFailed, RuntimeFailure
from helios.spec import validate
from tests.chaos.cluster import SoakCluster
from tests.chaos.soak import service_spec
from tests.fixtures.common import service_missing
from tests.fixtures.docker import remove_containers
from tests.fixtures.zookeeper import zookeeper_available
from tests.helios.conductor.conftest import mini_cluster
from tests.helios.node.conftest import assignment, node_running

WEB = {"name": "web", "kind": "service", "image": "local/busybox:1",
       "command": ["httpd", "-f"], "count": 1, "resources": {"cpus": 0.5, "memory": "64M"},
       "update": {"min_healthy_time": "0s"}}


async def test_a_returning_nodes_stale_stopped_report_is_not_taken_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="helios.conductor")
    async with mini_cluster(tmp_path) as cluster:
        c = await cluster.conductor("c1", grace=0.3)
        await cluster.node("n1")
        await cluster.ask(c, "job_run", WEB)

        async def running_on(exclude: str | None = None) -> Any:
            st = await cluster.ask(c, "job_status", "web")
            live = [t for t in st["tasks"] if t["state"] == "running"
                    and t["node"] != exclude]
            return live[0] if len(live) == 1 else None

        old = await cluster.wait_for(running_on, what="web running on n1")
        assert old["node"] == "n1"
        # n1 is cut off (its session ends): its task is lost and replaced on n2
        cluster.kill_node("n1")
        await cluster.node("n2")
        new = await cluster.wait_for(lambda: running_on(exclude="n1"), timeout=20,
                                     what="web replaced on n2")
        assert new["id"] != old["id"]
        # n1 comes back and is told its copy must stop: it stops it and reports
        # `stopped`, then the leader forgets the copy
        back = await cluster.node("n1")
        L = c.lead
        assert L is not None

        async def forgotten() -> bool:
            return old["id"] not in L.state.statuses and \
                old["id"] not in L.state.assignments

        # the returning fake node starts empty: give it the copy it still held, as
        # the real node does (its job actor reports `stopped` once the copy is down)
        now = time.time()
        stale = {"id": old["id"], "node": "n1", "job": "web", "state": "stopped",
                 "healthy": None, "container": f"c-{old['id']}", "ports": {},
                 "exit_code": None, "since": now, "updated": now}
        await cluster.ask(c, "task_events", "n1", [stale])
        await cluster.wait_for(forgotten, timeout=20, what="the old copy forgotten")
        forgets_before = _forgets(caplog.text, old["id"])
        # the node keeps reporting it (its buffered events replayed, its statuses()
        # answer read again at each re-sync: both go through the same merge)
        for i in range(5):
            again = dict(stale, updated=now + 1 + i)
            await cluster.ask(c, "task_events", "n1", [again])
            await trio.sleep(0.2)
        assert await forgotten(), "the forgotten copy's status came back"
        assert _forgets(caplog.text, old["id"]) == forgets_before, caplog.text
        assert "not assigned to it, ignored" in caplog.text
        assert back is not None


def _forgets(log: str, task: str) -> int:
    return sum(1 for line in log.splitlines() if f"forget {task}" in line)


@pytest.mark.slow
@pytest.mark.zookeeper
@pytest.mark.docker
async def test_a_node_partitioned_while_its_task_moves_comes_back_without_reforgetting(
        tmp_path: Path, docker_test_image: str) -> None:
    """The soak's case on real parts: 2 node daemons (each in its network namespace) on
    the soak's own Docker daemon, 1 conductor, a 3-server ZooKeeper ensemble. The node
    running a service's one task is cut off from ZooKeeper and the conductor until its
    task is replaced on the other node, then healed: it stops its copy, and the leader
    forgets the lost copy without planning `orphan status` again and again."""
    if not zookeeper_available():
        service_missing("ZooKeeper")
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "iptables", "nsenter",
                                                              "dockerd")):
        service_missing("root with ip, iptables, nsenter and dockerd")
    cl = SoakCluster(tmp_path / "c", docker_test_image, nodes=2, conductors=1)
    try:
        await trio.to_thread.run_sync(cl.start)
        async with Client(cl.zk, None, timeout=10.0) as client:
            async def call(*args: Any) -> Any:
                for _ in range(60):  # bounded: the leader may be electing
                    try:
                        return await client.call(*args, timeout=10.0)
                    except (CLIError, actors.ActorError):
                        await trio.sleep(0.5)
                raise AssertionError(f"{args} never answered:\n{cl.diagnostics()}")

            async def wait(pred: Any, what: str, timeout: float = 120.0) -> Any:
                with trio.move_on_after(timeout):
                    while True:
                        got = await pred()
                        if got:
                            return got
                        await trio.sleep(0.5)
                raise AssertionError(f"timed out waiting for {what}:\n{cl.diagnostics()}")

            async def nodes_up() -> bool:
                return sum(n["status"] == "up" for n in await call("nodes")) == 2

            await wait(nodes_up, "2 nodes up")
            await call("job_run", validate(service_spec("pweb", docker_test_image, "v1",
                                                        1)).to_dict())

            async def running(exclude: str | None = None) -> Any:
                st = await call("job_status", "pweb")
                live = [t for t in st["tasks"] if t["state"] == "running" and t["healthy"]
                        and t["node"] != exclude]
                return live[0] if len(live) == 1 else None

            old = await wait(running, "pweb running")
            node = cl.nodes[old["node"]]
            assert node.ns is not None
            node.ns.block(cl.partition_rules(node, "zk") +
                          cl.partition_rules(node, "conductor"))
            new = await wait(lambda: running(exclude=old["node"]), "pweb replaced")
            assert new["id"] != old["id"]
            node.ns.heal()

            async def cleaned() -> bool:
                st = await call("job_status", "pweb")
                mine = [c for c in await trio.to_thread.run_sync(cl.running_containers)
                        if c["job"] == "pweb"]
                return all(t["id"] != old["id"] for t in st["tasks"]) and \
                    [c["task"] for c in mine] == [new["id"]]

            await wait(cleaned, "the old copy stopped and forgotten")
            # once the node has forgotten the copy too (its status znode gone), nothing
            # can report it any more
            store = await open_zookeeper(cl.zk_hosts, cl.root, session_timeout=10.0)
            try:
                async def node_forgot() -> bool:
                    return not await store.exists(paths.status(old["node"], old["id"]))

                await wait(node_forgot, "the node's status of its old copy deleted")
            finally:
                await store.aclose()
            assert await running(exclude=old["node"])
        log = "\n".join(p.log.read_text(errors="replace") for p in cl.conductors.values())
        orphan = [line for line in log.splitlines()
                  if f"forget {old['id']}" in line and "orphan status" in line]
        assert len(orphan) <= 1, "\n".join(orphan)
        # Whether the node's report of its stopped copy reaches the leader before or
        # after the leader forgot that copy depends on timing (both were seen here); in
        # the second case it is refused ("not assigned to it, ignored"). The fake-node
        # test above makes the second case every time; this one checks real parts.
    finally:
        await trio.to_thread.run_sync(cl.stop)


@pytest.mark.docker
async def test_a_container_whose_start_the_engine_refused_is_made_again(
        tmp_path: Path, docker_labels: dict[str, str], docker_test_image: str) -> None:
    name = f"rfs-{os.getpid()}-{int(time.time() * 1000) % 100000}"
    refused: list[str] = []
    try:
        async with node_running(tmp_path / "state", name=name,
                                container_labels=docker_labels) as node:
            rt = node.core.runtime
            real_start = rt.start

            async def start(cid: str) -> None:
                if not refused:
                    refused.append(cid)
                if cid in refused:  # what Docker answered after its restart
                    raise ContainerStartFailed(
                        f"container failed to start: task {cid}: already exists")
                await real_start(cid)

            rt.start = start  # type: ignore[method-assign]
            job = {"name": "once", "kind": "batch", "image": docker_test_image,
                   "command": ["sh", "-c", "echo ran"],
                   "resources": {"cpus": 0.1, "memory": "16M"},
                   "restart": {"policy": "on-failure", "max": 3, "backoff": "100ms"}}
            a = assignment(node.name, job)
            assert (await node.assign([a]))["accepted"]
            st = await node.wait_state(a["id"], "exited", "failed", timeout=60)
            assert st["state"] == "exited" and st["exit_code"] == 0, st
            assert refused and st["container"] != refused[0]
    finally:
        remove_containers(f"io.helios.node={name}")


@pytest.mark.docker
async def test_a_stopped_container_docker_cannot_remove_yet_leaves_its_task_stopped(
        tmp_path: Path, docker_labels: dict[str, str], docker_test_image: str) -> None:
    """**A container Docker could not remove kept its task `stopping`.** After a restart
    of the daemon mid-start, Docker refused for minutes to remove such a container
    (`driver "overlay2" failed to remove root filesystem: ... device or resource busy`).
    The job actor's teardown raised, its supervisor restarted it, and again, every few
    seconds (468 times on one node in a 20-minute soak): the task stayed `stopping`, and
    a drain waiting for it took 134 s. Fix (helios/node/job.py `_remove_stopped`): a
    container that no longer runs leaves its task `stopped`; the node removes it later,
    as a container no task owns. Here the refusal is injected into a real node on the
    real daemon, then lifted: the container goes."""
    name = f"rmv-{os.getpid()}-{int(time.time() * 1000) % 100000}"
    busy = True
    refusals: list[str] = []
    try:
        async with node_running(tmp_path / "state", name=name,
                                container_labels=docker_labels) as node:
            rt = node.core.runtime
            real_remove = rt.remove

            async def remove(cid: str) -> None:
                if busy:
                    await rt.stop(cid, 0)  # what a forced removal does first
                    refusals.append(cid)
                    raise RuntimeFailure(
                        f"Docker refused removing for {cid}: driver \"overlay2\" failed "
                        "to remove root filesystem: device or resource busy")
                await real_remove(cid)

            rt.remove = remove  # type: ignore[method-assign]
            job = {"name": "svc", "kind": "service", "image": docker_test_image,
                   "command": ["sleep", "600"], "grace": "1s",
                   "resources": {"cpus": 0.1, "memory": "16M"}}
            a = assignment(node.name, job)
            assert (await node.assign([a]))["accepted"]
            await node.wait_state(a["id"], "running", timeout=60)
            assert (await node.assign([dict(a, desired="stop")]))["accepted"]
            st = await node.wait_state(a["id"], "stopped", timeout=30)
            assert refusals, "the removal was never refused: the test tested nothing"
            assert st["state"] == "stopped"
            assert not [c for c in await rt.list({LABEL_TASK: a["id"]}) if c.running]
            # Docker lets go; the task is forgotten: its container is removed
            busy = False
            assert (await node.assign([]))["accepted"]
            with trio.move_on_after(60):
                while await rt.list({LABEL_TASK: a["id"]}):
                    await trio.sleep(0.5)
            assert not await rt.list({LABEL_TASK: a["id"]}), "the stopped container stayed"
    finally:
        remove_containers(f"io.helios.node={name}")


def test_a_slot_refilled_after_a_drain_move_never_draws_a_forgotten_id_again() -> None:
    """**One task id for two placements on two nodes.** Task ids are drawn
    deterministically per (job, version, slot, n), the first not in use. A drain moved
    slot 0 off node A: its replacement drew the next id (the first was still in use),
    then the first task stopped and was forgotten. When the replacement's node was lost,
    the refill drew the first id again: the same task id now named a new placement on
    node C while A had reported it (the soak's `single-node` checker caught it, seed
    1796149870, t=332 s; statuses are keyed by task id, so a stale report of the old copy
    could stand for the new one). Fix (helios/conductor/reconcile.py `_fill_salt`): a
    slot refilled after a lost or ended task also hashes that task's id."""
    from helios.conductor.drain import set_drain
    from helios.conductor.plan import ClusterState
    from tests.helios.scheduler.sim import job, node, step

    def converge(state: ClusterState, now: float) -> tuple[ClusterState, float]:
        for _ in range(30):
            state, p = step(state, now)
            now += 1.0
            if not p.has_changes():
                return state, now
        raise AssertionError("did not converge")

    def slot0(state: ClusterState) -> Any:
        return [a for a in state.assignments.values() if a.desired == "run"]

    st = ClusterState.of([job("web", count=1)], [node("a"), node("b"), node("c")])
    st, now = converge(st, 100.0)
    [first] = slot0(st)
    set_drain(st, first.node, now)
    st, now = converge(st, now)
    [moved] = slot0(st)
    assert moved.id != first.id and moved.node != first.node
    assert first.id not in st.assignments and first.id not in st.statuses  # forgotten
    st.nodes[moved.node] = node(moved.node, status="down", down_since=now)
    st, now = converge(st, now + 10.0)
    [refill] = slot0(st)
    assert refill.node not in (first.node, moved.node)
    assert refill.id not in (first.id, moved.id), \
        f"slot 0 drew {refill.id} again (first {first.id} on {first.node})"
