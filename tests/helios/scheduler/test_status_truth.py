"""`job status` tells the truth (conductor/views.py on cluster states): a stopped job is
not rolling, a lost task is not healthy, a cron or parameterized job lists its runs and
its next launch, a slot waiting after a failure says how long and why."""

from helios.conductor import views
from helios.conductor.plan import ClusterState
from helios.model import Assignment, JobRecord, TaskStatus

from .sim import job, node, spec


def test_stopped_job_is_not_rolling():
    rec = job("web").replace(stopped=True)
    st = ClusterState.of([rec], [node("a")])
    assert views.job_status(st, rec, now=1.0)["rollout"]["state"] == "stopped"


def test_lost_task_is_not_healthy():
    rec = job("web", health={"tcp": {"port": "http"}}, ports={"http": {"container": 80}})
    a = Assignment(id="web-1", job="web", version=1, node="a", fingerprint=rec.spec.fingerprint())
    s = TaskStatus(id="web-1", node="a", job="web", state="lost", healthy=True)
    st = ClusterState.of([rec], [node("a", status="down", down_since=0.0)], [a], [s])
    (row,) = views.job_status(st, rec, now=10.0)["tasks"]
    assert row["state"] == "lost" and row["healthy"] is False


def test_cron_job_lists_runs_and_next_launch():
    tpl = JobRecord(spec("tick", kind="cron", schedule="*/5 * * * *",
                         command=["true"]), 1, created=0.0)
    run = JobRecord(spec("tick-197001010005", kind="batch", command=["true"]), 1,
                    parent="tick", created=300.0)
    st = ClusterState.of([tpl, run], [node("a")])
    doc = views.job_status(st, tpl, now=301.0)
    assert doc["runs"] == [{"name": "tick-197001010005", "status": "pending",
                            "created": 300.0}]
    assert doc["next_launch"] == "1970-01-01T00:10:00Z"
    assert views.job_status(st, tpl.replace(stopped=True), now=301.0)["next_launch"] is None


def test_parameterized_job_lists_runs_without_next_launch():
    tpl = JobRecord(spec("thumb", kind="parameterized", command=["true"]), 1)
    st = ClusterState.of([tpl], [])
    doc = views.job_status(st, tpl, now=1.0)
    assert doc["runs"] == [] and "next_launch" not in doc


def test_reschedule_wait_is_in_status():
    rec = job("web").replace(reschedule={"0": {"version": 1, "task": "web-1@0.0",
                                               "events": [10.0], "due": 40.0,
                                               "reason": "web-1 failed: exit 3"}})
    st = ClusterState.of([rec], [node("a")])
    (w,) = views.job_status(st, rec, now=25.0)["reschedule"]
    assert w == {"index": 0, "until": 40.0, "wait": 15.0, "failures": 1,
                 "reason": "rescheduling in 15s (failure 1): web-1 failed: exit 3"}
    assert views.job_status(st, rec, now=41.0)["reschedule"] == []


def test_versions_say_what_changed_and_which_is_stable():
    from helios.conductor.preview import candidate_record

    v1 = candidate_record(None, spec("web", count=1), 1.0, None)
    v2 = candidate_record(v1.replace(rolled_out=1), spec("web", count=2), 2.0, v1.spec)
    v3 = candidate_record(v2, spec("web", count=2, image="local/other:2"), 3.0, v2.spec)
    rows = views.job_versions(v3.replace(failed_version=3))
    assert [(r["version"], r["current"], r["stable"], r["failed"], r["changes"])
            for r in rows] == [(3, True, False, True, ["image"]),
                               (2, False, False, False, ["count"]),
                               (1, False, True, False, ["created"])]
    assert views.kept_spec(v3, 1)["count"] == 1 and views.kept_spec(v3, 9) is None


def test_inspect_redacts_a_registry_password():
    rec = job("web", registry_auth={"username": "u", "password": "p"})
    out = views.job_inspect(rec)
    assert out["spec"]["registry_auth"] == {"username": "u", "password": "<redacted>"}
