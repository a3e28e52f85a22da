"""Reschedule backoff: the pure rules of conductor/reschedule.py and their place in the
reconciler (a failing slot waits, the wait doubles, attempts run out, the deployment's
deadline ends a version whose tasks keep failing)."""

import pytest

from helios.conductor import views
from helios.conductor.plan import ClusterState, apply
from helios.conductor.reschedule import Tracker, hold, record
from helios.spec import ReschedulePolicy, SpecError, validate

from .sim import job, node, plan_for, run_nodes


def test_delay_doubles_up_to_max_delay_and_forgets_outside_the_window():
    pol = ReschedulePolicy(delay=5, max_delay=20)
    tr = None
    waits = []
    now = 0.0
    for _ in range(5):
        tr = record(pol, tr, 1, "t", "failed", now)
        waits.append(tr.due - now)
        now = tr.due
    assert waits == [5, 10, 20, 20, 20]
    # 100 s later every earlier failure is outside the 20 s window: back to `delay`
    tr = record(pol, tr, 1, "t", "failed", now + 100)
    assert tr.due - (now + 100) == 5


def test_attempts_run_out_within_the_interval_then_come_back():
    pol = ReschedulePolicy(delay=1, max_delay=1, attempts=2, interval=60)
    tr = record(pol, None, 1, "a", "x", 0)
    tr = record(pol, tr, 1, "b", "x", 1)
    tr = record(pol, tr, 1, "c", "x", 2)
    assert tr.due is None
    h = hold(pol, tr, 1, 0, 3)
    assert h is not None and h.until == 60 and "2 attempts within 1m used" in h.explain(3)
    assert hold(pol, tr, 1, 0, 61) is None  # the first attempt left the window


def test_a_new_version_starts_fresh_and_a_lost_task_is_replaced_at_once():
    pol = ReschedulePolicy(delay=10, max_delay=100)
    tr = record(pol, None, 1, "a", "x", 0)
    assert hold(pol, tr, 2, 0, 1) is None
    lost = record(pol, tr, 1, "b", "lost", 20, immediate=True)
    assert lost.due == 20 and len(lost.events) == 2
    after = record(pol, lost, 1, "c", "x", 21)
    assert after.due == 21 + 40  # two earlier failures within the window


def test_tracker_round_trips():
    tr = Tracker(3, "web-1", (1.0, 2.0), None, "why")
    assert Tracker.from_dict(tr.to_dict()) == tr


def test_spec_defaults_and_problems():
    assert validate({"name": "w", "image": "i"}).reschedule == ReschedulePolicy(30, 3600)
    s = validate({"name": "w", "image": "i", "reschedule": {"delay": "2s", "max_delay": "8s",
                                                          "attempts": 3, "interval": "1m"}})
    assert s.reschedule == ReschedulePolicy(2, 8, 3, 60)
    assert validate(s.to_dict()) == s
    batch = validate({"name": "b", "kind": "batch", "image": "i"})
    assert batch.reschedule == ReschedulePolicy(5, 5, 1, 86400)  # Nomad's batch default
    assert validate(batch.to_dict()) == batch
    with pytest.raises(SpecError) as e:
        validate({"name": "w", "image": "i", "reschedule": {"delay": "1m", "max_delay": "1s",
                                                          "attempts": 2}})
    text = str(e.value)
    assert "reschedule.max_delay" in text and "reschedule.interval" in text
    with pytest.raises(SpecError, match="reschedule: does not apply to kind cron"):
        validate({"name": "b", "kind": "cron", "schedule": "@hourly", "image": "i",
                  "reschedule": {}})


def _fail_all(st, now, reason="pull failed: image not found"):
    for a in list(st.assignments.values()):
        s = st.statuses.get(a.id)
        if a.desired == "run" and s is not None and s.state != "failed":
            st.statuses[a.id] = s.replace(state="failed", reason=reason)
    return st


def test_a_task_that_always_fails_is_placed_a_bounded_number_of_times():
    """The issue's pull loop: with the policy, placements in 10 minutes are bounded by
    the delays (2, 4, 8, 8, ...), not by how fast the node reports failures."""
    st = ClusterState.of([job("bad", count=1, reschedule={"delay": "2s", "max_delay": "8s"})],
                         [node("a")])
    placed = 0
    now = 0.0
    while now < 600:
        p = plan_for(st, now)
        placed += len(p.place)
        st = _fail_all(run_nodes(apply(st, p, now), now), now)
        now += 0.25
    assert 600 / 8 - 5 <= placed <= 600 / 8 + 5


def test_failures_end_the_first_deployment_at_its_deadline():
    st = ClusterState.of([job("bad", count=1, update={"deadline": "20s"},
                              reschedule={"delay": "5s", "max_delay": "5s"})], [node("a")])
    st.jobs["bad"] = st.jobs["bad"].replace(submitted=0.0)
    failures = []
    now = 0.0
    while now < 40 and not failures:
        p = plan_for(st, now)
        failures = p.failures
        st = _fail_all(run_nodes(apply(st, p, now), now), now)
        now += 1
    assert failures and 20 < now <= 23
    (f,) = failures
    assert not f.rollback and "not healthy in every slot within 20s" in f.reason
    assert "image not found" in f.reason
    st = apply(st, p, now)
    assert st.jobs["bad"].failed_version == 1


def test_a_failed_batch_task_runs_once_more_after_5s_then_its_slot_is_failed():
    st = ClusterState.of([job("b", kind="batch", count=1)], [node("a")])
    st = run_nodes(apply(st, plan_for(st, 0.0), 0.0), 0.0)
    st = _fail_all(st, 0.0, "exit 3")
    p = plan_for(st, 1.0)
    assert not p.place and [m.tracker["due"] for m in p.reschedules] == [6.0]
    st = apply(st, p, 1.0)
    assert [pe.kind for pe in plan_for(st, 2.0).pending] == ["reschedule"]
    p = plan_for(st, 6.0)
    (placed,) = p.place
    assert placed.reason.startswith("rescheduled after b-") and "exit 3" in placed.reason
    st = _fail_all(run_nodes(apply(st, p, 6.0), 6.0), 6.0, "exit 3")
    p = plan_for(st, 7.0)  # attempts (1 within 24h) used: the slot is done, failed
    assert not p.place and not p.remove and not p.reschedules
    assert views.job_summary_status(apply(st, p, 7.0), st.jobs["b"]) == "failed"
