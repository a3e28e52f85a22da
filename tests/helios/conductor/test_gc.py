"""The pure garbage-collection decisions (helios/conductor/gc.py): when a run is finished,
which finished runs a parent keeps, cascading removal, idempotency keys, node leftovers."""

from __future__ import annotations

import pytest

from helios.conductor.gc import (
    GCPolicy,
    KeyRecord,
    expired_keys,
    node_leftovers,
    orphan_histories,
    plan_runs,
    run_finished_at,
    stale_node_dirs,
    stale_service_dirs,
)
from helios.model import Assignment, JobRecord, NodeInfo, TaskStatus
from helios.spec import validate

UP = {"n1"}
NODES = {"n1": NodeInfo("n1"), "n2": NodeInfo("n2", status="down", down_since=0.0)}


def job(name: str, kind: str = "batch", parent: str | None = None, created: float = 0.0,
        stopped: bool = False, count: int = 1, **fields: object) -> JobRecord:
    spec = validate({"name": name, "kind": kind, "command": ["true"], "count": count,
                     **fields})
    return JobRecord(spec=spec, parent=parent, created=created, stopped=stopped)


def task(tid: str, run: str, index: int = 0, node: str = "n1",
         desired: str = "run") -> Assignment:
    return Assignment(id=tid, job=run, version=1, node=node, index=index, desired=desired)


def status(tid: str, run: str, state: str, node: str = "n1", finished: float | None = None,
           since: float = 0.0) -> TaskStatus:
    return TaskStatus(id=tid, node=node, job=run, state=state, finished=finished,
                      since=since)


# --------------------------------------------------------------------------- finished


def test_a_run_is_finished_once_every_slot_exited_or_failed():
    run = job("t-1", parent="t", count=2, created=5.0)
    a, b = task("t-1-a", "t-1", 0), task("t-1-b", "t-1", 1)
    one = [status("t-1-a", "t-1", "exited", finished=20.0)]
    assert run_finished_at(run, [a, b], [*one, status("t-1-b", "t-1", "running")], UP) \
        is None
    both = [*one, status("t-1-b", "t-1", "failed", finished=30.0)]
    assert run_finished_at(run, [a, b], both, UP) == 30.0


def test_a_task_placed_but_not_reported_keeps_its_run_going_while_its_node_is_up():
    run = job("t-1", parent="t", stopped=True, created=5.0)
    assert run_finished_at(run, [task("x", "t-1", node="n1")], [], UP) is None
    # on a node that is down nothing is known to run: the reconciler handles that task
    assert run_finished_at(run, [task("x", "t-1", node="n2")], [], UP) == 5.0


def test_a_stopped_run_is_finished_when_none_of_its_tasks_is_active():
    run = job("t-1", parent="t", stopped=True, created=5.0, count=3)
    assert run_finished_at(run, [], [], UP) == 5.0  # unknown end: its creation
    stopping = [status("x", "t-1", "stopping")]
    assert run_finished_at(run, [task("x", "t-1")], stopping, UP) is None
    stopped = [status("x", "t-1", "stopped", since=40.0)]
    assert run_finished_at(run, [task("x", "t-1", desired="stop")], stopped, UP) == 40.0


def test_an_orphan_copy_still_running_keeps_the_run_going_and_a_lost_one_does_not():
    run = job("t-1", parent="t", created=5.0)
    done = [task("a", "t-1")], [status("a", "t-1", "exited", finished=9.0)]
    assert run_finished_at(run, done[0], [*done[1], status("b", "t-1", "running", "n2")],
                           UP) is None
    assert run_finished_at(run, done[0], [*done[1], status("b", "t-1", "lost", "n2")],
                           UP) == 9.0


def test_a_status_on_another_node_than_its_assignment_does_not_finish_the_slot():
    run = job("t-1", parent="t")
    assert run_finished_at(run, [task("a", "t-1", node="n1")],
                           [status("a", "t-1", "exited", node="n2")], UP) is None


# --------------------------------------------------------------------------- runs


def cluster(*runs: tuple[JobRecord, str]) -> tuple[dict, dict, dict]:
    """Jobs, assignments, statuses for runs given with their one task's state."""
    jobs: dict[str, JobRecord] = {}
    assigns: dict[str, Assignment] = {}
    stats: dict[str, TaskStatus] = {}
    for rec, state in runs:
        jobs[rec.name] = rec
        tid = f"{rec.name}-0"
        assigns[tid] = task(tid, rec.name)
        stats[tid] = status(tid, rec.name, state, finished=rec.created + 1)
    return jobs, assigns, stats


def test_keep_the_newest_finished_runs_per_parent():
    tmpl = job("t", "cron", schedule="* * * * *")
    other = job("u", "parameterized")
    runs = [(job(f"t-{i}", parent="t", created=100.0 + i), "exited") for i in range(5)]
    runs.append((job("t-9", parent="t", created=50.0), "running"))  # oldest, going
    runs += [(job(f"u-{i}", parent="u", created=100.0 + i), "failed") for i in range(2)]
    jobs, assigns, stats = cluster(*runs)
    jobs.update(t=tmpl, u=other, plain=job("plain"))
    out = plan_runs(jobs, assigns, stats, NODES, now=200.0, policy=GCPolicy(keep_runs=2))
    assert [c.run for c in out.collect] == ["t-0", "t-1", "t-2"]  # oldest first
    assert {c.parent for c in out.collect} == {"t"}
    assert "keep 2" in out.collect[0].reason
    assert out.stop == []
    assert list(out.by_parent()) == ["t"]


def test_finished_runs_older_than_the_retention_go_whatever_the_count():
    jobs, assigns, stats = cluster(
        (job("t-old", parent="t", created=0.0), "exited"),       # finished at 1
        (job("t-new", parent="t", created=90.0), "exited"),      # finished at 91
        (job("t-going", parent="t", created=10.0), "running"))
    jobs["t"] = job("t", "cron", schedule="* * * * *")
    policy = GCPolicy(keep_runs=10, run_retention=60.0)
    out = plan_runs(jobs, assigns, stats, NODES, now=100.0, policy=policy)
    assert [c.run for c in out.collect] == ["t-old"]
    assert "retention" in out.collect[0].reason
    # measured from the end, not the creation: t-new finished 9 s ago
    out = plan_runs(jobs, assigns, stats, NODES, now=151.0, policy=policy)
    assert [c.run for c in out.collect] == ["t-old", "t-new"]


def test_running_runs_are_never_collected():
    jobs, assigns, stats = cluster(*[(job(f"t-{i}", parent="t", created=float(i)),
                                      "running") for i in range(4)])
    jobs["t"] = job("t", "cron", schedule="* * * * *")
    out = plan_runs(jobs, assigns, stats, NODES, now=1e9,
                    policy=GCPolicy(keep_runs=0, run_retention=0.0))
    assert not out


def test_runs_of_a_removed_parent_are_stopped_then_collected():
    jobs, assigns, stats = cluster((job("gone-1", parent="gone"), "exited"),
                                   (job("gone-2", parent="gone"), "running"),
                                   (job("gone-3", parent="gone", stopped=True), "stopping"))
    out = plan_runs(jobs, assigns, stats, NODES, now=10.0, policy=GCPolicy(keep_runs=50))
    assert [c.run for c in out.collect] == ["gone-1"]
    assert "parent was removed" in out.collect[0].reason
    assert out.stop == ["gone-2"]  # gone-3 is stopped already, and still stopping


def test_a_pass_is_bounded_oldest_first():
    runs = [(job(f"t-{i:03}", parent="t", created=float(i)), "exited") for i in range(30)]
    jobs, assigns, stats = cluster(*runs)
    jobs["t"] = job("t", "cron", schedule="* * * * *")
    out = plan_runs(jobs, assigns, stats, NODES, now=100.0,
                    policy=GCPolicy(keep_runs=0, max_runs_per_pass=7))
    assert [c.run for c in out.collect] == [f"t-{i:03}" for i in range(7)]


def test_policy_refuses_nonsense():
    with pytest.raises(ValueError):
        GCPolicy(keep_runs=-1)
    with pytest.raises(ValueError):
        GCPolicy(run_retention=-1.0)
    with pytest.raises(ValueError):
        GCPolicy(max_runs_per_pass=0)
    assert GCPolicy(key_ttl=1.0).key_sweep_interval == 0.5
    assert GCPolicy().key_sweep_interval == 60.0


# --------------------------------------------------------------------------- keys


def test_a_key_goes_only_after_its_ttl_and_once_its_run_is_gone():
    keys = [KeyRecord("/dispatch/d/a", "d", "d-aaaa", created=0.0),
            KeyRecord("/dispatch/d/b", "d", "d-bbbb", created=0.0),
            KeyRecord("/dispatch/d/c", "d", "d-cccc", created=95.0),
            KeyRecord("/dispatch/d/z", "d", None, created=-5.0)]
    policy = GCPolicy(key_ttl=10.0)
    out = expired_keys(keys, {"d-aaaa"}, now=100.0, policy=policy)
    assert [k.path for k in out] == ["/dispatch/d/z", "/dispatch/d/b"]  # oldest first
    assert expired_keys(keys, set(), now=5.0, policy=policy) == [keys[3]]
    bounded = expired_keys(keys, set(), now=1000.0,
                           policy=GCPolicy(key_ttl=10.0, max_keys_per_pass=2))
    assert len(bounded) == 2


# --------------------------------------------------------------------------- nodes


def test_node_leftovers_children_first_and_finished_batch_records_kept():
    out = node_leftovers("n1", node_children=["up"], assignment_children=["a", "b"],
                         status_children=["a", "b", "c"], keep={"b"})
    assert out == ["/nodes/n1/up", "/nodes/n1",
                   "/assignments/n1/a", "/status/n1/a", "/status/n1/c"]
    everything = node_leftovers("n1", node_children=[], assignment_children=[],
                                status_children=None)
    assert everything == ["/nodes/n1", "/assignments/n1"]


def test_stale_node_dirs_are_those_of_unknown_unused_nodes():
    dirs = {"/assignments/gone", "/status/gone", "/assignments/n1", "/status/used",
            "/history/gone", "/jobs"}
    assert stale_node_dirs(dirs, known={"n1"}, used={"used"}) == \
        ["/assignments/gone", "/status/gone"]


def test_a_removed_jobs_history_goes_after_the_retention():
    policy = GCPolicy(run_retention=60.0, max_runs_per_pass=2)
    absent: dict[str, float] = {}
    names = ["gone-a", "gone-b", "gone-c", "live"]
    assert orphan_histories(names, {"live"}, absent, 100.0, policy) == []
    assert set(absent) == {"gone-a", "gone-b", "gone-c"}
    assert orphan_histories(names, {"live"}, absent, 159.0, policy) == []
    # created again in the meantime: its clock stops
    assert orphan_histories(names, {"live", "gone-b"}, absent, 161.0, policy) == [
        "gone-a", "gone-c"]
    assert "gone-b" not in absent
    # bounded per pass; a history deleted meanwhile is forgotten
    assert orphan_histories(["gone-a"], set(), absent, 162.0, policy) == ["gone-a"]
    assert set(absent) == {"gone-a"}


def test_stale_service_dirs_are_those_no_assignment_needs():
    dirs = {"/services", "/services/web", "/services/web/n1", "/services/web/n2",
            "/services/gone", "/services/gone/n1", "/assignments/n1"}
    used = {("web", "n1")}
    assert stale_service_dirs(dirs, used, jobs={"web"}) == \
        ["/services/gone/n1", "/services/gone", "/services/web/n2"]
    # a removed job keeps its directory while one of its nodes still has a task of it
    assert stale_service_dirs(dirs, {("gone", "n1")}, jobs=set()) == \
        ["/services/web/n1", "/services/web/n2", "/services/web"]
