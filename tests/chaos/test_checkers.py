"""The soak's checkers on hand-written histories: a clean one passes every checker, and
each invariant has a history that breaks it and is caught (so a green soak means the
checkers looked, not that they cannot fail)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.chaos import checkers as ck

Ev = dict[str, Any]


def task(i: str, node: str, state: str = "running", healthy: bool | None = True) -> Ev:
    return {"id": i, "node": node, "state": state, "healthy": healthy}


def cont(cid: str, task_id: str, job: str, node: str) -> Ev:
    return {"id": cid, "task": task_id, "job": job, "node": node}


def cron_ev(tick: str, state: str = "cron fired", run: str | None = None,
            missed: int = 0) -> Ev:
    return {"state": state, "tick": f"2026-12-01T10:00:{tick}Z", "missed": missed,
            "run": run if state == "cron fired" else None}


EXITED = [{"state": "running"}, {"state": "exited", "exit_code": 0}]


def clean() -> list[Ev]:
    """A soak where everything went right: one service rolled from a to b across a
    leader kill, a batch job, a cron job (one tick missed while no leader), a keyed
    dispatch retried once and an unkeyed one."""
    return [
        {"t": 0.0, "type": "op", "id": 1, "op": "job_run", "phase": "invoke",
         "job": "web", "kind": "service", "count": 2, "value": "a"},
        {"t": 0.5, "type": "op", "id": 1, "op": "job_run", "phase": "ok", "job": "web",
         "version": 1},
        {"t": 0.6, "type": "op", "id": 2, "op": "job_run", "phase": "invoke",
         "job": "tick", "kind": "cron", "count": 1, "period": 1},
        {"t": 0.7, "type": "op", "id": 2, "op": "job_run", "phase": "ok", "job": "tick",
         "version": 1},
        {"t": 0.8, "type": "op", "id": 3, "op": "job_run", "phase": "invoke",
         "job": "once", "kind": "batch", "count": 1},
        {"t": 0.9, "type": "op", "id": 3, "op": "job_run", "phase": "ok", "job": "once",
         "version": 1},
        {"t": 1.0, "type": "obs", "what": "epoch", "epoch": 1},
        {"t": 1.0, "type": "obs", "what": "leader", "name": "c1", "epoch": 1},
        {"t": 1.1, "type": "obs", "what": "status", "job": "web", "version": 1,
         "tasks": [task("w1", "n1"), task("w2", "n2")]},
        {"t": 1.2, "type": "obs", "what": "containers",
         "running": [cont("c-1", "w1", "web", "n1"), cont("c-2", "w2", "web", "n2")]},
        {"t": 1.3, "type": "obs", "what": "converged", "value": True},
        {"t": 2.0, "type": "fault", "fault": 1, "kind": "kill-leader", "target": "c1",
         "phase": "start"},
        {"t": 2.5, "type": "op", "id": 4, "op": "dispatch", "phase": "invoke",
         "job": "thumb", "key": "k1"},
        {"t": 3.0, "type": "op", "id": 4, "op": "dispatch", "phase": "info",
         "job": "thumb", "key": "k1", "error": "timeout"},
        {"t": 4.0, "type": "fault", "fault": 1, "kind": "kill-leader", "target": "c1",
         "phase": "heal"},
        {"t": 4.5, "type": "obs", "what": "epoch", "epoch": 2},
        {"t": 4.5, "type": "obs", "what": "leader", "name": "c2", "epoch": 2},
        {"t": 4.6, "type": "op", "id": 5, "op": "dispatch", "phase": "invoke",
         "job": "thumb", "key": "k1"},
        {"t": 4.7, "type": "op", "id": 5, "op": "dispatch", "phase": "ok", "job": "thumb",
         "key": "k1", "run": "thumb-aa", "created": True},
        {"t": 4.8, "type": "op", "id": 6, "op": "dispatch", "phase": "ok", "job": "thumb",
         "key": None, "run": "thumb-bb", "created": True},
        {"t": 5.0, "type": "op", "id": 7, "op": "job_run", "phase": "invoke",
         "job": "web", "kind": "service", "count": 2, "value": "b"},
        {"t": 5.2, "type": "op", "id": 7, "op": "job_run", "phase": "ok", "job": "web",
         "version": 2},
        {"t": 6.0, "type": "obs", "what": "requests", "job": "web", "ok": 50,
         "failed": ["t=3 w1: refused"]},
        {"t": 7.0, "type": "obs", "what": "converged", "value": True},
        {"t": 8.0, "type": "final", "what": "status", "job": "web", "version": 2,
         "tasks": [task("w3", "n1"), task("w4", "n3"), task("w1", "n1", "stopped", None)]},
        {"t": 8.0, "type": "final", "what": "status", "job": "once", "version": 1,
         "status": "complete", "tasks": [task("o1", "n2", "exited", None)]},
        {"t": 8.0, "type": "final", "what": "status", "job": "tick", "version": 1,
         "status": "template", "tasks": []},
        {"t": 8.1, "type": "final", "what": "containers",
         "running": [cont("c-3", "w3", "web", "n1"), cont("c-4", "w4", "web", "n3")]},
        {"t": 8.2, "type": "final", "what": "history", "job": "tick", "events": [
            cron_ev("01", run="tick-1"), cron_ev("02", "cron skipped"),
            cron_ev("05", run="tick-5", missed=2)]},
        {"t": 8.2, "type": "final", "what": "history", "job": "tick-1", "events": EXITED},
        {"t": 8.2, "type": "final", "what": "history", "job": "tick-5", "events": EXITED},
        {"t": 8.2, "type": "final", "what": "history", "job": "thumb-aa", "events": EXITED},
        {"t": 8.2, "type": "final", "what": "history", "job": "thumb-bb", "events": EXITED},
        {"t": 8.3, "type": "final", "what": "served", "job": "web", "bodies": {"b": 40}},
    ]


def test_a_clean_history_passes_every_checker() -> None:
    h = clean()
    assert ck.check_all(h) == []
    f = ck.figures(h)
    assert f["faults"] == {"kill-leader": 1}
    assert f["recovery"]["kill-leader"]["p50"] == pytest.approx(5.0)  # 2.0 -> 7.0
    assert f["requests"] == {"web": {"ok": 50, "failed": 1}}
    assert f["cron"] == {"fired": 2, "skipped": 1, "missed": 2, "double": 0}
    assert (f["lost_tasks"], f["duplicates_after_convergence"], f["double_cron_fires"],
            f["lost_acknowledged_writes"]) == (0, 0, 0, 0)


def edit(fn: Any) -> list[Ev]:
    h = copy.deepcopy(clean())
    fn(h)
    return h


def final(h: list[Ev], what: str, job: str | None = None) -> Ev:
    return next(e for e in h if e["type"] == "final" and e["what"] == what
                and (job is None or e.get("job") == job))


def _short(h: list[Ev]) -> None:
    final(h, "status", "web")["tasks"][1]["state"] = "pending"


def _old_version(h: list[Ev]) -> None:
    final(h, "status", "web")["version"] = 1


def _dup_container(h: list[Ev]) -> None:
    final(h, "containers")["running"].append(cont("c-5", "w3", "web", "n2"))


def _orphan(h: list[Ev]) -> None:
    final(h, "containers")["running"][1] = cont("c-9", "w1", "web", "n1")


def _two_nodes_status(h: list[Ev]) -> None:
    h.insert(12, {"t": 2.1, "type": "obs", "what": "status", "job": "web", "version": 1,
                  "tasks": [task("w1", "n2"), task("w2", "n2")]})


def _two_nodes_containers(h: list[Ev]) -> None:
    h.insert(12, {"t": 2.1, "type": "obs", "what": "containers",
                  "running": [cont("c-1", "w1", "web", "n1"), cont("c-7", "w1", "web", "n2")]})


def _epoch_down(h: list[Ev]) -> None:
    h.insert(17, {"t": 4.6, "type": "obs", "what": "epoch", "epoch": 1})


def _epoch_two_leaders(h: list[Ev]) -> None:
    h.insert(17, {"t": 4.6, "type": "obs", "what": "leader", "name": "c1", "epoch": 2})


def _cron_twice(h: list[Ev]) -> None:
    final(h, "history", "tick")["events"].append(cron_ev("05", run="tick-5b"))
    h.append({"t": 8.2, "type": "final", "what": "history", "job": "tick-5b",
              "events": EXITED})


def _cron_unaccounted(h: list[Ev]) -> None:
    final(h, "history", "tick")["events"][2]["missed"] = 0


def _cron_run_never_ran(h: list[Ev]) -> None:
    final(h, "history", "tick-5")["events"] = [{"state": "lost"}]


def _key_two_runs(h: list[Ev]) -> None:
    h.append({"t": 7.5, "type": "op", "id": 9, "op": "dispatch", "phase": "ok",
              "job": "thumb", "key": "k1", "run": "thumb-cc", "created": True})
    h.append({"t": 8.2, "type": "final", "what": "history", "job": "thumb-cc",
              "events": EXITED})


def _dispatch_never_ran(h: list[Ev]) -> None:
    final(h, "history", "thumb-bb")["events"] = []


def _write_lost(h: list[Ev]) -> None:
    final(h, "served", "web")["bodies"] = {"a": 40}


def _batch_lost(h: list[Ev]) -> None:
    h.remove(final(h, "status", "once"))


def _batch_unfinished(h: list[Ev]) -> None:
    final(h, "status", "once")["status"] = "deploying"


@pytest.mark.parametrize(("breaks", "checker", "needle"), [
    (_short, "convergence", "1 running of 2"),
    (_old_version, "convergence", "older than acknowledged 2"),
    (_dup_container, "duplicates", "w3 runs in 2 containers"),
    (_orphan, "orphans", "no owner"),
    (_two_nodes_status, "single-node", "reported on n1 and on n2"),
    (_two_nodes_containers, "single-node", "running in 2 containers"),
    (_epoch_down, "epoch", "down to 1"),
    (_epoch_two_leaders, "epoch", "led by both c2 and c1"),
    (_cron_twice, "cron", "consumed 2 times"),
    (_cron_unaccounted, "cron", "says 0 missed"),
    (_cron_run_never_ran, "cron", "tick-5 never exited"),
    (_key_two_runs, "dispatch", "2 runs"),
    (_dispatch_never_ran, "dispatch", "thumb-bb never exited"),
    (_write_lost, "acked-writes", "acknowledged 'b'"),
    (_batch_lost, "acked-writes", "gone at the end"),
    (_batch_unfinished, "acked-writes", "not complete"),
])
def test_each_broken_invariant_is_caught(breaks: Any, checker: str, needle: str) -> None:
    found = ck.check_all(edit(breaks))
    assert any(v.checker == checker and needle in v.message for v in found), found


def test_an_indeterminate_write_after_the_last_ack_may_be_what_is_served() -> None:
    def late_info(h: list[Ev]) -> None:
        h.append({"t": 7.6, "type": "op", "id": 8, "op": "job_run", "phase": "invoke",
                  "job": "web", "kind": "service", "count": 2, "value": "c"})
        h.append({"t": 7.7, "type": "op", "id": 8, "op": "job_run", "phase": "info",
                  "job": "web", "error": "timeout"})
        final(h, "served", "web")["bodies"] = {"c": 10}

    assert ck.check_all(edit(late_info), only=["acked-writes"]) == []


def test_figures_count_what_broke() -> None:
    def broken(h: list[Ev]) -> None:
        _cron_twice(h)
        _write_lost(h)
        _dup_container(h)

    f = ck.figures(edit(broken))
    assert f["double_cron_fires"] == 1
    assert f["lost_acknowledged_writes"] == 1
    assert f["duplicates_after_convergence"] >= 1
    assert f["violations"]


def test_a_run_seen_complete_before_it_was_collected_ran() -> None:
    def collected(h: list[Ev]) -> None:
        final(h, "history", "tick-5")["events"] = []  # collected with its history
        h.insert(-3, {"t": 7.1, "type": "obs", "what": "jobs",
                      "jobs": {"tick-5": "complete", "tick-1": "failed"}})

    assert ck.check_all(edit(collected), only=["cron"]) == []
    h = edit(collected)
    final(h, "history", "tick-1")["events"] = []
    assert [v.message for v in ck.check_all(h, only=["cron"])] == \
        ["tick: fired run tick-1 never exited 0"]


def test_cron_ticks_read_during_the_soak_are_merged_with_the_final_read() -> None:
    """A job keeps only its newest history batches: ticks trimmed before the end were
    read earlier, and count; the same event read twice counts once."""
    def trimmed(h: list[Ev]) -> None:
        ev = final(h, "history", "tick")["events"]
        h.insert(-3, {"t": 7.0, "type": "obs", "what": "history", "job": "tick",
                      "events": ev[:2]})
        final(h, "history", "tick")["events"] = ev[1:]

    assert ck.check_all(edit(trimmed), only=["cron"]) == []
    assert ck.cron_counts(edit(trimmed))["fired"] == 2

    def trimmed_twice(h: list[Ev]) -> None:
        trimmed(h)
        h.insert(-3, {"t": 7.2, "type": "obs", "what": "history", "job": "tick",
                      "events": [dict(cron_ev("01", run="tick-1b"), time=1.0)]})

    found = ck.check_all(edit(trimmed_twice), only=["cron"])
    assert any("consumed 2 times" in v.message for v in found), found


def test_recovery_of_a_fault_that_never_healed_counts_to_the_end() -> None:
    h = [{"t": 0.0, "type": "obs", "what": "converged", "value": True},
         {"t": 1.0, "type": "fault", "fault": 1, "kind": "stop-node", "target": "n1",
          "phase": "start"},
         {"t": 9.0, "type": "obs", "what": "converged", "value": False}]
    assert ck.recovery_times(h) == {"stop-node": [8.0]}
    assert ck.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert ck.percentile([1.0, 2.0, 3.0, 100.0], 99) == 100.0


def drained(h: list[Ev], *, stuck: bool = False) -> None:
    """A drain of n1 (its leader killed on the way) that completed at t=2.6 and ended
    (n1 enabled again) at t=7.4: between them n1 runs nothing of web."""
    h += [{"t": 2.2, "type": "fault", "fault": 2, "kind": "drain", "target": "n1",
           "phase": "start", "hold": 2.0},
          {"t": 2.3, "type": "fault", "fault": 2, "kind": "drain", "target": "c2",
           "phase": "leader-kill"},
          {"t": 2.6, "type": "fault", "fault": 2, "kind": "drain", "target": "n1",
           "phase": "stuck" if stuck else "drained"},
          {"t": 6.5, "type": "obs", "what": "status", "job": "web", "version": 2,
           "tasks": [task("w4", "n3"), task("w5", "n2"), task("w3", "n1", "stopped")]},
          {"t": 6.6, "type": "obs", "what": "containers",
           "running": [cont("c-4", "w4", "web", "n3"), cont("c-5", "w5", "web", "n2")]},
          {"t": 7.4, "type": "fault", "fault": 2, "kind": "drain", "target": "n1",
           "phase": "heal"}]
    h.sort(key=lambda e: e["t"])


def test_a_drain_that_emptied_its_node_passes_and_is_counted() -> None:
    h = edit(drained)
    assert ck.check_all(h, only=["drain"]) == []
    f = ck.figures(h)
    assert f["drains"] == {"started": 1, "drained": 1, "seconds": [0.4],
                           "leader_kills": 1,
                           "failed_requests_during": 1}  # the request at t=6.0
    assert f["rolls_during_faults"] == 1  # web to "b" at t=5.0, during the drain


def test_a_drained_node_still_running_a_service_task_is_caught() -> None:
    def task_left(h: list[Ev]) -> None:
        drained(h)
        st = next(e for e in h if e["type"] == "obs" and e["what"] == "status"
                  and e["t"] == 6.5)
        st["tasks"][2]["state"] = "running"

    def container_left(h: list[Ev]) -> None:
        drained(h)
        c = next(e for e in h if e["type"] == "obs" and e["what"] == "containers"
                 and e["t"] == 6.6)
        c["running"].append(cont("c-3", "w3", "web", "n1"))

    for breaks, needle in [(task_left, "w3@n1:running on drained n1"),
                           (container_left, "containers of ['web'] run on drained n1")]:
        found = ck.check_all(edit(breaks), only=["drain"])
        assert any(needle in v.message for v in found), found
    found = ck.check_all(edit(lambda h: drained(h, stuck=True)), only=["drain"])
    assert [v.message for v in found] == ["fault 2: the drain of n1 did not complete"]
