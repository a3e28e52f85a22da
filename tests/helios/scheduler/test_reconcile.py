"""Reconciler scenarios: scaling, batch, failover, orphans, rollouts, plans as data."""

import dataclasses

from helios.conductor.plan import ClusterState, Plan, apply
from helios.conductor.reconcile import reconcile
from helios.model import TaskStatus
from helios.spec import FrozenMap, Resources

from .sim import job, make_healthy, node, plan_for, run_nodes, step

MIB = 1 << 20


def live(state, name):
    return sorted((a for a in state.assignments.values()
                   if a.job == name and a.desired == "run"), key=lambda a: a.index)


def converge(state, now=100.0, rounds=20, **kw):
    for i in range(rounds):
        state, p = step(state, now + i, **kw)
        if not p.has_changes():
            return state
    raise AssertionError("did not converge")


def test_new_service_is_placed_and_second_pass_is_empty():
    st = ClusterState.of([job("web", count=3)], [node("a"), node("b")])
    p = plan_for(st, 100)
    assert len(p.place) == 3 and not p.stop
    assert sorted(pl.task.index for pl in p.place) == [0, 1, 2]
    assert all(pl.task.id.startswith("web-") and len(pl.task.id) == 10 for pl in p.place)
    again = plan_for(apply(st, p, 100), 101)
    assert not again.has_changes()


def test_same_input_same_plan():
    st = ClusterState.of([job("web", count=5), job("api", count=2, spread=True)],
                         [node(f"n{i}") for i in range(4)])
    assert plan_for(st, 1).to_dict() == plan_for(st, 1).to_dict()


def test_scale_down_stops_highest_slots_and_scale_up_fills():
    st = converge(ClusterState.of([job("web", count=4)], [node("a")]))
    before = live(st, "web")
    st.jobs["web"] = job("web", version=2, count=2)
    p = plan_for(st, 200)
    assert sorted(s.task for s in p.stop) == sorted(a.id for a in before[2:])
    assert all(s.reason == "count is 2" for s in p.stop)
    assert {u.task for u in p.update} == {a.id for a in before[:2]}  # in place, v2
    st = converge(st, 200)
    assert [a.index for a in live(st, "web")] == [0, 1]
    assert all(a.version == 2 for a in live(st, "web"))
    st.jobs["web"] = job("web", version=3, count=3)
    p = plan_for(st, 300)
    assert [pl.task.index for pl in p.place] == [2] and not p.stop


def test_batch_exited_tasks_are_not_rerun():
    st = converge(ClusterState.of([job("b", kind="batch", count=2)], [node("a")]))
    states = {s.state for s in st.statuses.values()}
    assert states == {"exited"}
    assert not plan_for(st, 500).has_changes()


def test_node_down_within_grace_moves_nothing_then_fails_over():
    st = converge(ClusterState.of([job("web", count=2, spread=True)], [node("a"), node("b")]))
    on_a = [t for t in live(st, "web") if t.node == "a"]
    assert len(on_a) == 1
    st.nodes["a"] = node("a", status="down", down_since=1000.0)
    assert not plan_for(st, 1001.0).has_changes()  # within the 2 s grace
    p = plan_for(st, 1003.0)
    assert [lo.task for lo in p.lost] == [on_a[0].id]
    assert "down for 3s" in p.lost[0].reason
    assert [(pl.task.node, pl.task.index) for pl in p.place] == [("b", on_a[0].index)]
    st2 = apply(st, p, 1003.0)
    assert st2.statuses[on_a[0].id].state == "lost"
    assert not plan_for(st2, 1004.0).has_changes()
    # the node returns: it sees its copy marked stop, stops it, and it is forgotten
    st2.nodes["a"] = node("a")
    st3 = run_nodes(st2, 1010.0)
    p = plan_for(st3, 1010.0)
    assert [r.task for r in p.remove] == [on_a[0].id] and not p.place
    assert len(live(apply(st3, p), "web")) == 2


def test_batch_on_lost_node_reruns_only_unfinished():
    st = ClusterState.of([job("b", kind="batch", count=2, spread=True)],
                         [node("a"), node("b")])
    st, _ = step(st, 1, batch_exits=False)
    tasks = live(st, "b")
    done, running = tasks
    st.statuses[done.id] = st.statuses[done.id].replace(state="exited")
    st.nodes = {n: node(n, status="down", down_since=0.0) if n in (done.node, running.node)
                else st.nodes[n] for n in st.nodes}
    st.nodes["c"] = node("c")
    p = plan_for(st, 10)
    assert [lo.task for lo in p.lost] == [running.id]
    assert [(pl.task.index, pl.task.node) for pl in p.place] == [(running.index, "c")]


def test_orphan_copy_is_stopped_then_forgotten():
    st = ClusterState.of([job("web", count=1)], [node("a")])
    st = converge(st)
    st.statuses["web-dead"] = TaskStatus(id="web-dead", node="a", job="web", state="running")
    p = plan_for(st, 50)
    assert [(s.task, s.reason) for s in p.stop] == [("web-dead", "orphan: no assignment owns it")]
    st = apply(st, p, 50)
    assert not plan_for(st, 51).has_changes()
    st = run_nodes(st, 52)
    p = plan_for(st, 52)
    assert [r.task for r in p.remove] == ["web-dead"]


def test_ended_service_task_is_replaced_after_the_reschedule_delay():
    st = converge(ClusterState.of([job("web", count=1)], [node("a")]))
    (t,) = live(st, "web")
    st.statuses[t.id] = st.statuses[t.id].replace(state="failed", reason="exit 1")
    p = plan_for(st, 60)
    assert [(r.task, r.reason) for r in p.remove] == [(t.id, "failed: exit 1")]
    assert not p.place  # Nomad's service default: 30s before the slot is placed again
    assert [(m.index, m.tracker["due"]) for m in p.reschedules] == [(0, 90.0)]
    st = apply(st, p, 60)
    assert st.jobs["web"].reschedule["0"]["due"] == 90.0  # in the store: a new leader waits
    p = plan_for(st, 61)
    assert not p.has_changes()
    assert [pe.explanation for pe in p.pending] == [
        f"rescheduling in 29s (failure 1): {t.id} failed: exit 1"]
    p = plan_for(st, 90)
    assert [pl.task.index for pl in p.place] == [0]
    assert p.place[0].reason == f"rescheduled after {t.id} failed: exit 1"
    assert not plan_for(apply(st, p, 90), 91).has_changes()


def test_first_placement_says_new_slot():
    p = plan_for(ClusterState.of([job("web", count=1)], [node("a")]), 1)
    assert [pl.reason for pl in p.place] == ["new slot"]


def test_pending_explains():
    st = ClusterState.of([job("big", count=2, resources={"cpus": 3, "memory": "512M"},
                              constraints={"zone": "a"})],
                         [node("a", zone="a"), node("b", zone="b")])
    p = plan_for(st, 1)
    assert len(p.place) == 1
    assert p.pending[0].explanation == ("no node fits: constraint zone=a: 1 node; "
                                        "cpu: 0 of 1 node has 3 cpus free")
    assert not plan_for(apply(st, p), 2).has_changes()
    assert any("pending slot 1" in line for line in p.describe())


def test_stop_and_remove_job():
    st = converge(ClusterState.of([job("web", count=2)], [node("a")]))
    st.jobs["web"] = st.jobs["web"].replace(stopped=True)
    p = plan_for(st, 70)
    assert len(p.stop) == 2 and all(s.reason == "job stopped" for s in p.stop)
    st = converge(st, 70)
    assert not st.assignments
    st2 = converge(ClusterState.of([job("web", count=1)], [node("a")]))
    del st2.jobs["web"]
    assert [s.reason for s in plan_for(st2, 80).stop] == ["job removed"]


def test_cron_and_parameterized_parents_place_nothing():
    st = ClusterState.of([job("c", kind="cron", schedule="@hourly"),
                          job("p", kind="parameterized")], [node("a")])
    assert not plan_for(st, 1).has_changes()


def test_rolling_update_starts_new_before_stopping_old():
    st = converge(ClusterState.of([job("web", count=3, health={"exec": ["true"]})],
                                  [node("a"), node("b")]))
    old = live(st, "web")
    v1 = st.jobs["web"]
    st.jobs["web"] = v1.replace(spec=v1.spec.replace(image="local/busybox:2"), version=2,
                                previous=v1.spec)
    p = plan_for(st, 200)
    assert len(p.place) == 1 and not p.stop  # parallel 1, start first
    new = p.place[0].task
    assert new.index == 0 and new.version == 2
    assert [(r.old, r.new, r.action) for r in p.rollout] == [(old[0].id, new.id, "start")]
    # new not healthy yet: wait, nothing else changes
    st = run_nodes(apply(st, p, 200), 200, healthy=False)
    p = plan_for(st, 201)
    assert not p.has_changes() and p.rollout[0].action == "wait"
    # healthy: the old one of that slot stops, and the next slot starts
    st = make_healthy(st)
    p = plan_for(st, 203)
    assert [s.task for s in p.stop] == [old[0].id]
    assert [pl.task.index for pl in p.place] == [1]
    st = converge(st, 210)
    assert [a.version for a in live(st, "web")] == [2, 2, 2]
    assert {a.fingerprint for a in live(st, "web")} == {st.jobs["web"].spec.fingerprint()}


def test_rolling_update_parallel_two():
    st = converge(ClusterState.of([job("web", count=4, update={"parallel": 2})],
                                  [node("a"), node("b")]))
    v1 = st.jobs["web"]
    st.jobs["web"] = v1.replace(spec=v1.spec.replace(command=("sleep", "9")), version=2)
    p = plan_for(st, 300)
    assert sorted(pl.task.index for pl in p.place) == [0, 1]


def test_rolling_update_stops_first_without_room():
    st = converge(ClusterState.of([job("web", count=2, ports={"http": {"container": 80,
                                                                        "host": 8080}},
                                       spread=True)], [node("a"), node("b")]))
    v1 = st.jobs["web"]
    st.jobs["web"] = v1.replace(spec=v1.spec.replace(image="x:2"), version=2)
    p = plan_for(st, 400)
    assert not p.place and len(p.stop) == 1
    assert p.rollout[0].action == "stop-first"
    assert "waiting for" in p.pending[0].explanation
    assert not plan_for(apply(st, p, 400), 401).has_changes()
    st = converge(st, 400)
    assert [a.version for a in live(st, "web")] == [2, 2]


def test_rollout_deadline_fails_and_rolls_back():
    st = converge(ClusterState.of([job("web", count=2, update={"deadline": "30s"},
                                       health={"exec": ["true"]})], [node("a")]))
    v1 = st.jobs["web"]
    old_ids = {a.id for a in live(st, "web")}
    st.jobs["web"] = v1.replace(spec=v1.spec.replace(image="bad:2"), version=2,
                                previous=v1.spec)
    st, _ = step(st, 100, healthy=False)
    p = plan_for(st, 120)
    assert not p.failures
    p = plan_for(st, 131)
    assert len(p.failures) == 1 and p.failures[0].rollback
    assert "not healthy within 30s" in p.failures[0].reason
    st = apply(st, p, 131)
    assert st.jobs["web"].version == 3 and st.jobs["web"].spec == v1.spec
    st = converge(st, 140)
    assert {a.id for a in live(st, "web")} == old_ids  # the old tasks stayed, now v3
    assert all(a.version == 3 for a in live(st, "web"))


def test_rollout_failed_task_without_rollback_halts():
    st = converge(ClusterState.of([job("web", count=2, update={"auto_rollback": False},
                                       health={"exec": ["true"]})], [node("a")]))
    v1 = st.jobs["web"]
    st.jobs["web"] = v1.replace(spec=v1.spec.replace(image="bad:2"), version=2)
    st, _ = step(st, 100, healthy=False)
    new = [a for a in live(st, "web") if a.version == 2]
    st.statuses[new[0].id] = st.statuses[new[0].id].replace(state="failed", reason="exit 2")
    p = plan_for(st, 101)
    assert [(f.rollback, f.reason) for f in p.failures] == \
        [(False, f"new task {new[0].id} failed: exit 2")]
    st = apply(st, p, 101)
    assert st.jobs["web"].failed_version == 2
    st = converge(st, 102)
    assert [a.version for a in live(st, "web")] == [1, 1]  # halted, old ones keep serving


def test_rollout_waits_for_the_new_task_to_be_registered_when_endpoints_are_followed():
    st = converge(ClusterState.of([job("web", count=1, ports={"http": {"container": 80}},
                                       health={"exec": ["true"]})], [node("a")]))
    v1 = st.jobs["web"]
    old = live(st, "web")[0]
    st.jobs["web"] = v1.replace(spec=v1.spec.replace(image="x:2"), version=2,
                                previous=v1.spec)
    st, p = step(st, 200)  # the new task runs and is healthy
    new = p.place[0].task
    args = (st.jobs, st.nodes, st.assignments, st.statuses, 201)
    assert [s.task for s in reconcile(*args).stop] == [old.id]  # health alone
    waiting = reconcile(*args, registered={"web": {old.id}})
    assert not waiting.stop and waiting.rollout[0].action == "wait"
    done = reconcile(*args, registered={"web": {old.id, new.id}})
    assert [s.task for s in done.stop] == [old.id]


def test_rollout_new_task_lost_with_its_node_is_placed_again_not_failed():
    st = converge(ClusterState.of([job("web", count=2, spread=True,
                                       health={"exec": ["true"]})],
                                  [node("a"), node("b"), node("c")]))
    v1 = st.jobs["web"]
    st.jobs["web"] = v1.replace(spec=v1.spec.replace(image="x:2"), version=2,
                                previous=v1.spec)
    st, p = step(st, 200, healthy=False)
    new = p.place[0].task
    st.nodes[new.node] = node(new.node, status="down", down_since=200.0)
    p = plan_for(st, 203)
    assert not p.failures and new.id in [lo.task for lo in p.lost]
    again = [pl.task for pl in p.place if pl.task.index == new.index]
    assert again and again[0].node != new.node and again[0].version == 2
    st = converge(run_nodes(apply(st, p, 203), 203), 204)
    assert st.jobs["web"].version == 2
    assert [a.version for a in live(st, "web")] == [2, 2]


def test_rollout_of_a_task_that_fits_nowhere_fails_without_stopping_old_ones():
    st = converge(ClusterState.of([job("web", count=2, health={"exec": ["true"]})],
                                  [node("a"), node("b")]))
    old = {a.id for a in live(st, "web")}
    v1 = st.jobs["web"]
    big = v1.spec.replace(resources=Resources(cpus=64.0, memory=v1.spec.resources.memory))
    st.jobs["web"] = v1.replace(spec=big, version=2, previous=v1.spec)
    p = plan_for(st, 300)
    assert not p.stop and not p.place
    assert len(p.failures) == 1 and p.failures[0].rollback
    assert "cannot be placed" in p.failures[0].reason and "cpu" in p.failures[0].reason
    st = converge(apply(st, p, 300), 301)
    assert st.jobs["web"].version == 3 and st.jobs["web"].spec == v1.spec
    assert {a.id for a in live(st, "web")} == old  # never stopped


def test_unplaceable_rollout_without_rollback_halts_with_old_tasks_serving():
    st = converge(ClusterState.of([job("web", count=2, update={"auto_rollback": False})],
                                  [node("a")]))
    old = {a.id for a in live(st, "web")}
    v1 = st.jobs["web"]
    st.jobs["web"] = v1.replace(spec=v1.spec.replace(constraints=FrozenMap({"zone": "nowhere"})),
                                version=2, previous=v1.spec)
    st = converge(st, 400)
    assert st.jobs["web"].failed_version == 2
    assert {a.id for a in live(st, "web")} == old


def test_plan_round_trips_and_describes():
    st = ClusterState.of([job("web", count=2)], [node("a")])
    p = plan_for(st, 1)
    again = Plan.from_dict(p.to_dict())
    assert again.to_dict() == p.to_dict()
    text = str(p)
    assert text.startswith("job web:") and "+ place web-" in text
    assert str(Plan()) == "no changes"


def _port_bound_web(**update):
    """Two tasks on two nodes, each holding host port 8080: a new task can only start
    where an old one stopped first."""
    return ClusterState.of([job("web", count=2, spread=True,
                                ports={"http": {"container": 80, "host": 8080}},
                                update={"deadline": "30s", **update})],
                           [node("a"), node("b")])


def test_a_version_in_every_slot_is_marked_rolled_out_once():
    st = ClusterState.of([job("web", count=2)], [node("a")])
    st, _ = step(st, 10)
    assert st.jobs["web"].rolled_out == 0  # placed, not yet running
    p = plan_for(st, 11)
    assert [(m.version, m.rolled_out) for m in p.marks] == [(1, True)]
    assert "v1 has a healthy task in every slot" in str(p)
    st = apply(st, p, 11)
    assert st.jobs["web"].rolled_out == 1 and not plan_for(st, 12).has_changes()


def test_a_slot_left_empty_by_a_stop_first_fails_the_rollout_at_its_deadline():
    st = converge(_port_bound_web())
    v1 = st.jobs["web"]
    assert v1.rolled_out == 1
    st.jobs["web"] = v1.replace(spec=v1.spec.replace(image="x:2"), version=2,
                                previous=v1.spec, submitted=390.0, progress=0.0)
    st, p = step(st, 400)  # no room to start first: the old task of slot 0 stops
    assert [r.action for r in p.rollout] == ["stop-first"]
    assert st.jobs["web"].progress == 400.0  # the rollout moved: its deadline restarts
    # Before the replacement is placed, something else takes the freed port.
    st.jobs["aaa-squatter"] = job("aaa-squatter",
                                  ports={"http": {"container": 80, "host": 8080}})
    st, p = step(st, 401)
    assert any(pl.task.job == "aaa-squatter" for pl in p.place)
    assert [pe.index for pe in p.pending if pe.job == "web"] == [0]
    assert not p.failures
    p = plan_for(st, 429)  # still within 30 s of the last progress
    assert not p.failures and p.pending
    p = plan_for(st, 431)
    assert [(f.version, f.rollback) for f in p.failures] == [(2, True)]
    assert "slot 0 has had no task for 30s" in p.failures[0].reason
    assert "port" in p.failures[0].reason  # the scheduler's explanation is kept
    st = apply(st, p, 431)
    assert st.jobs["web"].version == 3 and st.jobs["web"].spec == v1.spec
    assert st.jobs["web"].failure == p.failures[0].reason  # kept for `job status`
    from helios.conductor.views import rollout_progress

    progress = rollout_progress(st, st.jobs["web"])
    assert progress["failed_version"] == 2 and "no task for 30s" in progress["failure"]
    # The rollback is held to the same rule: with the room still gone it fails too and
    # halts, rather than waiting for ever.
    st, p = step(st, 432)
    assert not p.failures
    p = plan_for(st, 463)
    assert [(f.version, f.rollback) for f in p.failures] == [(3, False)]
    st = apply(st, p, 463)
    assert st.jobs["web"].failed_version == 3
    # Once the room is back the job fills its slot again (a halted rollout still
    # replaces what is missing).
    del st.jobs["aaa-squatter"]
    st = converge(st, 470)
    assert len(live(st, "web")) == 2


def test_an_empty_slot_after_a_complete_rollout_is_plain_pending():
    st = converge(_port_bound_web())
    v1 = st.jobs["web"]
    st.jobs["web"] = v1.replace(spec=v1.spec.replace(image="x:2"), version=2,
                                previous=v1.spec, submitted=390.0)
    st = converge(st, 400)
    assert st.jobs["web"].rolled_out == 2
    lost = live(st, "web")[0]
    st.nodes[lost.node] = dataclasses.replace(st.nodes[lost.node], status="down",
                                              down_since=500.0)
    st, p = step(st, 510)
    assert p.lost and not p.failures
    p = plan_for(st, 5000)  # long past any deadline: the slot waits for room, no failure
    assert not p.failures and [pe.index for pe in p.pending] == [lost.index]


def test_a_first_deployment_that_does_not_fit_is_pending_not_failed():
    st = ClusterState.of([job("web", count=3, spread=True, update={"deadline": "30s"},
                              ports={"http": {"container": 80, "host": 8080}})],
                         [node("a"), node("b")])
    st.jobs["web"] = st.jobs["web"].replace(submitted=1.0)
    st = run_nodes(apply(st, plan_for(st, 1), 1), 1)
    p = plan_for(st, 1000)
    assert not p.failures and len(p.pending) == 1


def test_an_automatic_rollback_restores_the_last_version_that_rolled_out():
    from helios.conductor.commands import _rollback_target

    v1 = job("web", count=1)
    s1, s2 = v1.spec, v1.spec.replace(image="x:2")
    assert _rollback_target(v1.replace(rolled_out=1)) == s1
    # v2 still rolling out when v3 arrives: v3's rollback goes to v1, the stable one
    assert _rollback_target(v1.replace(spec=s2, version=2, previous=s1, rolled_out=1)) == s1
    # v2 failed: never a rollback target
    assert _rollback_target(v1.replace(spec=s2, version=2, previous=s1,
                                       failed_version=2)) == s1
    # v2 rolled out: it is the target now
    assert _rollback_target(v1.replace(spec=s2, version=2, previous=s1,
                                       rolled_out=2)) == s2


def test_a_job_created_again_under_its_old_name_gets_new_task_ids():
    first = ClusterState.of([job("web", count=2).replace(created=100.0)], [node("a")])
    again = ClusterState.of([job("web", count=2).replace(created=200.0)], [node("a")])
    ids = [{p.task.id for p in plan_for(st, 300).place} for st in (first, first, again)]
    assert ids[0] == ids[1]  # same input, same plan
    assert not ids[0] & ids[2]


def test_rollout_progress_reports_each_phase_from_the_state():
    from helios.conductor.views import rollout_progress

    st = converge(ClusterState.of([job("web", count=2)], [node("a")]))
    rec = st.jobs["web"]
    assert rollout_progress(st, rec)["state"] == "complete"
    v2 = rec.replace(spec=rec.spec.replace(image="x:2"), version=2, previous=rec.spec)
    st.jobs["web"] = v2
    assert rollout_progress(st, v2)["state"] == "rolling"
    assert rollout_progress(st, v2)["old"] == 2
    assert rollout_progress(st, v2.replace(failed_version=2))["state"] == "failed"
    back = v2.replace(spec=rec.spec, version=3, failed_version=2)
    assert rollout_progress(st, back)["state"] == "rolled back"  # v1's tasks serve v3
    # A version that missed its deadline for lack of room, then ran in every slot: out.
    late = back.replace(failed_version=3)
    assert rollout_progress(st, late)["state"] == "failed"
    assert rollout_progress(st, late.replace(rolled_out=3))["state"] == "complete"
