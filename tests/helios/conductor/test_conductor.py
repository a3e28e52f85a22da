"""The conductor against fake nodes on the embedded store: placement, reports, failover,
idempotent reconciliation, pending explanations, standbys and fencing."""

from __future__ import annotations

import pytest
import trio

import actors
from helios.conductor.reconcile import reconcile

WEB = {"name": "web", "kind": "service", "image": "local/busybox:1",
       "command": ["httpd", "-f"], "count": 4, "resources": {"cpus": 0.5, "memory": "64M"},
       "update": {"min_healthy_time": "0s"}}  # fake nodes: running is healthy at once


async def running(cluster, c, job="web", n=None):
    st = await cluster.ask(c, "job_status", job)
    got = [t for t in st["tasks"] if t["state"] == "running"]
    return st if len(got) == (n if n is not None else 4) else None


async def test_service_packs_onto_fewest_nodes_and_runs(cluster):
    c = await cluster.conductor("c1")
    for n in ("n1", "n2", "n3"):
        await cluster.node(n)
    out = await cluster.ask(c, "job_run", WEB)
    assert out == {"name": "web", "version": 1, "changed": True, "unplaced": [], "failures": []}
    st = await cluster.wait_for(lambda: running(cluster, c), what="4 running")
    assert len({t["node"] for t in st["tasks"]}) == 1  # 4 x 0.5 cpu fill one 2-cpu node
    assert (await cluster.ask(c, "job_run", WEB))["changed"] is False
    ls = await cluster.ask(c, "job_ls")
    assert ls == [{"name": "web", "kind": "service", "count": 4, "running": 4,
                   "version": 1, "status": "running"}]
    nodes = await cluster.ask(c, "nodes")
    assert [n["name"] for n in nodes] == ["n1", "n2", "n3"]
    assert sum(n["tasks"] for n in nodes) == 4
    eps = await cluster.ask(c, "endpoints", "web")
    assert len(eps) == 4 and all(e["host"] == "127.0.0.1" for e in eps)
    hist = await cluster.ask(c, "job_history", "web")
    assert [e["state"] for e in hist].count("running") == 4
    # level-triggered: reconciling the settled state again changes nothing (settled: the
    # leader has also recorded that v1 runs in every slot)
    L = c.lead

    async def settled():
        return L.state.jobs["web"].rolled_out == 1

    await cluster.wait_for(settled, what="v1 recorded as rolled out")
    plan = reconcile(L.state.jobs, L.state.nodes, L.state.assignments, L.state.statuses,
                     c.clock(), c.failover_grace)
    assert not plan.has_changes()


async def test_failover_moves_tasks_and_returning_node_stops_its_copies(cluster):
    c = await cluster.conductor("c1", grace=0.3)
    for n in ("n1", "n2", "n3"):
        await cluster.node(n)
    await cluster.ask(c, "job_run", WEB)
    st = await cluster.wait_for(lambda: running(cluster, c), what="4 running")
    victim = st["tasks"][0]["node"]
    old_ids = {t["id"] for t in st["tasks"]}
    cluster.kill_node(victim)

    async def moved():
        s = await cluster.ask(c, "job_status", "web")
        live = [t for t in s["tasks"] if t["state"] == "running" and t["node"] != victim]
        return s if len(live) == 4 else None

    s = await cluster.wait_for(moved, what="tasks replaced elsewhere")
    assert {t["state"] for t in s["tasks"] if t["node"] == victim} <= {"lost"}
    new_ids = {t["id"] for t in s["tasks"] if t["state"] == "running"}
    assert not (new_ids & old_ids)
    # the node returns: it is told its copies stop, and they are forgotten
    ref = await cluster.node(victim)

    async def cleaned():
        s = await cluster.ask(c, "job_status", "web")
        return s if all(t["node"] != victim for t in s["tasks"]) else None

    await cluster.wait_for(cleaned, what="stale copies removed")
    assert ref is not None


async def test_unplaceable_job_stays_pending_with_reason(cluster):
    c = await cluster.conductor("c1")
    await cluster.node("n1")
    big = dict(WEB, name="big", count=1, resources={"cpus": 64, "memory": "64M"})
    await cluster.ask(c, "job_run", big)

    async def pending():
        s = await cluster.ask(c, "job_status", "big")
        return s if s["pending"] else None

    s = await cluster.wait_for(pending, what="pending explanation")
    assert s["tasks"] == []
    assert "cpu" in s["pending"][0]["reason"].lower()


async def leading(c):
    with trio.fail_after(10):
        while c.lead is None or not c.lead.ready.is_set():
            await trio.sleep(0.01)


async def test_errors_reach_the_client_and_the_conductor_survives(cluster):
    c = await cluster.conductor("c1")
    await leading(c)
    with pytest.raises(actors.RemoteError) as e:
        await cluster.ask(c, "job_status", "nope")
    assert e.value.type_name == "JobNotFound"
    with pytest.raises(actors.RemoteError) as e:
        await cluster.ask(c, "job_run", {"name": "Bad Name", "count": -1})
    assert e.value.type_name == "SpecError"
    with trio.fail_after(5):
        while True:
            try:
                assert await cluster.ask(c, "job_ls") == []
                break
            except actors.ActorNotFound:
                await trio.sleep(0.01)


async def test_standby_points_at_leader_and_takes_over(cluster):
    c1 = await cluster.conductor("c1")
    await leading(c1)
    c2 = await cluster.conductor("c2")
    await cluster.node("n1")
    with pytest.raises(actors.RemoteError) as e:
        await cluster.ask(c2, "job_ls")
    assert e.value.type_name == "NotLeader" and e.value.message == c1.url
    info = await cluster.ask(c2, "leader")
    assert info["leader"] is False and info["url"] == c1.url
    await cluster.ask(c1, "job_run", dict(WEB, count=2))
    await cluster.wait_for(lambda: running(cluster, c1, n=2), what="2 running")
    cluster.conductors[0][0].cancel()  # c1 goes away
    with trio.fail_after(10):
        while c2.lead is None or not c2.lead.ready.is_set():
            await trio.sleep(0.02)
    st = await cluster.wait_for(lambda: running(cluster, c2, n=2), what="still 2")
    assert len(st["tasks"]) == 2  # nothing duplicated, nothing lost
    assert c2.lead.epoch > 1


async def test_node_losing_only_its_conductor_link_is_not_failed_over(cluster):
    c = await cluster.conductor("c1", grace=0.2)
    ref = await cluster.node("n1")
    await cluster.node("n2", cpus=0.1)  # too small to take anything
    await cluster.ask(c, "job_run", dict(WEB, count=2))
    st = await cluster.wait_for(lambda: running(cluster, c, n=2), what="2 running")
    await ref.stop()  # the node actor is gone; its ZooKeeper (store) session lives on
    await trio.sleep(1.0)  # five failover graces pass: the behaviour is that nothing moves
    after = await cluster.ask(c, "job_status", "web")
    assert [(t["id"], t["node"]) for t in after["tasks"]] == \
        [(t["id"], t["node"]) for t in st["tasks"]]
    assert not any(t["state"] == "lost" for t in after["tasks"])


async def test_job_stop_and_rm_stop_every_task(cluster):
    c = await cluster.conductor("c1")
    await cluster.node("n1")
    await cluster.ask(c, "job_run", dict(WEB, count=2))
    await cluster.wait_for(lambda: running(cluster, c, n=2), what="2 running")
    assert (await cluster.ask(c, "job_stop", "web"))["stopped"] is True

    async def empty():
        s = await cluster.ask(c, "job_status", "web")
        return s["tasks"] == [] and s["status"] == "stopped"

    await cluster.wait_for(empty, what="tasks stopped and forgotten")
    # running it again un-stops it, as a new version
    out = await cluster.ask(c, "job_run", dict(WEB, count=2))
    assert out["changed"] is True
    await cluster.wait_for(lambda: running(cluster, c, n=2), what="running again")
    await cluster.ask(c, "job_rm", "web")
    assert await cluster.ask(c, "job_ls") == []
    node = (await cluster.ask(c, "nodes"))[0]
    await cluster.wait_for(lambda: _no_tasks(cluster, c), what="node empty")
    assert node["name"] == "n1"


async def _no_tasks(cluster, c):
    return (await cluster.ask(c, "nodes"))[0]["tasks"] == 0


async def test_dispatch_runs_a_parameterized_job_once_per_key(cluster):
    c = await cluster.conductor("c1")
    await cluster.node("n1")
    tmpl = {"name": "thumb", "kind": "parameterized", "payload": "required",
            "image": "x", "resources": {"cpus": 0.1, "memory": "16M"}}
    await cluster.ask(c, "job_run", tmpl)
    with pytest.raises(actors.RemoteError):
        await cluster.ask(c, "job_dispatch", "thumb")  # payload required
    a = await cluster.ask(c, "job_dispatch", "thumb", payload='{"x": 1}',
                          idempotency_key="k1")
    b = await cluster.ask(c, "job_dispatch", "thumb", payload='{"x": 1}',
                          idempotency_key="k1")
    assert a["created"] is True and b == dict(a, created=False)

    async def done():
        s = await cluster.ask(c, "job_status", a["run"])
        return s["status"] == "complete"

    await cluster.wait_for(done, what="dispatched run complete")


async def test_changed_job_rolls_out_to_a_new_version(cluster):
    c = await cluster.conductor("c1")
    await cluster.node("n1")
    await cluster.ask(c, "job_run", dict(WEB, count=2))
    first = await cluster.wait_for(lambda: running(cluster, c, n=2), what="v1 running")
    out = await cluster.ask(c, "job_run", dict(WEB, count=2, command=["httpd", "-v"]))
    assert out == {"name": "web", "version": 2, "changed": True, "unplaced": [], "failures": []}

    async def rolled():
        s = await cluster.ask(c, "job_status", "web")
        ids = {t["id"] for t in s["tasks"]}
        return s if (s["status"] == "running" and len(s["tasks"]) == 2
                     and not ids & {t["id"] for t in first["tasks"]}) else None

    await cluster.wait_for(rolled, what="rollout to v2")
    # scaling is in place: same tasks, new version, nothing restarted
    before = {t["id"] for t in (await cluster.ask(c, "job_status", "web"))["tasks"]}
    await cluster.ask(c, "job_run", dict(WEB, count=3, command=["httpd", "-v"]))
    s = await cluster.wait_for(lambda: running(cluster, c, n=3), what="scaled to 3")
    assert before < {t["id"] for t in s["tasks"]}


async def test_cron_job_fires_runs_that_complete(cluster):
    c = await cluster.conductor("c1")
    await cluster.node("n1")
    cron = {"name": "tick", "kind": "cron", "schedule": "* * * * * *", "image": "x",
            "resources": {"cpus": 0.1, "memory": "16M"}}
    await cluster.ask(c, "job_run", cron)

    async def fired():
        runs = [j for j in await cluster.ask(c, "job_ls")
                if j["name"].startswith("tick-") and j["status"] == "complete"]
        return runs or None

    runs = await cluster.wait_for(fired, what="a cron run completed")
    assert runs[0]["kind"] == "batch"
    hist = await cluster.ask(c, "job_history", "tick")
    assert any(e["state"] == "cron fired" for e in hist)
