"""A real cluster: `helios conductor` and `helios node` subprocesses, real ZooKeeper, real
Docker. Each test uses its own ZooKeeper root, node names, ports and container labels, and
stops every process it started by PID.

Covers issue 5 item 7: packing, failover after SIGKILL of a node, stale copies removed
when it returns, an unplaceable job pending with its reason, and a leader SIGKILLed
mid-deploy with every task placed exactly once.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.common import free_port, unique_name
from tests.fixtures.docker import TEST_LABEL
from tests.integration.procs import (
    Proc,
    current_leader,
    eventually,
    helios,
    helios_json,
    processes,
    write_job,
)

pytestmark = [pytest.mark.zookeeper, pytest.mark.docker, pytest.mark.slow]

SESSION = "2"   # the test ZooKeeper allows 0.4-4 s sessions
GRACE = "0.5"


def conductor(name: str, zk: str, tmp: Path) -> Proc:
    return Proc(name, ["conductor", "--zk", zk, "--listen", f"127.0.0.1:{free_port()}",
                       "--name", name, "--session-timeout", SESSION,
                       "--failover-grace", GRACE], tmp).start()


def node(name: str, zk: str, tmp: Path, labels: dict[str, str], cpus: str = "2") -> Proc:
    args = ["node", "--zk", zk, "--name", name, "--cpus", cpus, "--memory", "1G",
            "--runtime", "docker", "--state-dir", str(tmp / name),
            "--session-timeout", SESSION]
    for k, v in labels.items():
        args += ["--container-label", f"{k}={v}"]
    return Proc(name, args, tmp).start()


def containers(labels: dict[str, str], *, running: bool = True) -> list[str]:
    args = ["docker", "ps", "-q"] + ([] if running else ["-a"])
    for k, v in labels.items():
        args += ["--filter", f"label={k}={v}"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=30, check=True)
    return out.stdout.split()


def service(name: str, image: str, count: int, cpus: float) -> dict[str, Any]:
    return {"name": name, "kind": "service", "image": image,
            "command": ["httpd", "-f", "-p", "8080", "-h", "/www"], "count": count,
            "resources": {"cpus": cpus, "memory": "16M"},
            "ports": {"http": {"container": 8080}}, "grace": "1s",
            "health": {"tcp": {"port": "http"}, "interval": "1s", "timeout": "1s"}}


def diag(procs: list[Proc]) -> str:
    return "\n".join(f"--- {p.name} ---\n{p.tail(40)}" for p in procs)


def test_pack_failover_restart_and_pending(zk_hosts: str, zk_root: str, tmp_path: Path,
                                           docker_test_image: str,
                                           docker_labels: dict[str, str]) -> None:
    zk = f"{zk_hosts}{zk_root}"
    job = unique_name("web")
    with processes() as procs:
        procs.append(conductor("c1", zk, tmp_path))
        names = [unique_name("n") for _ in range(3)]
        nodes = {n: node(n, zk, tmp_path, docker_labels) for n in names}
        procs.extend(nodes.values())
        eventually(lambda: [n for n in helios_json("nodes", "--zk", zk)
                            if n["status"] == "up"].__len__() == 3, 60, "3 nodes up",
                   diagnostics=lambda: diag(procs))

        f = write_job(tmp_path / "web.json", service(job, docker_test_image, 4, 0.5))
        r = helios("job", "run", str(f), "--wait", "--timeout", "120", "--zk", zk,
                   timeout=150)
        assert r.returncode == 0, r.stderr + diag(procs)
        st = helios_json("job", "status", job, "--zk", zk)
        assert [t["state"] for t in st["tasks"]] == ["running"] * 4
        holders = {t["node"] for t in st["tasks"]}
        assert len(holders) == 1, st  # 4 x 0.5 cpu packed onto one 2-cpu node
        victim = holders.pop()
        assert len(containers({**docker_labels, "io.helios.job": job})) == 4

        # a job that fits nowhere stays pending, with the scheduler's reason
        big = unique_name("big")
        f2 = write_job(tmp_path / "big.json", service(big, docker_test_image, 1, 64))
        assert helios("job", "run", str(f2), "--zk", zk).returncode == 0
        pend = eventually(lambda: helios_json("job", "status", big, "--zk", zk)["pending"],
                          30, "pending reason")
        assert "cpu" in pend[0]["reason"].lower()
        human = helios("job", "status", big, "--zk", zk)
        assert "pending" in human.stdout and human.returncode == 0

        # SIGKILL the node holding the tasks: they run elsewhere
        nodes[victim].kill()

        def moved() -> Any:
            s = helios_json("job", "status", job, "--zk", zk)
            live = [t for t in s["tasks"] if t["state"] == "running" and t["node"] != victim]
            return s if len(live) == 4 else None

        s = eventually(moved, 90, "tasks replaced on other nodes",
                       diagnostics=lambda: diag(procs))
        assert all(t["state"] == "lost" for t in s["tasks"] if t["node"] == victim)
        # its containers outlived the daemon (SIGKILL) ...
        assert containers({**docker_labels, "io.helios.node": victim,
                           "io.helios.job": job})

        # ... until it returns, is told, and removes its stale copies
        back = node(victim, zk, tmp_path, docker_labels)
        procs.append(back)
        eventually(lambda: not containers({**docker_labels, "io.helios.node": victim,
                                           "io.helios.job": job}),
                   90, "stale copies stopped", diagnostics=lambda: diag(procs))
        s = eventually(lambda: (lambda d: d if all(t["node"] != victim for t in d["tasks"])
                                else None)(helios_json("job", "status", job, "--zk", zk)),
                       60, "stale tasks forgotten")
        assert len([t for t in s["tasks"] if t["state"] == "running"]) == 4
        assert len(containers({**docker_labels, "io.helios.job": job})) == 4
        assert helios("job", "rm", job, "--zk", zk).returncode == 0
        assert helios("job", "rm", big, "--zk", zk).returncode == 0
        eventually(lambda: not containers({**docker_labels, "io.helios.job": job}), 60,
                   "containers removed after job rm")


def test_leader_sigkilled_mid_deploy(zk_hosts: str, zk_root: str, tmp_path: Path,
                                     docker_test_image: str,
                                     docker_labels: dict[str, str]) -> None:
    zk = f"{zk_hosts}{zk_root}"
    job = unique_name("api")
    with processes() as procs:
        cs = {n: conductor(n, zk, tmp_path) for n in ("c1", "c2")}
        procs.extend(cs.values())
        first = current_leader(zk)
        assert first["name"] in cs
        names = [unique_name("n") for _ in range(2)]
        procs.extend(node(n, zk, tmp_path, docker_labels, cpus="4") for n in names)
        eventually(lambda: len([n for n in helios_json("nodes", "--zk", zk)
                                if n["status"] == "up"]) == 2, 60, "2 nodes up",
                   diagnostics=lambda: diag(procs))

        f = write_job(tmp_path / "api.json", service(job, docker_test_image, 6, 0.25))
        r = helios("job", "run", str(f), "--zk", zk)
        assert r.returncode == 0, r.stderr
        cs[first["name"]].kill()  # mid-deploy: its tasks are being created

        def deployed() -> Any:
            s = helios_json("job", "status", job, "--zk", zk)
            return s if [t["state"] for t in s["tasks"]] == ["running"] * 6 else None

        s = eventually(deployed, 120, "deploy completed by the new leader",
                       diagnostics=lambda: diag(procs))
        info = helios_json("leader", "--zk", zk)
        assert info["name"] != first["name"] and info["epoch"] > first["epoch"]
        ids = [t["id"] for t in s["tasks"]]
        assert len(set(ids)) == 6
        # every task placed exactly once: one container per task, no duplicates
        assert len(containers({**docker_labels, "io.helios.job": job}, running=False)) == 6
        hist = helios_json("job", "history", job, "--zk", zk)
        placed = [e["task"] for e in hist if e["state"] == "placed"]
        assert sorted(set(placed)) == sorted(ids)
        assert TEST_LABEL in docker_labels
