"""Many real node daemons on the `sim` runtime in one process (`python -m
helios.node.fleet`), a real `helios conductor`, a real ZooKeeper: every node registers
with its own session, a service is placed and runs healthy on them, a batch run finishes,
and killing the fleet process brings every node down. No assertion is about speed
(bench/fleet_bench.py measures).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.fixtures.common import unique_name
from tests.integration.procs import Proc, eventually, helios, helios_json, processes, write_job
from tests.integration.test_cluster import conductor, diag

pytestmark = [pytest.mark.zookeeper, pytest.mark.slow]


def fleet(name: str, zk: str, tmp: Path, count: int, *, cpus: str = "2",
          session: str = "2") -> Proc:
    """`count` sim nodes named `<name>-NNNN` in one process."""
    return Proc(name, ["--zk", zk, "--count", str(count), "--prefix", name,
                       "--state-dir", str(tmp / name), "--cpus", cpus, "--memory", "2G",
                       "--session-timeout", session, "--start-rate", "100"], tmp,
                command=[sys.executable, "-m", "helios.node.fleet"]).start()


def up(zk: str) -> list[dict]:
    return [n for n in helios_json("nodes", "--zk", zk) if n["status"] == "up"]


def test_a_process_of_sim_nodes_runs_a_service_and_a_batch(zk_hosts: str, zk_root: str,
                                                           tmp_path: Path) -> None:
    zk = f"{zk_hosts}{zk_root}"
    name = unique_name("sim")
    nodes = 24
    with processes() as procs:
        procs.append(conductor("c1", zk, tmp_path))
        procs.append(fleet(name, zk, tmp_path, nodes))
        eventually(lambda: len(up(zk)) == nodes, 90, f"{nodes} sim nodes up",
                   diagnostics=lambda: diag(procs))
        web = unique_name("web")
        write_job(tmp_path / "web.json", {
            "name": web, "kind": "service", "command": ["server"], "count": 40,
            "resources": {"cpus": 0.5, "memory": "64M"},
            "health": {"exec": ["true"], "interval": "1s"}})
        r = helios("job", "run", str(tmp_path / "web.json"), "--wait", "--timeout", "90",
                   "--zk", zk, timeout=120)
        assert r.returncode == 0, r.stderr + diag(procs)
        s = helios_json("job", "status", web, "--zk", zk)
        live = [t for t in s["tasks"] if t["state"] == "running" and t["healthy"]]
        assert len(live) == 40
        assert len({t["node"] for t in live}) >= 40 * 0.5 / 2  # packed: 4 per 2-cpu node
        assert all(t["node"].startswith(name) for t in live)

        batch = unique_name("work")
        write_job(tmp_path / "batch.json", {
            "name": batch, "kind": "batch", "command": ["sleep", "0.5"], "count": 5,
            "resources": {"cpus": 0.1, "memory": "16M"}})
        r = helios("job", "run", str(tmp_path / "batch.json"), "--wait", "--timeout", "60",
                   "--zk", zk, timeout=90)
        assert r.returncode == 0, r.stderr + diag(procs)
        s = helios_json("job", "status", batch, "--zk", zk)
        assert [t["state"] for t in s["tasks"]] == ["exited"] * 5

        procs[1].stop()  # SIGTERM: every node leaves cleanly
        eventually(lambda: not up(zk), 30, "every sim node down",
                   diagnostics=lambda: diag(procs))
