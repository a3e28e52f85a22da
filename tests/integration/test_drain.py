"""`helios node drain` and `helios rebalance` against real processes: `helios
conductor`, `helios node --runtime sim` daemons (their tasks answer HTTP on real loopback
ports), a real ZooKeeper, and a client that follows the job's endpoints and counts failed requests.

- a node serving a 2-task service and a batch task is drained: the service moves with
  no failed request, the batch task is allowed to finish, the node ends empty and
  ineligible, `nodes --json` shows `eligible`/`draining`;
- the leader is SIGKILLed right after a drain starts: the new leader carries it on from
  the store and it completes;
- a deliberately fragmented cluster (one task per node) is rebalanced: the nodes the
  dry run promised are freed, with no failed request, and take placements again.

Each test uses its own ZooKeeper root and node names, and stops every process it
started by PID. No assertion is about speed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.common import free_port, unique_name
from tests.integration.procs import (
    Proc,
    current_leader,
    eventually,
    helios,
    helios_json,
    processes,
    write_job,
)
from tests.integration.test_cluster import SESSION, conductor, diag
from tests.integration.traffic import ServiceClient

pytestmark = [pytest.mark.zookeeper, pytest.mark.slow]


def sim_node(name: str, zk: str, tmp: Path, cpus: str = "2") -> Proc:
    lo = 25000 + (free_port() % 40) * 100  # its own host-port range
    return Proc(name, ["node", "--zk", zk, "--name", name, "--cpus", cpus, "--memory", "1G",
                       "--runtime", "sim", "--state-dir", str(tmp / name),
                       "--session-timeout", SESSION, "--port-range", f"{lo}-{lo + 99}"],
                tmp).start()


def web(name: str, count: int = 2) -> dict[str, Any]:
    return {"name": name, "kind": "service", "command": ["server"], "count": count,
            "resources": {"cpus": 0.5, "memory": "64M"},
            "ports": {"http": {"container": 8080}}, "grace": "1s",
            "health": {"http": {"port": "http", "path": "/"}, "interval": "1s",
                       "timeout": "1s"},
            "update": {"parallel": 1, "deadline": "60s"}}


def nodes_by_name(zk: str) -> dict[str, dict[str, Any]]:
    return {n["name"]: n for n in helios_json("nodes", "--zk", zk)}


def tasks_on(zk: str, job: str, node: str) -> list[dict[str, Any]]:
    s = helios_json("job", "status", job, "--zk", zk)
    return [t for t in s["tasks"] if t["node"] == node
            and t["state"] not in ("stopped", "exited", "failed")]


def start(procs: list[Proc], zk: str, tmp: Path, n: int) -> list[str]:
    procs.append(conductor("c1", zk, tmp))
    names = [unique_name("n") for _ in range(n)]
    for name in names:
        procs.append(sim_node(name, zk, tmp))
    eventually(lambda: sum(x["status"] == "up" for x in nodes_by_name(zk).values()) == n,
               60, f"{n} nodes up", diagnostics=lambda: diag(procs))
    return names


def deploy(path: Path, doc: dict[str, Any], zk: str, procs: list[Proc]) -> None:
    write_job(path, doc)
    r = helios("job", "run", str(path), "--wait", "--timeout", "60", "--zk", zk, timeout=90)
    assert r.returncode == 0, r.stderr + diag(procs)


def test_drain_moves_a_service_without_a_failed_request_and_lets_a_batch_finish(
        zk_hosts: str, zk_root: str, tmp_path: Path) -> None:
    zk = f"{zk_hosts}{zk_root}"
    job, batch = unique_name("web"), unique_name("work")
    with processes() as procs:
        first = start(procs, zk, tmp_path, 1)[0]
        deploy(tmp_path / "web.json", web(job), zk, procs)  # both tasks on the one node
        r = helios("job", "run", str(write_job(tmp_path / "b.json", {
            "name": batch, "kind": "batch", "command": ["sleep", "6"], "count": 1,
            "resources": {"cpus": 0.25, "memory": "16M"}})), "--zk", zk)
        assert r.returncode == 0, r.stderr
        eventually(lambda: len(tasks_on(zk, batch, first)) == 1
                   and tasks_on(zk, batch, first)[0]["state"] == "running", 30,
                   "the batch task running on the first node")
        procs.append(sim_node(unique_name("n"), zk, tmp_path))
        eventually(lambda: sum(x["status"] == "up" for x in nodes_by_name(zk).values()) == 2,
                   60, "the second node up", diagnostics=lambda: diag(procs))
        assert nodes_by_name(zk)[first]["eligible"] is True
        assert nodes_by_name(zk)[first]["draining"] is False

        with ServiceClient(zk_hosts, zk_root, job) as client:
            eventually(lambda: client.traffic.ok >= 10, 30, "the client served")
            r = helios("node", "drain", first, "--deadline", "60s", "--zk", zk, "--json",
                       timeout=120)
            assert r.returncode == 0, r.stderr + diag(procs)
            report = json.loads(r.stdout)
            assert report["complete"] and report["remaining"] == []
            ok_after = client.traffic.ok
            eventually(lambda: client.traffic.ok >= ok_after + 10, 30, "still served")
        client.traffic.check_none_failed()
        assert tasks_on(zk, job, first) == [] and tasks_on(zk, batch, first) == []
        s = helios_json("job", "status", batch, "--zk", zk)
        assert [(t["node"], t["state"]) for t in s["tasks"]] == [(first, "exited")]
        n = nodes_by_name(zk)[first]
        assert n["eligible"] is False and n["draining"] is False and n["tasks"] == 0
        r = helios("node", "eligibility", first, "--enable", "--zk", zk, "--json")
        assert r.returncode == 0 and json.loads(r.stdout)["eligible"] is True
        assert nodes_by_name(zk)[first]["eligible"] is True


def test_a_drain_interrupted_by_a_leader_kill_completes(zk_hosts: str, zk_root: str,
                                                        tmp_path: Path) -> None:
    zk = f"{zk_hosts}{zk_root}"
    job = unique_name("web")
    with processes() as procs:
        first = start(procs, zk, tmp_path, 1)[0]
        deploy(tmp_path / "web.json", web(job, count=3), zk, procs)
        procs.append(conductor("c2", zk, tmp_path))
        procs.append(sim_node(unique_name("n"), zk, tmp_path))
        eventually(lambda: sum(x["status"] == "up" for x in nodes_by_name(zk).values()) == 2,
                   60, "the second node up", diagnostics=lambda: diag(procs))
        with ServiceClient(zk_hosts, zk_root, job) as client:
            r = helios("node", "drain", first, "--no-wait", "--zk", zk, "--json")
            assert r.returncode == 0, r.stderr
            assert json.loads(r.stdout)["draining"] is True
            leader = current_leader(zk)["name"]
            next(p for p in procs if p.name == leader).kill()
            eventually(lambda: current_leader(zk)["name"] != leader, 60, "a new leader")
            r = helios("node", "drain", first, "--zk", zk, "--json", timeout=150)
            assert r.returncode == 0, r.stderr + diag(procs)
            assert json.loads(r.stdout)["complete"]
        client.traffic.check_none_failed()
        assert tasks_on(zk, job, first) == []
        n = nodes_by_name(zk)[first]
        assert n["eligible"] is False and n["draining"] is False


def test_rebalance_frees_the_nodes_its_dry_run_promised_without_a_failed_request(
        zk_hosts: str, zk_root: str, tmp_path: Path) -> None:
    zk = f"{zk_hosts}{zk_root}"
    job = unique_name("web")
    with processes() as procs:
        names = start(procs, zk, tmp_path, 3)
        spread = {**web(job, count=3), "spread": True}  # one task per node: fragmented
        deploy(tmp_path / "web.json", spread, zk, procs)
        deploy(tmp_path / "web.json", {**spread, "spread": False}, zk, procs)  # in place
        assert sorted(n["tasks"] for n in nodes_by_name(zk).values()) == [1, 1, 1]
        with ServiceClient(zk_hosts, zk_root, job) as client:
            eventually(lambda: client.traffic.ok >= 10, 30, "the client served")
            dry = helios_json("rebalance", "--dry-run", "--zk", zk)
            assert dry["dry_run"] and len(dry["frees"]) == 2 and len(dry["moves"]) == 2
            assert "frees 2 of 3 nodes" in dry["gain"]
            assert all(n["tasks"] == 1 for n in nodes_by_name(zk).values())  # moved nothing
            done = helios_json("rebalance", "--zk", zk)
            assert done["frees"] == dry["frees"] and not done["dry_run"]
            eventually(lambda: all(nodes_by_name(zk)[n]["tasks"] == 0 for n in dry["frees"]),
                       90, "the promised nodes freed", diagnostics=lambda: diag(procs))
            eventually(lambda: all(nodes_by_name(zk)[n]["eligible"]
                                   and not nodes_by_name(zk)[n]["draining"]
                                   for n in dry["frees"]), 30, "freed nodes eligible again")
            kept = (set(names) - set(dry["frees"])).pop()
            s = helios_json("job", "status", job, "--zk", zk)
            live = [t for t in s["tasks"] if t["state"] == "running"]
            assert len(live) == 3 and {t["node"] for t in live} == {kept}
        client.traffic.check_none_failed()
