"""Failover benchmark: SIGKILL of a node running a service -> its replacement running
elsewhere, on a real cluster (ZooKeeper, `helios conductor`, three `helios node`
processes with the Docker runtime), over several runs.

    python bench/failover_bench.py [--zk HOSTS] [--runs 5] [--session-timeout 4]
                                   [--failover-grace 1]

Without --zk it starts its own ZooKeeper (tests/fixtures/zookeeper.py, tickTime 200 ms,
so sessions of 0.4-4 s) and stops it by PID at the end. Each run: a one-task service
(busybox httpd, no health check) runs on some node; the node's daemon is SIGKILLed; the
clock stops when `job_status` (polled every 20 ms by an actor client) shows the task's
replacement `running` on another node. Then the node is restarted (same name and state
directory), its stale copy must be removed, and the next run starts.

The floor is about the session timeout (ZooKeeper must expire the dead node's session,
counted from the node's last ping, so up to a third of it may already have run at the
kill) plus the failover grace; the timeline printed per run (from `job history`) shows
what Helios adds on top: planning, the fenced write and the push (`lost`/`placed` to
`starting`), then the node's container start (`starting` to `running`). Target with
--session-timeout 4 --failover-grace 1: p50 under 6 s. Containers carry a unique label
and are removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import trio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from helios.client import Client  # noqa: E402

BENCH_LABEL = "io.helios.bench"
HELIOS = [sys.executable, "-m", "helios.cli"]


def ensure_image() -> str:
    """The busybox test image of tests/fixtures/docker.py (built once, reused)."""
    import hashlib

    from tests.fixtures import docker as fx

    digest = hashlib.sha256(fx.BUSYBOX.read_bytes() + fx._IMAGE_LAYOUT_VERSION.encode())
    image = f"{fx.IMAGE_REPO}:{digest.hexdigest()[:12]}"
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode:
        subprocess.run(["docker", "import", "-", image], input=fx._rootfs_tar(), check=True,
                       capture_output=True, timeout=120)
    return image


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    def __init__(self, name: str, args: list[str], logdir: Path) -> None:
        self.name, self.args, self.logdir = name, args, logdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Daemon:
        with open(self.logdir / f"{self.name}.log", "ab") as out:
            self.proc = subprocess.Popen(HELIOS + self.args, stdout=out,
                                         stderr=subprocess.STDOUT, cwd=REPO,
                                         env=dict(os.environ, PYTHONUNBUFFERED="1"))
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def containers(labels: dict[str, str], all_: bool = False) -> list[str]:
    args = ["docker", "ps", "-q"] + (["-a"] if all_ else [])
    for k, v in labels.items():
        args += ["--filter", f"label={k}={v}"]
    return subprocess.run(args, capture_output=True, text=True, timeout=30).stdout.split()


async def poll(client: Client, method: str, *args: Any, until: Any, timeout: float,
               interval: float = 0.02) -> Any:
    with trio.fail_after(timeout):
        while True:
            try:
                out = await client.call(method, *args)
                if until(out):
                    return out
            except Exception:
                pass
            await trio.sleep(interval)


async def bench(zk: str, runs: int, session: float, grace: float, logdir: Path,
                run_id: str) -> list[float]:
    image = ensure_image()
    daemons: list[Daemon] = []
    conductor = Daemon("conductor", ["conductor", "--zk", zk, "--listen",
                                     f"127.0.0.1:{free_port()}", "--name", "bench-c",
                                     "--session-timeout", str(session),
                                     "--failover-grace", str(grace)], logdir).start()
    daemons.append(conductor)

    def node(name: str) -> Daemon:
        return Daemon(name, ["node", "--zk", zk, "--name", name, "--cpus", "2",
                             "--memory", "1G", "--runtime", "docker", "--state-dir",
                             str(logdir / name), "--session-timeout", str(session),
                             "--container-label", f"{BENCH_LABEL}={run_id}"], logdir).start()

    names = [f"bench-{run_id}-{i}" for i in range(3)]
    nodes = {n: node(n) for n in names}
    daemons.extend(nodes.values())
    times: list[float] = []
    try:
        async with Client(zk, None) as client:
            await poll(client, "nodes", until=lambda ns: sum(n["status"] == "up"
                                                             for n in ns) == 3, timeout=60)
            job = {"name": f"fo-{run_id}", "kind": "service", "image": image,
                   "command": ["httpd", "-f", "-p", "8080", "-h", "/www"], "count": 1,
                   "resources": {"cpus": 0.1, "memory": "16M"},
                   "ports": {"http": {"container": 8080}}, "grace": 0}
            await client.call("job_run", job)
            for i in range(runs):
                st = await poll(client, "job_status", job["name"], timeout=60,
                                until=lambda s: [t["state"] for t in s["tasks"]]
                                == ["running"])
                victim = st["tasks"][0]["node"]
                t0 = time.monotonic()
                nodes[victim].kill()
                await poll(client, "job_status", job["name"], timeout=60,
                           until=lambda s, v=victim: any(
                               t["state"] == "running" and t["node"] != v
                               for t in s["tasks"]))
                took = time.monotonic() - t0
                killed_at = time.time() - took
                times.append(took)
                hist = await client.call("job_history", job["name"])
                steps = _timeline(hist, killed_at, st["tasks"][0]["id"])
                print(f"  run {i + 1}: {took:.2f} s (killed {victim}; {steps})", flush=True)
                nodes[victim] = node(victim)
                daemons.append(nodes[victim])
                await poll(client, "job_status", job["name"], timeout=60,
                           until=lambda s, v=victim: all(t["node"] != v for t in s["tasks"])
                           and not containers({BENCH_LABEL: run_id,
                                               "io.helios.node": v}))
                await poll(client, "nodes", until=lambda ns: sum(
                    n["status"] == "up" for n in ns) == 3, timeout=60)
            await client.call("job_rm", job["name"])
    finally:
        for d in reversed(daemons):
            d.stop()
    return times


def _timeline(hist: list[dict[str, Any]], killed_at: float, old: str) -> str:
    """Seconds after the kill at which the old task was marked lost and its replacement
    placed, started and running (from the job's history)."""
    marks: dict[str, float] = {}
    new = None
    for e in hist:
        t = float(e.get("time") or 0) - killed_at
        if t < 0:
            continue
        if e.get("task") == old and e.get("state") == "lost":
            marks.setdefault("lost", t)
        elif e.get("state") == "placed" and e.get("task") != old and new is None:
            new = e.get("task")
            marks["placed"] = t
        elif new is not None and e.get("task") == new and e.get("state") in (
                "starting", "running"):
            marks.setdefault(e["state"], t)
    return ", ".join(f"{k} +{v:.2f}" for k, v in marks.items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--zk", help="ZooKeeper hosts (default: start one)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--session-timeout", type=float, default=4.0)
    ap.add_argument("--failover-grace", type=float, default=1.0)
    args = ap.parse_args()
    run_id = uuid.uuid4().hex[:8]
    server = None
    logdir = Path(tempfile.mkdtemp(prefix="helios-failover-bench-"))
    try:
        if args.zk:
            zk = f"{args.zk.split('/')[0]}/helios-bench-{run_id}"
        else:
            from tests.fixtures.zookeeper import start_zookeeper

            server = start_zookeeper(logdir / "zk")
            zk = f"{server.hosts}/helios-bench-{run_id}"
        print(f"failover bench: 3 nodes (docker), session timeout {args.session_timeout:g} s,"
              f" failover grace {args.failover_grace:g} s, {args.runs} runs; logs in {logdir}",
              flush=True)
        times = trio.run(bench, zk, args.runs, args.session_timeout, args.failover_grace,
                         logdir, run_id)
        floor = args.session_timeout + args.failover_grace
        p50 = statistics.median(times)
        print(json.dumps({"session_timeout": args.session_timeout,
                          "failover_grace": args.failover_grace, "runs": len(times),
                          "p50_s": round(p50, 2), "min_s": round(min(times), 2),
                          "max_s": round(max(times), 2), "floor_s": floor,
                          "over_floor_p50_s": round(p50 - floor, 2)}))
        target = 6.0 if (args.session_timeout, args.failover_grace) == (4.0, 1.0) else None
        if target is not None:
            print(f"target p50 < {target:g} s: {'met' if p50 < target else 'MISSED'}")
    finally:
        ids = containers({BENCH_LABEL: run_id}, all_=True)
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=120)
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
