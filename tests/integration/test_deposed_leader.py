"""A deposed leader that wakes up changes nothing: SIGSTOP the leader conductor until its
ZooKeeper session expires and a standby leads, change the job through the new leader,
then SIGCONT the old one. Its writes are fenced and the nodes refuse its epoch, so the
cluster keeps exactly what the new leader decided. (Process runtime: no Docker needed.)"""

from __future__ import annotations

import os
import signal
from pathlib import Path

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

pytestmark = [pytest.mark.zookeeper, pytest.mark.slow]


def test_deposed_leader_wakes_up_and_changes_nothing(zk_hosts: str, zk_root: str,
                                                     tmp_path: Path) -> None:
    zk = f"{zk_hosts}{zk_root}"
    job = unique_name("sleepy")
    with processes() as procs:
        cs = {}
        for name in ("c1", "c2"):
            cs[name] = Proc(name, ["conductor", "--zk", zk, "--listen",
                                   f"127.0.0.1:{free_port()}", "--name", name,
                                   "--session-timeout", "1", "--failover-grace", "0.5"],
                            tmp_path).start()
            procs.append(cs[name])
        n = unique_name("n")
        procs.append(Proc(n, ["node", "--zk", zk, "--name", n, "--cpus", "2", "--memory",
                              "1G", "--runtime", "process", "--state-dir", str(tmp_path / n),
                              "--session-timeout", "2"], tmp_path).start())
        first = current_leader(zk)
        old = cs[first["name"]]
        spec = {"name": job, "kind": "service", "command": ["sleep", "300"], "count": 2,
                "resources": {"cpus": 0.1, "memory": "16M"}, "grace": 0}
        f = write_job(tmp_path / "job.json", spec)
        r = helios("job", "run", str(f), "--wait", "--timeout", "60", "--zk", zk)
        assert r.returncode == 0, r.stderr
        before = helios_json("job", "status", job, "--zk", zk)

        os.kill(old.pid, signal.SIGSTOP)
        try:
            new = eventually(lambda: (lambda i: i if i["leader"] and i["name"] !=
                                      first["name"] else None)(
                helios_json("leader", "--zk", zk)), 30, "a new leader")
            assert new["epoch"] > first["epoch"]
            write_job(f, dict(spec, count=3))
            r = helios("job", "run", str(f), "--wait", "--timeout", "60", "--zk", zk)
            assert r.returncode == 0, r.stderr
        finally:
            os.kill(old.pid, signal.SIGCONT)
        after = helios_json("job", "status", job, "--zk", zk)
        assert len(after["tasks"]) == 3
        assert {t["id"] for t in before["tasks"]} < {t["id"] for t in after["tasks"]}

        # the old leader wakes up: it stands down and nothing changes
        def stood_down() -> bool:
            return helios_json("leader", "--conductor",
                               _addr(old)) ["leader"] is False
        eventually(stood_down, 30, "old leader standing down")
        info = helios_json("leader", "--zk", zk)
        assert info["name"] == new["name"] and info["epoch"] == new["epoch"]
        final = helios_json("job", "status", job, "--zk", zk)
        assert [(t["id"], t["state"]) for t in final["tasks"]] == \
            [(t["id"], t["state"]) for t in after["tasks"]]
        assert helios_json("job", "ls", "--zk", zk)[0]["version"] == 2
        # leave nothing running: the process runtime's tasks outlive a stopped node
        assert helios("job", "rm", job, "--zk", zk).returncode == 0
        eventually(lambda: helios_json("nodes", "--zk", zk)[0]["tasks"] == 0, 60,
                   "tasks stopped after job rm")


def _addr(p: Proc) -> str:
    i = p.args.index("--listen")
    return p.args[i + 1]
