"""Issue 6 against real services: `helios conductor` / `helios node` subprocesses, a real
ZooKeeper, real Docker containers (the process runtime where only the control plane is
under test: cron and dispatch).

- a rolling update of a 3-task http service, with a client that follows the healthy
  endpoints through ZooKeeper and keeps requesting: no request fails; then an update
  whose health check never passes rolls back by itself while the old tasks keep serving;
- the leader conductor SIGKILLed mid-rollout: the new leader completes it, each slot
  replaced exactly once, and the client still sees no failure;
- a seconds-resolution cron job across a leader kill fires each tick at most once, and
  every tick it did not fire is accounted for by the catch_up rule; a dispatch with the
  same idempotency key through the CLI, before and after that kill, gives one run;
- a batch task whose node dies mid-run (daemon SIGKILLed, container removed) finishes on
  another node, with exit code and timing in its history.

Each test uses its own ZooKeeper root, node names, ports and container labels, and stops
every process it started by PID. No assertion is about speed (see bench/rollout_bench.py).
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.common import free_port, unique_name
from tests.fixtures.docker import TEST_LABEL, docker_cli
from tests.integration.procs import (
    Proc,
    current_leader,
    eventually,
    helios,
    helios_json,
    processes,
    write_job,
)
from tests.integration.test_cluster import conductor, containers, diag, node
from tests.integration.traffic import ServiceClient

pytestmark = [pytest.mark.zookeeper, pytest.mark.slow]
docker = pytest.mark.docker

#: serves its version (env V) as the page, so the client sees which version answered
SERVE = ["sh", "-c", "mkdir -p /tmp/www && echo $V > /tmp/www/index.html"
         " && exec httpd -f -p 8080 -h /tmp/www"]


def web(name: str, image: str, version: str, *, command: list[str] | None = None,
        deadline: str = "60s", parallel: int = 1, count: int = 3) -> dict[str, Any]:
    return {"name": name, "kind": "service", "image": image,
            "command": command or SERVE, "env": {"V": version}, "count": count,
            "resources": {"cpus": 0.25, "memory": "16M"},
            "ports": {"http": {"container": 8080}}, "grace": "1s",
            "health": {"http": {"port": "http", "path": "/"}, "interval": "1s",
                       "timeout": "1s"},
            "update": {"parallel": parallel, "deadline": deadline, "auto_rollback": True}}


def status(job: str, zk: str) -> dict[str, Any]:
    return helios_json("job", "status", job, "--zk", zk)


def history(job: str, zk: str) -> list[dict[str, Any]]:
    return helios_json("job", "history", job, "--zk", zk)


def up_nodes(zk: str, n: int) -> bool:
    return len([x for x in helios_json("nodes", "--zk", zk) if x["status"] == "up"]) == n


def start_cluster(procs: list[Proc], zk: str, tmp: Path, labels: dict[str, str],
                  nodes: int = 2, cpus: str = "2") -> dict[str, Proc]:
    """Conductor `c1` and `nodes` docker nodes, all up; returns the nodes by name."""
    procs.append(conductor("c1", zk, tmp))
    started = {n: node(n, zk, tmp, labels, cpus=cpus)
               for n in (unique_name("n") for _ in range(nodes))}
    procs.extend(started.values())
    eventually(lambda: up_nodes(zk, nodes), 60, f"{nodes} nodes up",
               diagnostics=lambda: diag(procs))
    return started


def rolled_out(job: str, zk: str, version: int, state: str = "complete",
               count: int = 3) -> Any:
    """The job's status once `version` is fully out (tasks lost with a dead node, which
    stay listed as `lost`, left out), else None."""
    s = status(job, zk)
    ro = s.get("rollout") or {}
    s["tasks"] = [t for t in s["tasks"] if t["state"] != "lost"]
    live = [t for t in s["tasks"] if t["state"] == "running" and t["healthy"]]
    if s["version"] == version and ro.get("state") == state and ro.get("updated") == count \
            and ro.get("old") == 0 and len(live) == count and len(s["tasks"]) == count:
        return s
    return None


def check_contract_shape(s: dict[str, Any]) -> None:
    assert {"name", "kind", "version", "tasks"} <= set(s)
    for t in s["tasks"]:
        assert {"id", "node", "state", "healthy", "container", "ports"} <= set(t)
    ro = s["rollout"]
    assert {"version", "state", "updated", "total", "old", "parallel", "steps"} <= set(ro)


def serves_only(client: ServiceClient, body: str, at_least: int = 20) -> Any:
    seen = dict(client.traffic.since_mark)
    return seen if sum(seen.values()) >= at_least else None


@docker
def test_rolling_update_serves_every_request_and_a_bad_update_rolls_back(
        zk_hosts: str, zk_root: str, tmp_path: Path, docker_test_image: str,
        docker_labels: dict[str, str]) -> None:
    zk = f"{zk_hosts}{zk_root}"
    job = unique_name("web")
    f = tmp_path / "web.json"
    with processes() as procs:
        start_cluster(procs, zk, tmp_path, docker_labels)
        write_job(f, web(job, docker_test_image, "v1"))
        r = helios("job", "run", str(f), "--wait", "--timeout", "120", "--zk", zk,
                   timeout=150)
        assert r.returncode == 0, r.stderr + diag(procs)

        with ServiceClient(zk_hosts, zk_root, job) as client:
            # (a) a rolling update to v2: start new, wait healthy + registered, drain old
            write_job(f, web(job, docker_test_image, "v2"))
            r = helios("job", "run", str(f), "--wait", "--timeout", "120", "--zk", zk,
                       timeout=150)
            assert r.returncode == 0, r.stderr + diag(procs)
            s = eventually(lambda: rolled_out(job, zk, 2), 90, "rollout to v2 complete",
                           diagnostics=lambda: diag(procs))
            check_contract_shape(s)
            v2_ids = {t["id"] for t in s["tasks"]}
            client.traffic.mark()
            seen = eventually(lambda: serves_only(client, "v2"), 60, "answers after v2")
            assert set(seen) == {"v2"}, seen

            # (b) a version whose health check never passes: rolled back at its
            # deadline, under the same strategy; the v2 tasks serve throughout
            write_job(f, web(job, docker_test_image, "v3", deadline="6s",
                             command=["sh", "-c", "exec sleep 1000"]))
            r = helios("job", "run", str(f), "--zk", zk)
            assert r.returncode == 0, r.stderr
            s = eventually(lambda: rolled_out(job, zk, 4, "rolled back"), 120,
                           "automatic rollback of v3", diagnostics=lambda: diag(procs))
            assert {t["id"] for t in s["tasks"]} == v2_ids  # never replaced
            assert s["rollout"]["failed_version"] == 3
            human = helios("job", "status", job, "--zk", zk)
            assert human.returncode == 0 and "rolled back" in human.stdout
            assert "rollout of v3 failed:" in human.stdout  # and why
            assert "not healthy and registered within" in s["rollout"]["failure"]
            client.traffic.mark()
            seen = eventually(lambda: serves_only(client, "v2"), 60, "answers after rollback")
            assert set(seen) == {"v2"}, seen

        t = client.traffic
        t.check_none_failed()
        assert t.ok > 100 and set(t.bodies) <= {"v1", "v2"}, t.bodies
        assert t.bodies["v1"] > 0 and t.bodies["v2"] > 0

        hist = history(job, zk)
        states = [e["state"] for e in hist]
        starts = [e for e in hist if e["state"] == "rollout start" and e.get("version") == 2]
        replaced = [e for e in hist if e["state"] == "rollout replaced"
                    and e.get("version") == 2]
        assert sorted(e["new"] for e in starts) == sorted(v2_ids)
        assert sorted(e["slot"] for e in replaced) == [0, 1, 2]
        assert "rollout complete" in states
        failed = [e for e in hist if e["state"] == "rollout failed"]
        assert len(failed) == 1 and failed[0]["version"] == 3
        assert "not healthy and registered within" in failed[0]["reason"]
        assert "rollout rolled back" in states
        assert len(containers({**docker_labels, "io.helios.job": job})) == 3
        table = helios("job", "history", job, "--zk", zk)
        assert table.returncode == 0 and "rollout start" in table.stdout


@docker
def test_a_single_task_service_rolls_with_an_endpoint_registered_throughout(
        zk_hosts: str, zk_root: str, tmp_path: Path, docker_test_image: str,
        docker_labels: dict[str, str]) -> None:
    """count 1, parallel 1: the new task must be registered before the old one is
    withdrawn, or clients would find no endpoint at all for a moment."""
    zk = f"{zk_hosts}{zk_root}"
    job = unique_name("one")
    f = tmp_path / "one.json"
    with processes() as procs:
        start_cluster(procs, zk, tmp_path, docker_labels, nodes=1)
        write_job(f, web(job, docker_test_image, "v1", count=1))
        r = helios("job", "run", str(f), "--wait", "--timeout", "120", "--zk", zk,
                   timeout=150)
        assert r.returncode == 0, r.stderr + diag(procs)
        (old,) = [t["id"] for t in status(job, zk)["tasks"]]
        with ServiceClient(zk_hosts, zk_root, job) as client:
            write_job(f, web(job, docker_test_image, "v2", count=1))
            assert helios("job", "run", str(f), "--zk", zk).returncode == 0
            s = eventually(lambda: rolled_out(job, zk, 2, count=1), 90, "rolled to v2",
                           diagnostics=lambda: diag(procs))
            (new,) = [t["id"] for t in s["tasks"]]
            eventually(lambda: client.traffic.lists[-1] == {new}, 30, "old one withdrawn")
        t = client.traffic
        assert t.error is None and t.failures == [], t.failures[:20]
        seen = t.lists[t.lists.index(frozenset({old})):]
        assert frozenset() not in seen, seen  # never a moment without an endpoint
        assert frozenset({old, new}) in seen, seen  # new registered before old withdrawn


@docker
def test_leader_killed_mid_rollout_completes_under_the_new_leader(
        zk_hosts: str, zk_root: str, tmp_path: Path, docker_test_image: str,
        docker_labels: dict[str, str]) -> None:
    zk = f"{zk_hosts}{zk_root}"
    job = unique_name("api")
    f = tmp_path / "api.json"
    with processes() as procs:
        cs = {n: conductor(n, zk, tmp_path) for n in ("c1", "c2")}
        procs.extend(cs.values())
        procs.extend(node(unique_name("n"), zk, tmp_path, docker_labels) for _ in range(2))
        eventually(lambda: up_nodes(zk, 2), 60, "2 nodes up", diagnostics=lambda: diag(procs))
        write_job(f, web(job, docker_test_image, "v1"))
        r = helios("job", "run", str(f), "--wait", "--timeout", "120", "--zk", zk,
                   timeout=150)
        assert r.returncode == 0, r.stderr + diag(procs)
        v1_ids = {t["id"] for t in status(job, zk)["tasks"]}

        with ServiceClient(zk_hosts, zk_root, job) as client:
            first = current_leader(zk)
            # v2 serves after 2 s: each slot takes a while, so the kill lands mid-rollout
            slow = ["sh", "-c", "sleep 2; " + SERVE[2]]
            write_job(f, web(job, docker_test_image, "v2", command=slow))
            assert helios("job", "run", str(f), "--zk", zk).returncode == 0

            def midway() -> Any:
                ro = status(job, zk)["rollout"]
                return ro if ro["state"] == "rolling" and ro["updated"] >= 1 else None

            ro = eventually(midway, 60, "rollout under way", interval=0.1,
                            diagnostics=lambda: diag(procs))
            assert ro["old"] >= 1, ro  # killed mid-rollout, not after it
            print(f"leader {first['name']} killed at {ro}")
            cs[first["name"]].kill()

            s = eventually(lambda: rolled_out(job, zk, 2), 120,
                           "rollout completed by the new leader",
                           diagnostics=lambda: diag(procs))
            info = helios_json("leader", "--zk", zk)
            assert info["name"] != first["name"] and info["epoch"] > first["epoch"]
            client.traffic.mark()
            seen = eventually(lambda: serves_only(client, "v2"), 60, "answers after v2")
            assert set(seen) == {"v2"}, seen

        t = client.traffic
        t.check_none_failed()
        v2_ids = {t["id"] for t in s["tasks"]}
        assert not v2_ids & v1_ids
        # each slot replaced exactly once: three v2 tasks ever placed, three containers
        hist = history(job, zk)
        placed = {e["task"] for e in hist if e["state"] == "placed" and e.get("version") == 2}
        assert placed == v2_ids, (placed, v2_ids)
        eventually(lambda: len(containers({**docker_labels, "io.helios.job": job},
                                          running=False)) == 3, 60,
                   "old containers removed")
        assert sorted(e["slot"] for e in hist if e["state"] == "rollout replaced") \
            == [0, 1, 2]


def _tick(ev: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(ev["tick"]).replace("Z", "+00:00"))


def test_cron_across_a_leader_kill_and_dispatch_with_one_key(
        zk_hosts: str, zk_root: str, tmp_path: Path) -> None:
    zk = f"{zk_hosts}{zk_root}"
    cron, disp = unique_name("tick"), unique_name("disp")
    with processes() as procs:
        cs = {n: conductor(n, zk, tmp_path) for n in ("c1", "c2")}
        procs.extend(cs.values())
        n = unique_name("n")
        procs.append(Proc(n, ["node", "--zk", zk, "--name", n, "--cpus", "4", "--memory",
                              "1G", "--runtime", "process", "--state-dir", str(tmp_path / n),
                              "--listen", f"127.0.0.1:{free_port()}",
                              "--session-timeout", "2"], tmp_path).start())
        eventually(lambda: up_nodes(zk, 1), 60, "node up", diagnostics=lambda: diag(procs))
        small = {"resources": {"cpus": 0.05, "memory": "8M"}, "command": ["true"]}
        write_job(tmp_path / "cron.json", {"name": cron, "kind": "cron",
                                           "schedule": "* * * * * *", **small})
        write_job(tmp_path / "disp.json", {"name": disp, "kind": "parameterized", **small})
        for name in ("cron.json", "disp.json"):
            r = helios("job", "run", str(tmp_path / name), "--zk", zk)
            assert r.returncode == 0, r.stderr

        def fired_after(t0: float, n: int) -> Any:
            evs = [e for e in history(cron, zk)
                   if e["state"] == "cron fired" and e["time"] > t0]
            return evs if len(evs) >= n else None

        eventually(lambda: fired_after(0, 3), 60, "three ticks fired",
                   diagnostics=lambda: diag(procs))
        key = unique_name("key")
        one = helios_json("job", "dispatch", disp, "--payload", '{"n": 1}',
                          "--idempotency-key", key, "--zk", zk)
        assert one["created"] is True

        first = current_leader(zk)
        killed_at = time.time()
        cs[first["name"]].kill()
        eventually(lambda: fired_after(killed_at, 3), 60, "ticks fired by the new leader",
                   diagnostics=lambda: diag(procs))
        info = helios_json("leader", "--zk", zk)
        assert info["name"] != first["name"]
        again = helios_json("job", "dispatch", disp, "--payload", '{"n": 1}',
                            "--idempotency-key", key, "--zk", zk)
        assert again["run"] == one["run"] and again["created"] is False
        assert helios("job", "stop", cron, "--zk", zk).returncode == 0

        # every tick consumed once; the ticks between two consumed ones are exactly the
        # later one's `missed` (catch_up: one runs the newest missed tick, not them all)
        hist = history(cron, zk)
        consumed = sorted((e for e in hist if e["state"] in ("cron fired", "cron skipped")),
                          key=_tick)
        ticks = [_tick(e) for e in consumed]
        assert len(ticks) == len(set(ticks)), "a tick was consumed twice"
        for prev, cur, ev in zip(ticks, ticks[1:], consumed[1:], strict=False):
            gap = round((cur - prev).total_seconds())
            assert gap - 1 == ev.get("missed", 0), (prev, cur, ev)
        runs = [e["run"] for e in consumed if e["state"] == "cron fired"]
        assert len(runs) == len(set(runs)) >= 6
        jobs = {j["name"]: j for j in helios_json("job", "ls", "--zk", zk)}
        made = sorted(j for j in jobs if j.startswith(f"{cron}-"))
        # finished runs beyond the newest 10 (--gc-keep-runs) are collected, each once,
        # and named in the template's history
        collected = [r for e in history(cron, zk) if e["state"] == "runs collected"
                     for r in e["runs"]]
        assert len(collected) == len(set(collected))
        assert sorted(set(made) | set(collected)) == sorted(runs), (made, collected, runs)
        assert sorted(j for j in jobs if j.startswith(f"{disp}-")) == [one["run"]]
        eventually(lambda: status(one["run"], zk)["status"] == "complete", 60,
                   "dispatched run complete")


@docker
def test_batch_task_whose_node_dies_finishes_elsewhere(
        zk_hosts: str, zk_root: str, tmp_path: Path, docker_test_image: str,
        docker_labels: dict[str, str]) -> None:
    zk = f"{zk_hosts}{zk_root}"
    job = unique_name("once")
    with processes() as procs:
        nodes = start_cluster(procs, zk, tmp_path, docker_labels)
        spec = {"name": job, "kind": "batch", "image": docker_test_image,
                "command": ["sh", "-c", "sleep 5; echo finished"], "count": 1,
                "resources": {"cpus": 0.25, "memory": "16M"}, "grace": "1s"}
        write_job(tmp_path / "once.json", spec)
        assert helios("job", "run", str(tmp_path / "once.json"), "--zk", zk).returncode == 0

        def running() -> Any:
            ts = [t for t in status(job, zk)["tasks"] if t["state"] == "running"]
            return ts[0] if ts else None

        first = eventually(running, 90, "batch task running", diagnostics=lambda: diag(procs))
        victim = first["node"]
        nodes[victim].kill()  # the daemon dies ...
        gone = docker_cli("ps", "-aq", "--filter", f"label={TEST_LABEL}="
                          f"{docker_labels[TEST_LABEL]}", "--filter",
                          f"label=io.helios.node={victim}").stdout.split()
        assert gone, "the victim's container should exist"
        docker_cli("rm", "-f", *gone)  # ... and its machine's container with it

        def done() -> Any:
            s = status(job, zk)
            return s if s["status"] == "complete" else None

        s = eventually(done, 120, "batch finished on the other node",
                       diagnostics=lambda: diag(procs))
        exited = [t for t in s["tasks"] if t["state"] == "exited"]
        assert len(exited) == 1 and exited[0]["node"] != victim
        assert exited[0]["id"] != first["id"]
        hist = history(job, zk)
        lost = [e for e in hist if e["task"] == first["id"] and e["state"] == "lost"]
        assert lost and victim in lost[0]["reason"]
        end = [e for e in hist if e["task"] == exited[0]["id"] and e["state"] == "exited"]
        assert end and end[-1]["exit_code"] == 0
        assert end[-1]["finished"] > end[-1]["started"]  # the run's timing is recorded
        began = [e for e in hist if e["task"] == exited[0]["id"] and e["state"] == "running"]
        assert began and began[0]["time"] <= end[-1]["time"]
        assert lost[0]["time"] <= began[0]["time"]
        table = helios("job", "history", job, "--zk", zk)
        assert table.returncode == 0 and "exited" in table.stdout
        out = subprocess.run(["docker", "ps", "-aq", "--filter",
                              f"label=io.helios.job={job}", "--filter",
                              f"label={TEST_LABEL}={docker_labels[TEST_LABEL]}"],
                             capture_output=True, text=True, timeout=30).stdout.split()
        assert len(out) <= 1, out  # the finished copy at most; the lost one is gone
        json.dumps(s)


@docker
def test_rollout_never_stalls_on_a_lost_node_or_an_unplaceable_task(
        zk_hosts: str, zk_root: str, tmp_path: Path, docker_test_image: str,
        docker_labels: dict[str, str]) -> None:
    zk = f"{zk_hosts}{zk_root}"
    job = unique_name("svc")
    f = tmp_path / "svc.json"
    with processes() as procs:
        nodes = start_cluster(procs, zk, tmp_path, docker_labels, nodes=3)
        write_job(f, dict(web(job, docker_test_image, "v1"), spread=True))
        r = helios("job", "run", str(f), "--wait", "--timeout", "120", "--zk", zk,
                   timeout=150)
        assert r.returncode == 0, r.stderr + diag(procs)

        # v2 takes a few seconds to become healthy; its first new task's node dies then
        slow = ["sh", "-c", "sleep 4; " + SERVE[2]]
        write_job(f, dict(web(job, docker_test_image, "v2", command=slow), spread=True))
        assert helios("job", "run", str(f), "--zk", zk).returncode == 0

        def starting() -> Any:
            s = status(job, zk)
            steps = [x for x in s["rollout"]["steps"] if x["action"] in ("start", "wait")]
            where = {t["id"]: t["node"] for t in s["tasks"]}
            return (steps[0]["new"], where[steps[0]["new"]]) if steps and \
                steps[0]["new"] in where else None

        new_task, victim = eventually(starting, 60, "a new task starting", interval=0.1,
                                      diagnostics=lambda: diag(procs))
        nodes[victim].kill()
        s = eventually(lambda: rolled_out(job, zk, 2), 150,
                       "rollout finished without the lost node",
                       diagnostics=lambda: diag(procs))
        assert all(t["node"] != victim for t in s["tasks"])
        hist = history(job, zk)
        assert any(e["task"] == new_task and e["state"] == "lost" for e in hist)
        assert not [e for e in hist if e["state"] == "rollout failed"]
        v2_ids = {t["id"] for t in s["tasks"]}

        # v3 fits on no node: the rollout fails at once and rolls back, v2 untouched
        big = dict(web(job, docker_test_image, "v3", command=slow), spread=True,
                   resources={"cpus": 64, "memory": "16M"})
        write_job(f, big)
        assert helios("job", "run", str(f), "--zk", zk).returncode == 0
        s = eventually(lambda: rolled_out(job, zk, 4, "rolled back"), 60,
                       "unplaceable version rolled back", diagnostics=lambda: diag(procs))
        assert {t["id"] for t in s["tasks"]} == v2_ids
        failed = [e for e in history(job, zk) if e["state"] == "rollout failed"]
        assert [e["version"] for e in failed] == [3]
        assert "cannot be placed" in failed[0]["reason"]
