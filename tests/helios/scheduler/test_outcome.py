"""`--wait` verdicts (helios/outcome.py) on `job status --json` documents, and the
`job plan` / `job run` preview (conductor/preview.py) on cluster states."""

from helios.conductor.plan import ClusterState, apply
from helios.conductor.preview import candidate_record, placement_problems, preview
from helios.conductor.reconcile import reconcile
from helios.model import TaskStatus
from helios.outcome import Outcome, judge, placement_warning

from .sim import job, node, spec


def doc(**kw):
    base = {"name": "web", "kind": "service", "version": 1, "tasks": [], "status": "deploying",
            "pending": [], "rollout": {"state": "rolling", "failed_version": None}}
    return base | kw


def test_service_is_done_when_running():
    assert judge(doc(), "service", 1) == Outcome(False)
    ok = judge(doc(status="running"), "service", 1)
    assert ok.done and ok.error is None


def test_failed_and_rolled_back_rollouts_are_errors():
    rb = judge(doc(version=3, status="running",
                   rollout={"state": "rolled back", "failed_version": 2,
                            "failure": "new task web-1 failed: exit 3"}), "service", 2)
    assert rb.error == ("job web: rollout of v2 failed: new task web-1 failed: exit 3; "
                        "rolled back (now v3)")
    # an older failure is not this version's
    old = judge(doc(version=3, status="running",
                    rollout={"state": "complete", "failed_version": 2}), "service", 3)
    assert old.done and old.error is None


def test_unplaceable_and_rescheduling_slots_are_errors():
    un = judge(doc(pending=[{"index": 0, "kind": "placement",
                             "reason": "no node has 64 cpus free"}]), "service", 1)
    assert un.error == "job web: 1 task cannot be placed: no node has 64 cpus free"
    waiting = judge(doc(pending=[{"index": 0, "kind": "waiting", "reason": "x"}]),
                    "service", 1)
    assert waiting.error is None and not waiting.done
    rs = judge(doc(reschedule=[{"index": 1, "reason": "rescheduling in 30s (failure 1): "
                                "web-1 failed: pull failed"}]), "service", 1)
    assert rs.error == "job web: slot 1 rescheduling in 30s (failure 1): web-1 failed: pull failed"


def test_batch_verdicts():
    assert judge(doc(kind="batch", status="complete"), "batch", 1).error is None
    bad = judge(doc(kind="batch", status="failed", tasks=[{"state": "failed"}]), "batch", 1)
    assert bad.error == "job web failed: 1 task(s) failed (see `helios job history web`)"
    assert not judge(doc(kind="batch", status="running"), "batch", 1).done


def test_placement_warning_text():
    assert placement_warning("w", [], []) is None
    assert placement_warning("w", [{"reason": "r"}, {"reason": "r"}], []) == \
        "job w: 2 tasks cannot be placed: r"
    assert placement_warning("w", [], ["why"]) == "job w: why"


def test_plan_shows_placements_and_changes_nothing():
    st = ClusterState.of([], [node("a", cpus=1.0)])
    rec = candidate_record(None, spec("web", count=3, resources={"cpus": 0.5}), 10.0, None)
    out = preview(st, rec, 10.0, 2.0)
    assert out["version"] == 1 and "count" in out["changes"]
    assert [p["node"] for p in out["place"]] == ["a", "a"]
    assert len(out["unplaced"]) == 1 and "cpu" in out["unplaced"][0]["reason"].lower()
    assert st.jobs == {} and st.assignments == {}
    assert candidate_record(rec, rec.spec, 11.0, None) is None


def test_run_preview_names_unplaced_slots_of_that_job_only():
    st = ClusterState.of([job("big", resources={"cpus": 9}), job("ok")], [node("a")])
    plan = reconcile(st.jobs, st.nodes, st.assignments, st.statuses, 1.0)
    assert placement_problems(plan, "ok") == {"unplaced": [], "failures": []}
    assert len(placement_problems(plan, "big")["unplaced"]) == 1
    st = apply(st, plan, 1.0)
    # an update that fits on no node fails its rollout at once, which `job run` reports
    st.jobs["ok"] = st.jobs["ok"].replace(rolled_out=1)
    for a in st.assignments.values():
        st.statuses[a.id] = TaskStatus(id=a.id, node=a.node, job=a.job, state="running")
    new = candidate_record(st.jobs["ok"], spec("ok", image="local/other:2",
                                                resources={"cpus": 9}), 2.0, st.jobs["ok"].spec)
    out = preview(st, new, 2.0, 2.0, old=st.jobs["ok"].spec)
    assert out["failures"] and "cannot be placed" in out["failures"][0]
    assert set(out["changes"]) == {"image", "resources"}


def test_logs_problem_names_what_is_left_out():
    from helios.cli import logs_problem

    assert logs_problem("w", {"lines": ["x"], "missing": [], "tasks": 2}) is None
    assert logs_problem("w", {"lines": [], "missing": [], "tasks": 0}).startswith(
        "job w has no tasks")
    text = logs_problem("w", {"lines": ["x"], "tasks": 3, "missing": [
        {"task": "w-1", "node": "n2", "reason": "node n2 is down"}]})
    assert text == "logs of job w incomplete: 1 of 3 task(s) left out (w-1: node n2 is down)"


def test_an_unplaceable_task_is_a_transient_failure():
    v = judge(doc(pending=[{"index": 0, "kind": "placement", "reason": "r"}]), "service", 1)
    assert v.transient and v.error
    assert not judge(doc(rollout={"failed_version": 1, "failure": "x"}), "service", 1).transient
