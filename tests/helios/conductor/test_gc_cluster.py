"""Garbage collection and `node_rm` with a real conductor on a real ZooKeeper (fake nodes,
in process): finished cron runs beyond the keep limit go with their znodes, an
idempotency key outlives its TTL while its run exists, removing a template cascades to
its runs, and a removed node's tasks are placed elsewhere at once.

Every wait is bounded (`MiniCluster.wait_for`); nothing here asserts how fast."""

from __future__ import annotations

import time
from typing import Any

import pytest
import trio

import actors
from helios.conductor.dispatch import key_path
from helios.conductor.gc import GCPolicy
from helios.coordination import paths
from helios.model import Assignment, NodeInfo

pytestmark = pytest.mark.zookeeper

SMALL = {"image": "x", "resources": {"cpus": 0.1, "memory": "16M"}}


async def leading(c: Any) -> Any:
    with trio.fail_after(20):
        while c.lead is None or not c.lead.ready.is_set():
            await trio.sleep(0.01)
    return c.lead


async def lead(cluster: Any, **kwargs: Any) -> Any:
    """A conductor that leads (on ZooKeeper the election takes a moment)."""
    c = await cluster.conductor("c1", **kwargs)
    await leading(c)
    return c


async def runs_of(store: Any, parent: str) -> list[str]:
    return sorted(n for n in await store.children(paths.JOBS) if n.startswith(f"{parent}-"))


async def znodes_of_run(store: Any, run: str) -> list[str]:
    """Everything of `run` left in the store: record, history, assignments, statuses."""
    left = [p for p in (paths.job(run), paths.history(run)) if await store.exists(p)]
    for top in (paths.ASSIGNMENTS, paths.STATUS):
        for node in await store.children(top):
            left += [f"{top}/{node}/{t}" for t in await store.children(f"{top}/{node}")
                     if t.startswith(f"{run}-")]
    return left


async def history(cluster: Any, c: Any, job: str, state: str) -> list[dict[str, Any]]:
    return [e for e in await cluster.ask(c, "job_history", job) if e["state"] == state]


async def test_cron_runs_beyond_keep_are_collected_with_their_znodes(zk_cluster, zk_store):
    cluster, store = zk_cluster, zk_store
    c = await lead(cluster, gc=GCPolicy(keep_runs=2, interval=0.2))
    await cluster.node("n1")
    await cluster.ask(c, "job_run", {"name": "tick", "kind": "cron",
                                     "schedule": "* * * * * *", **SMALL})

    async def collected_some():
        fired = await history(cluster, c, "tick", "cron fired")
        return len(fired) >= 5 and await history(cluster, c, "tick", "runs collected")

    await cluster.wait_for(collected_some, timeout=30, what="5 ticks fired, runs collected")
    await cluster.ask(c, "job_stop", "tick")  # no more runs

    async def settled():
        runs = {j["name"]: j["status"] for j in await cluster.ask(c, "job_ls")
                if j["name"] != "tick"}
        left = await runs_of(store, "tick")
        return left if (len(left) == 2 and sorted(runs) == left
                        and set(runs.values()) == {"complete"}) else None

    left = await cluster.wait_for(settled, timeout=20, what="2 finished runs kept")
    fired = sorted(e["run"] for e in await history(cluster, c, "tick", "cron fired"))
    assert left == fired[-2:]  # the newest are kept
    gone = set(fired) - set(left)
    events = await history(cluster, c, "tick", "runs collected")
    assert {r for e in events for r in e["runs"]} == gone
    assert len(events) <= len(gone) and all("keep 2" in e["reason"] for e in events)

    async def no_znodes_left():
        return all([not await znodes_of_run(store, r) for r in gone])

    await cluster.wait_for(no_znodes_left, timeout=20, what="znodes of collected runs gone")
    for run in left:  # the kept runs are intact, history included
        assert await store.exists(paths.history(run))
        assert await znodes_of_run(store, run)
    assert {j["name"] for j in await cluster.ask(c, "job_ls")} == {"tick", *left}


async def test_a_dispatch_key_outlives_its_ttl_while_its_run_exists(zk_cluster, zk_store):
    cluster, store = zk_cluster, zk_store
    c = await lead(cluster, gc=GCPolicy(keep_runs=1, key_ttl=1.0, interval=0.2))
    await cluster.node("n1")
    await cluster.ask(c, "job_run", {"name": "thumb", "kind": "parameterized", **SMALL})
    first = await cluster.ask(c, "job_dispatch", "thumb", payload="1", idempotency_key="k1")
    assert first["created"] is True
    k1, k2 = key_path("thumb", "k1"), key_path("thumb", "k2")

    async def complete(run):
        return (await cluster.ask(c, "job_status", run))["status"] == "complete"

    await cluster.wait_for(lambda: complete(first["run"]), what="first run complete")
    # past the TTL, two sweeps later, the key is still there: its run exists
    collector = c.term.loop.collector
    await trio.sleep(1.0)  # the key's TTL (1 s) passes on the conductor's real clock
    for _ in range(2):
        await collector.sweep_keys()
    assert await store.exists(k1)
    again = await cluster.ask(c, "job_dispatch", "thumb", payload="1", idempotency_key="k1")
    assert again == dict(first, created=False)

    # a second run pushes the first out (keep 1); then its key goes too
    second = await cluster.ask(c, "job_dispatch", "thumb", payload="2", idempotency_key="k2")
    await cluster.wait_for(lambda: complete(second["run"]), what="second run complete")

    async def first_run_and_key_gone():
        return not await store.exists(paths.job(first["run"])) and not await store.exists(k1)

    await cluster.wait_for(first_run_and_key_gone, timeout=20, what="run, then key, gone")
    assert await store.exists(k2)  # its run is the one kept
    # after the TTL and the run: a retry with the key is a new run
    retry = await cluster.ask(c, "job_dispatch", "thumb", payload="1", idempotency_key="k1")
    assert retry["created"] is True and retry["run"] not in (first["run"], second["run"])
    await cluster.wait_for(lambda: complete(retry["run"]), what="retried run complete")


async def test_a_removed_jobs_history_stays_readable_then_goes(zk_cluster, zk_store):
    cluster, store = zk_cluster, zk_store
    c = await lead(cluster, gc=GCPolicy(run_retention=1.5, key_ttl=1.0, interval=0.2))
    await cluster.node("n1")
    await cluster.ask(c, "job_run", {"name": "once", "kind": "batch", **SMALL})

    async def complete():
        return (await cluster.ask(c, "job_status", "once"))["status"] == "complete"

    await cluster.wait_for(complete, what="batch complete")
    await cluster.ask(c, "job_rm", "once")
    # right after the removal its history still answers
    states = [e["state"] for e in await cluster.ask(c, "job_history", "once")]
    assert "exited" in states and "removed" in states

    async def history_gone():
        return not await store.exists(paths.history("once"))

    await cluster.wait_for(history_gone, timeout=20, what="the removed job's history gone")
    with pytest.raises(actors.ActorError, match="no job named"):
        await cluster.ask(c, "job_history", "once")


async def test_removing_a_template_stops_and_collects_its_runs(zk_cluster, zk_store):
    cluster, store = zk_cluster, zk_store
    c = await lead(cluster, gc=GCPolicy(interval=0.2))
    node = await cluster.node("n1", hold_batch=True, cpus=4.0)  # batch tasks keep running
    await cluster.ask(c, "job_run", {"name": "work", "kind": "parameterized", **SMALL})
    await cluster.ask(c, "job_run", {"name": "beat", "kind": "cron",
                                     "schedule": "* * * * * *", **SMALL})
    runs = [(await cluster.ask(c, "job_dispatch", "work"))["run"] for _ in range(2)]

    async def running():
        names = runs + await runs_of(store, "beat")
        states = [(await cluster.ask(c, "job_status", r))["status"] for r in names]
        return names if len(names) == 3 and set(states) == {"running"} else None

    names = await cluster.wait_for(running, timeout=15, what="three runs running")
    assert await store.exists(paths.cron("beat"))
    out = await cluster.ask(c, "job_rm", "work")
    assert out["removed"] is True and out["runs"] == sorted(runs)
    assert (await cluster.ask(c, "job_rm", "beat"))["runs"] == names[2:]

    async def all_gone():
        left = [z for r in names for z in await znodes_of_run(store, r)]
        return not left and not await store.exists(paths.cron("beat"))

    await cluster.wait_for(all_gone, timeout=20, what="runs of removed templates collected")
    assert await cluster.ask(c, "job_ls") == []
    assert {s["state"] for s in await node.ask("statuses")} == {"stopped"}
    # the templates' history says what happened to their runs
    collected = await history(cluster, c, "work", "runs collected")
    assert {r for e in collected for r in e["runs"]} == set(runs)
    assert "parent was removed" in collected[0]["reason"]


async def test_node_rm_replaces_its_tasks_and_deletes_its_znodes(zk_cluster, zk_store):
    cluster, store = zk_cluster, zk_store
    c = await lead(cluster, grace=3600.0)  # nothing moves by failover here
    await cluster.node("n1", labels={"role": "first"})
    await cluster.ask(c, "job_run", {"name": "web", "kind": "service", "count": 2, **SMALL})
    await cluster.ask(c, "job_run", {"name": "once", "kind": "batch",
                                     "constraints": {"role": "first"}, **SMALL})

    async def placed(job, state, node=None):
        tasks = (await cluster.ask(c, "job_status", job))["tasks"]
        return tasks if tasks and all(t["state"] == state and (node is None or
                                                               t["node"] == node)
                                      for t in tasks) else None

    await cluster.wait_for(lambda: placed("web", "running", "n1"), what="web on n1")
    (done,) = await cluster.wait_for(lambda: placed("once", "exited", "n1"), what="batch")
    await cluster.node("n2")
    with pytest.raises(actors.RemoteError) as e:
        await cluster.ask(c, "node_rm", "nosuch")
    assert e.value.type_name == "NodeNotFound"
    with pytest.raises(actors.RemoteError) as e:
        await cluster.ask(c, "node_rm", "n1")
    assert e.value.type_name == "NodeUp" and "--force" in e.value.message

    cluster.kill_node("n1")

    async def n1_down():
        return [n["status"] for n in await cluster.ask(c, "nodes")] == ["down", "up"]

    await cluster.wait_for(n1_down, what="n1 down")
    out = await cluster.ask(c, "node_rm", "n1")
    assert out["removed"] is True and out["was_up"] is False
    assert out["kept"] == [done["id"]]  # the finished batch task still marks its slot done
    assert [n["name"] for n in await cluster.ask(c, "nodes")] == ["n2"]
    await cluster.wait_for(lambda: placed("web", "running", "n2"), what="web on n2")
    assert not await store.exists(paths.node("n1"))
    assert await store.children(paths.assignments("n1")) == [done["id"]]
    # (a fake node writes no status znodes: only the kept one may be there)
    assert set(await store.children(paths.statuses("n1"))) <= {done["id"]}
    assert (await cluster.ask(c, "job_status", "once"))["status"] == "complete"
    # once that job goes, so do the node's last directories
    await cluster.ask(c, "job_rm", "once")

    async def dirs_gone():
        return not (await store.exists(paths.assignments("n1"))
                    or await store.exists(paths.statuses("n1")))

    await cluster.wait_for(dirs_gone, what="n1's directories deleted")


async def test_node_rm_force_stops_a_live_nodes_tasks_and_it_registers_again(zk_cluster):
    cluster = zk_cluster
    c = await lead(cluster, grace=3600.0)
    node = await cluster.node("n1")
    await cluster.ask(c, "job_run", {"name": "web", "kind": "service", "count": 1, **SMALL})

    async def running():
        tasks = (await cluster.ask(c, "job_status", "web"))["tasks"]
        return [t for t in tasks if t["state"] == "running"]

    first = await cluster.wait_for(running, what="web running")
    out = await cluster.ask(c, "node_rm", "n1", force=True)
    assert out["was_up"] is True and out["tasks"] == 1
    # the daemon was told its desired set is empty: it stopped the task
    assert {s["state"] for s in await node.ask("statuses")} == {"stopped"}
    lost = [e for e in await cluster.ask(c, "job_history", "web") if e["state"] == "lost"]
    assert [(e["task"], e["reason"]) for e in lost] == [
        (first[0]["id"], "node n1 was removed while up (--force)")]

    # Its daemon still runs: like a kubelet whose Node object was deleted, it registers
    # again, and the job gets a new task there.
    async def again():
        nodes = await cluster.ask(c, "nodes")
        tasks = await running()
        return ([n["name"] for n in nodes if n["status"] == "up"] == ["n1"] and tasks
                and tasks[0]["id"] != first[0]["id"])

    await cluster.wait_for(again, timeout=20, what="n1 registered again, web on it")


async def test_a_deposed_leader_collects_nothing(zk_hosts, zk_root, zk_store):
    """GC writes go through the term's fenced writer: once a newer leader claimed, a
    pass of the old one (its cache says a run and a key are due) changes nothing."""
    from helios.conductor.conductor import Conductor
    from helios.conductor.history import History
    from helios.conductor.node_sync import NodeSync
    from helios.conductor.plan import ClusterState
    from helios.conductor.reconcile_loop import ReconcileLoop
    from helios.conductor.store_writer import Persisted, Writer
    from helios.conductor.term import Leadership
    from helios.coordination import StaleEpoch, init_cluster, leadership, open_zookeeper
    from helios.metrics import conductor_metrics
    from helios.model import JobRecord, TaskStatus
    from helios.spec import validate

    store = zk_store
    await init_cluster(store)
    other = await open_zookeeper(zk_hosts, zk_root, session_timeout=2.0)
    try:
        async with leadership(store, "old") as old:
            pass
        async with leadership(other, "new"):
            tmpl = JobRecord(spec=validate({"name": "t", "kind": "parameterized",
                                            "command": ["true"]}))
            run = JobRecord(spec=validate({"name": "t-1", "kind": "batch",
                                           "command": ["true"]}), parent="t", created=1.0)
            a = Assignment(id="t-1-aaaa", job="t-1", version=1, node="n1")
            st = TaskStatus(id="t-1-aaaa", node="n1", job="t-1", state="exited",
                            finished=2.0)
            state = ClusterState.of([tmpl, run], [NodeInfo("n1")], [a], [st])
            for rec in (tmpl, run):
                await other.create(paths.job(rec.name), rec.to_dict())
            key = key_path("t", "k")
            await other.create(key, {"key": "k", "run": "gone", "created": 0.0})
            old.lost = trio.Event()  # deposed, and it has not noticed yet
            L = Leadership(term=old, state=state, history=History(store),
                           writer=Writer(old, Persisted(state.copy(), set())))
            async with actors.open_system(name="old") as system:
                nodes = NodeSync(L, store, system, clock=time.time)
                loop = ReconcileLoop(L, store, nodes, clock=time.time, failover_grace=2.0,
                                     gc=GCPolicy(keep_runs=0, run_retention=0.0,
                                                 key_ttl=0.0),
                                     metrics=conductor_metrics(
                                         Conductor(store, system, name="old")))
                with pytest.raises(StaleEpoch):
                    await loop.collector.collect()
                with pytest.raises(StaleEpoch):
                    await loop.collector.sweep_keys()
            assert await other.exists(paths.job("t-1")) and await other.exists(key)
    finally:
        await other.aclose()
