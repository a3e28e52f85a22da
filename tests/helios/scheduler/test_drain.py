"""Draining and eligibility in the pure reconciler (`conductor/drain.py`): no new
placements on a drained or ineligible node, service tasks replaced first (the rollout's
rules, `parallel` at a time, old stopped only once the new one is healthy), batch tasks
left until the deadline, the drain complete once the node holds nothing."""

from helios.conductor.drain import DrainState, drain_report, finish_drains, set_drain, with_drains
from helios.conductor.plan import ClusterState, apply
from helios.model import FINISHED_STATES

from .sim import job, make_healthy, node, run_nodes, step
from .sim import plan_for as plan
from .test_reconcile import converge


def on(st, node_name):
    return sorted(a.id for a in st.assignments.values() if a.node == node_name
                  and a.desired == "run"
                  and not (a.id in st.statuses and st.statuses[a.id].state in FINISHED_STATES))


def test_an_ineligible_node_gets_nothing_new_and_keeps_what_it_runs():
    st = converge(ClusterState.of([job("web", count=2, spread=True)], [node("a"), node("b")]))
    assert len(on(st, "a")) == 1
    assert set_drain(st, "a", 100.0, eligible=False)
    assert not set_drain(st, "a", 100.0, eligible=False)  # no change, no write
    assert not plan(st, 101).has_changes()  # moving nothing
    st.jobs["web"] = job("web", version=2, count=4, spread=True)
    st = converge(st, 200)
    assert len(on(st, "a")) == 1 and len(on(st, "b")) == 3
    assert set_drain(st, "a", 300.0, eligible=True) and "a" not in st.drains


def test_a_drain_replaces_service_tasks_first_parallel_at_a_time():
    web = job("web", count=4, health={"exec": ["true"]}, update={"parallel": 2},
              resources={"cpus": 0.5, "memory": "64M"})
    st = converge(ClusterState.of([web], [node("a", cpus=2.0)]))
    st.nodes["b"] = node("b", cpus=4.0)
    old = on(st, "a")
    assert len(old) == 4
    set_drain(st, "a", 1000.0, deadline=60)
    p = plan(st, 1001)
    assert not p.stop and sorted(pl.task.node for pl in p.place) == ["b", "b"]
    assert all("draining node a" in pl.reason for pl in p.place)
    assert not p.failures
    st = run_nodes(apply(st, p, 1001), 1001, healthy=False)
    p = plan(st, 1002)
    assert not p.has_changes()  # the new ones are not healthy: the old keep serving
    report = drain_report(st, "a", 1002, p.pending, p.rollout)
    assert not report["complete"] and len(report["remaining"]) == 4
    waits = sorted(r["waiting_for"].split(" ")[0:2] == ["its", "replacement"]
                   for r in report["remaining"])
    assert waits == [False, False, True, True]  # two moving, two waiting their turn
    assert any("its turn" in r["waiting_for"] for r in report["remaining"])
    st = make_healthy(st)
    p = plan(st, 1003)
    assert len(p.stop) == 2 and {s.node for s in p.stop} == {"a"}
    assert len(p.place) == 2  # the next two slots
    st = converge(st, 1004)
    assert on(st, "a") == [] and len(on(st, "b")) == 4
    assert finish_drains(st, 1100) == ["a"]
    d = st.drains["a"]
    assert not d.draining and not d.eligible and d.done == 1100
    assert drain_report(st, "a", 1100)["complete"]


def test_a_drain_without_room_keeps_the_task_serving_and_says_why():
    web = job("web", count=1, resources={"cpus": 3.0, "memory": "64M"})
    st = converge(ClusterState.of([web], [node("a"), node("b", cpus=1.0)]))
    assert len(on(st, "a")) == 1
    set_drain(st, "a", 100.0)
    p = plan(st, 101)
    assert not p.stop and not p.place and not p.failures
    assert "cannot move" in p.pending[0].explanation and "draining node a" in \
        p.pending[0].explanation
    assert "1 of 2 up nodes eligible" in p.pending[0].explanation
    report = drain_report(st, "a", 101, p.pending, p.rollout)
    assert report["remaining"][0]["waiting_for"].startswith("room on another node (no node")


def test_batch_tasks_finish_before_the_deadline_then_move():
    work = job("work", kind="batch", count=2, resources={"cpus": 0.5, "memory": "64M"})
    st = ClusterState.of([work], [node("a")])
    st, _ = step(st, 100, batch_exits=False)
    st = run_nodes(st, 100.5, batch_exits=False)
    st.nodes["b"] = node("b")
    set_drain(st, "a", 101.0, deadline=30)
    assert st.drains["a"] == DrainState(eligible=False, draining=True, deadline=131.0,
                                        since=101.0)
    assert not plan(st, 110).has_changes()  # before the deadline: they may finish
    report = drain_report(st, "a", 110)
    assert all("to finish" in r["waiting_for"] for r in report["remaining"])
    p = plan(st, 131.5)
    assert sorted(s.node for s in p.stop) == ["a", "a"]
    assert "deadline passed" in p.stop[0].reason
    assert sorted(pl.task.node for pl in p.place) == ["b", "b"]
    st = converge(apply(st, p, 131.5), 132)
    assert finish_drains(st, 140) == ["a"]


def test_a_drain_survives_in_the_state_a_new_leader_loads():
    st = ClusterState.of([], [node("a")])
    set_drain(st, "a", 5.0, deadline=10)
    copy = st.copy()
    assert copy.drains == st.drains
    assert DrainState.from_dict(st.drains["a"].to_dict()) == st.drains["a"]
    assert with_drains(st.nodes, st.drains)["a"].draining
    assert not with_drains(st.nodes, st.drains)["a"].schedulable


def test_asking_again_keeps_the_running_drain_unless_a_deadline_is_given():
    st = ClusterState.of([], [node("a")])
    set_drain(st, "a", 100.0)
    assert st.drains["a"].deadline == 100.0 + 3600 and st.drains["a"].since == 100.0
    assert not set_drain(st, "a", 200.0)  # again, no deadline: nothing changes
    assert set_drain(st, "a", 300.0, deadline=10)
    assert st.drains["a"].deadline == 310.0 and st.drains["a"].since == 100.0
    assert set_drain(st, "a", 400.0, eligible=True)  # enabling ends the drain
    assert "a" not in st.drains
    set_drain(st, "a", 500.0, reason="rebalance")
    assert st.drains["a"].deadline is None
    assert finish_drains(st, 501.0) == ["a"] and "a" not in st.drains  # eligible again
