"""Garbage collection and `helios node rm` as users run them: a `helios conductor` with
`--gc-keep-runs 2` and `helios node` daemons (process runtime) on a real ZooKeeper.

- a per-second cron job leaves its 2 newest finished runs; every collected run is gone
  from /jobs, /history, /assignments and /status (the nodes' last reports of the torn
  down tasks do not bring its history back), and its template's history names it;
- `helios node rm` refuses an up node (one line, non-zero), refuses an unknown one, and
  forgets a SIGKILLed one: its znodes go and its service task runs on the other node at
  once (the failover grace is an hour here); started again, the daemon joins as a new
  node and stops the copy it still ran;
- `helios node --help` still documents the daemon and lists `rm`.

Every process started here is stopped by its PID; no assertion is about speed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient

from tests.fixtures.common import free_port, unique_name
from tests.fixtures.zookeeper import kazoo_client
from tests.integration.procs import (
    Proc,
    eventually,
    helios,
    helios_json,
    processes,
    write_job,
)

pytestmark = [pytest.mark.zookeeper, pytest.mark.slow]


def one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in r.stderr + r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def node_proc(name: str, zk: str, tmp: Path, label: str) -> Proc:
    return Proc(name, ["node", "--zk", zk, "--name", name, "--cpus", "1", "--memory", "1G",
                       "--runtime", "process", "--state-dir", str(tmp / name),
                       "--listen", f"127.0.0.1:{free_port()}", "--session-timeout", "2",
                       "--label", f"role={label}"], tmp).start()


def left_of(zk: KazooClient, root: str, run: str) -> list[str]:
    """Znodes of `run` still in the store (record, history, assignments, statuses)."""
    left = [p for p in (f"{root}/jobs/{run}", f"{root}/history/{run}") if zk.exists(p)]
    for top in ("assignments", "status"):
        for node in zk.get_children(f"{root}/{top}"):
            left += [f"{top}/{node}/{t}" for t in zk.get_children(f"{root}/{top}/{node}")
                     if t.startswith(f"{run}-")]
    return left


def kill_leftover_tasks(state_dir: Path) -> None:
    """Safety net: the process-runtime tasks a SIGKILLed daemon left running, by the pid
    in their record, and only if that pid is still the same process (start time)."""
    from helios.node.runtime.process import _proc_start_ticks

    for record in state_dir.rglob("record.json"):
        with contextlib.suppress(OSError, ValueError, TypeError):
            rec = json.loads(record.read_text())
            pid, ticks = rec.get("pid"), rec.get("start_ticks")
            if pid and ticks is not None and _proc_start_ticks(pid) == ticks:
                os.killpg(pid, signal.SIGKILL)


def test_gc_keeps_the_newest_runs_and_node_rm_forgets_a_dead_machine(
        zk_hosts: str, zk_root: str, tmp_path: Path) -> None:
    zk = f"{zk_hosts}{zk_root}"
    cron, web = unique_name("tick"), unique_name("web")
    a, b = unique_name("n"), unique_name("n")
    r = helios("node", "--help")
    assert r.returncode == 0 and "--zk" in r.stdout and "rm" in r.stdout, r.stdout
    assert "--zk" in one_line_error(helios("node"))
    with processes() as procs, kazoo_client(zk_hosts) as store:
        try:
            procs.append(Proc("c1", ["conductor", "--zk", zk, "--name", "c1",
                                     "--listen", f"127.0.0.1:{free_port()}",
                                     "--session-timeout", "2", "--failover-grace", "3600",
                                     "--gc-keep-runs", "2"], tmp_path).start())
            nodes = {a: node_proc(a, zk, tmp_path, "cron"), b: node_proc(b, zk, tmp_path, "web")}
            procs.extend(nodes.values())
            eventually(lambda: [n["status"] for n in helios_json("nodes", "--zk", zk)]
                       == ["up", "up"], 60, "2 nodes up")

            # -- a per-second cron job, on node a
            small = {"resources": {"cpus": 0.05, "memory": "8M"}}
            write_job(tmp_path / "cron.json", {"name": cron, "kind": "cron",
                                               "schedule": "* * * * * *",
                                               "command": ["true"],
                                               "constraints": {"role": "cron"}, **small})
            assert helios("job", "run", str(tmp_path / "cron.json"), "--zk", zk).returncode == 0

            def collected(n: int) -> Any:
                evs = [e for e in helios_json("job", "history", cron, "--zk", zk)
                       if e["state"] == "runs collected"]
                runs = {r for e in evs for r in e["runs"]}
                return runs if len(runs) >= n else None

            eventually(lambda: collected(3), 60, "3 runs collected")
            assert helios("job", "stop", cron, "--zk", zk).returncode == 0

            def two_left() -> Any:
                runs = {j["name"]: j["status"] for j in helios_json("job", "ls", "--zk", zk)
                        if j["name"].startswith(f"{cron}-")}
                return runs if (len(runs) == 2 and set(runs.values()) == {"complete"}) \
                    else None

            kept = sorted(eventually(two_left, 60, "the 2 newest finished runs kept"))
            hist = helios_json("job", "history", cron, "--zk", zk)
            fired = sorted(e["run"] for e in hist if e["state"] == "cron fired")
            gone = {r for e in hist if e["state"] == "runs collected" for r in e["runs"]}
            assert kept == fired[-2:] and gone == set(fired) - set(kept)
            eventually(lambda: not [z for r in gone for z in left_of(store, zk_root, r)],
                       60, "znodes of the collected runs gone")

            # -- node rm: refused while up, unknown refused, a dead node forgotten
            write_job(tmp_path / "web.json", {"name": web, "kind": "service",
                                              "command": ["sleep", "1000"],
                                              "constraints": {}, **small})
            assert helios("job", "run", str(tmp_path / "web.json"), "--zk", zk).returncode == 0
            (task,) = eventually(lambda: [t for t in helios_json("job", "status", web,
                                                                 "--zk", zk)["tasks"]
                                          if t["state"] == "running"], 60, "web running")
            victim = task["node"]
            other = b if victim == a else a
            assert "--force" in one_line_error(helios("node", "rm", other, "--zk", zk))
            assert "nosuch" in one_line_error(helios("node", "rm", "nosuch", "--zk", zk))
            nodes[victim].kill()
            eventually(lambda: {n["name"]: n["status"] for n in helios_json("nodes", "--zk", zk)}
                       [victim] == "down", 60, f"{victim} down")
            out = helios_json("node", "rm", victim, "--zk", zk)
            assert out["removed"] is True and out["was_up"] is False
            assert [n["name"] for n in helios_json("nodes", "--zk", zk)] == [other]
            assert not store.exists(f"{zk_root}/nodes/{victim}")
            for top in ("assignments", "status"):
                path = f"{zk_root}/{top}/{victim}"
                assert not store.exists(path) or \
                    set(store.get_children(path)) <= set(out["kept"]), top
            moved = eventually(lambda: [t for t in helios_json("job", "status", web,
                                                               "--zk", zk)["tasks"]
                                        if t["state"] == "running" and t["node"] == other],
                               60, "web running on the other node")
            assert moved[0]["id"] != task["id"]

            # started again, the daemon joins as a new node and stops its old copy
            nodes[victim] = node_proc(victim, zk, tmp_path, "cron")
            procs.append(nodes[victim])
            eventually(lambda: {n["name"]: (n["status"], n["tasks"])
                                for n in helios_json("nodes", "--zk", zk)}.get(victim)
                       == ("up", 0), 60, f"{victim} back, empty")
            eventually(lambda: not [p for p in (tmp_path / victim).rglob("record.json")
                                    if task["id"] in str(p)], 60, "the old copy removed")
            # nothing of the collected runs came back meanwhile (late reports included)
            assert not [z for r in gone for z in left_of(store, zk_root, r)]
        finally:
            for p in procs:
                p.stop()
            for name in (a, b):
                kill_leftover_tasks(tmp_path / name)
