"""Fleet benchmark: many real node daemons on the `sim` runtime against one real ZooKeeper
and real conductors, on one machine.

    python bench/fleet_bench.py [--zk HOSTS] [--nodes 1000] [--tasks 10000] [--per-proc 100]
                                [--kill 100] [--jobs 20] [--session-timeout 4]

Every node is a complete `helios node` daemon (its own actor system and TCP port, its
own ZooKeeper session, its own state directory); only the machine is simulated
(`--runtime sim`: no container, no process). Nodes run `--per-proc` to a process
(`python -m helios.node.fleet`), so the first fleet process holds exactly `--kill` nodes.
Two `helios conductor` processes contend for leadership.

Measured, in order:

1. nodes up: from the first fleet process started to every node listed `up`;
2. converge: `--jobs` services totalling `--tasks` tasks (0.1 cpu, 64 MiB, no ports,
   no health check, `spread: true`, so each node ends with about tasks/nodes of them
   rather than a few full nodes; nodes have `--node-cpus`) submitted at once, until
   every task is `running`; placements per second, the leader's CPU seconds per
   placement and its RSS (from /proc), ZooKeeper's requests per second (`mntr`
   zk_packets_received, sampled every 0.5 s) and its outstanding-request peak
   (`zk_outstanding_requests`, sampled the same way), znodes and watches;
3. re-place: the first fleet process SIGKILLed (`--kill` nodes at once) until every
   task is `running` again; the floor is the session timeout (ZooKeeper must expire the
   sessions) plus the failover grace (1 s), printed next to it;
4. leader failover: the leading conductor SIGKILLed until the other one leads and
   answers `job ls` with every task still running.

The baseline is Nomad's published C1M run (1,000,000 containers on 5,000 hosts, about
3,750 placements/s with 5 servers); per placement, the comparison is printed as
placements per second per conductor CPU second. Without --zk it starts its own ZooKeeper
(tests/fixtures/zookeeper.py; sessions of at most 4 s) and stops it by PID; every process
it starts is stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import trio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._zookeeper import bench_zookeeper  # noqa: E402
from helios.client import Client  # noqa: E402
from tests.fixtures.common import free_port  # noqa: E402
from tests.fixtures.zookeeper import four_letter  # noqa: E402

HELIOS = [sys.executable, "-m", "helios.cli"]
FLEET = [sys.executable, "-m", "helios.node.fleet"]
#: Nomad C1M: 1,000,000 containers in about 4.5 minutes with 5 servers
NOMAD_PLACEMENTS_PER_S = 3750.0
NOMAD_SERVERS = 5
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------ processes
#: every simulated node connects from 127.0.0.1: lift the per-address connection limits
#: (real nodes each have an address of their own)
FLEET_LIMITS = ("max_connections=8192,max_connections_per_host=8192,"
                "max_connection_rate=100000")


class Procs:
    """Every process the benchmark starts, stopped by PID at the end."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with open(self.logdir / f"{name}.log", "ab") as out:
            p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL,
                                 env=dict(os.environ, PYTHONUNBUFFERED="1",
                                          HELIOS_LIMITS=FLEET_LIMITS))
        self.procs[name] = p
        return p

    def kill(self, name: str) -> None:
        p = self.procs[name]
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait(30)

    def stop_all(self) -> None:
        for p in reversed(list(self.procs.values())):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (its threads included)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0]) * 1024
    return out.get("VmRSS", 0), out.get("VmHWM", 0)


class Mntr(threading.Thread):
    """Samples ZooKeeper's `mntr` every 0.5 s: request rate and outstanding peak."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.stop_flag = threading.Event()

    def sample(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for line in four_letter(self.port, "mntr", timeout=2.0).splitlines():
            parts = line.split("\t")
            if len(parts) == 2:
                try:
                    out[parts[0]] = float(parts[1])
                except ValueError:
                    pass
        return out

    def run(self) -> None:
        while not self.stop_flag.is_set():
            s = self.sample()
            if s:
                self.samples.append((time.monotonic(), s))
            self.stop_flag.wait(0.5)

    def window(self, start: float, end: float) -> dict[str, float]:
        """Requests/s and outstanding peak between two monotonic times."""
        inside = [(t, s) for t, s in self.samples if start <= t <= end]
        if len(inside) < 2:
            return {"requests_per_s": 0.0, "outstanding_peak": 0.0}
        (t0, s0), (t1, s1) = inside[0], inside[-1]
        rate = (s1.get("zk_packets_received", 0) - s0.get("zk_packets_received", 0)) \
            / max(t1 - t0, 1e-9)
        peak = max(s.get("zk_outstanding_requests", 0) for _, s in inside)
        return {"requests_per_s": rate, "outstanding_peak": peak,
                "znodes": s1.get("zk_znode_count", 0), "watches": s1.get("zk_watch_count", 0),
                "connections": s1.get("zk_num_alive_connections", 0)}


# ------------------------------------------------------------------------ cluster calls
async def wait_for(client: Client, method: str, pred: Any, timeout: float,
                   what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await client.call(method, timeout=60.0)
            if pred(last):
                return last
        except Exception as e:  # mid-failover: keep asking
            last = e
        await trio.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}; last: "
                       f"{str(last)[:300]}")


async def call(client: Client, method: str, *args: Any, timeout: float = 300.0) -> Any:
    """`client.call`, retried while the leader is too busy to answer (on a saturated
    machine its handshakes and heartbeats time out now and then)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await client.call(method, *args, timeout=60.0)
        except Exception as e:
            if time.monotonic() > deadline:
                raise
            print(f"({method}: {e}; asking again)", flush=True)
            await trio.sleep(1.0)


def running(jobs: list[dict[str, Any]]) -> int:
    return sum(j["running"] for j in jobs)


async def running_on_up_nodes(client: Client, jobs: list[str]) -> int:
    """Tasks `running` on nodes that are up (a dead node's tasks still read `running`
    until its session expires and the failover grace has run)."""
    up = {n["name"] for n in await client.call("nodes", timeout=60.0) if n["status"] == "up"}
    total = 0
    for job in jobs:
        doc = await client.call("job_status", job, timeout=60.0)
        total += sum(1 for t in doc["tasks"] if t["state"] == "running" and t["node"] in up)
    return total


async def wait_all_running(client: Client, jobs: list[str], tasks: int, timeout: float,
                           what: str) -> None:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await running_on_up_nodes(client, jobs)
            if last == tasks:
                return
        except Exception as e:  # mid-failover: keep asking
            last = e
        await trio.sleep(0.5)
    raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}; last: {last}")


def leader_pid(procs: Procs, leader: dict[str, Any]) -> tuple[str, int]:
    name = leader["name"]
    return name, procs.procs[name].pid


async def bench(zk: str, args: argparse.Namespace, procs: Procs) -> dict[str, Any]:
    root = f"/fleet-bench-{uuid.uuid4().hex[:8]}"
    zkr = f"{zk}{root}"
    port = int(zk.split(",")[0].rsplit(":", 1)[1])
    mntr = Mntr(port)
    mntr.start()
    fig: dict[str, Any] = {}
    session = str(args.session_timeout)
    for name in ("c1", "c2"):
        procs.start(name, [*HELIOS, "conductor", "--zk", zkr, "--name", name,
                           "--listen", f"127.0.0.1:{free_port()}",
                           "--session-timeout", session, "--failover-grace", "1"])
    state = Path(tempfile.mkdtemp(prefix="helios-fleet-"))
    sizes = [args.kill] + [args.per_proc] * ((args.nodes - args.kill) // args.per_proc)
    if sum(sizes) < args.nodes:
        sizes.append(args.nodes - sum(sizes))
    t0 = time.monotonic()
    first = 0
    for i, count in enumerate(sizes):
        procs.start(f"fleet{i}", [*FLEET, "--zk", zkr, "--count", str(count),
                                  "--prefix", f"f{i}", "--first", str(first),
                                  "--state-dir", str(state / f"f{i}"),
                                  "--cpus", str(args.node_cpus), "--memory", "64G",
                                  "--session-timeout", session,
                                  "--start-rate", str(args.start_rate)])
        first += count
    async with Client(zkr, None, timeout=60.0) as client:
        await wait_for(client, "nodes",
                       lambda ns: sum(n["status"] == "up" for n in ns) == args.nodes,
                       args.timeout, f"{args.nodes} nodes up", interval=1.0)
        fig["nodes_up_s"] = time.monotonic() - t0
        print(f"nodes up: {args.nodes} in {fig['nodes_up_s']:.1f} s", flush=True)

        lead = await call(client, "leader")
        lname, lpid = leader_pid(procs, lead)
        cpu0 = cpu_seconds(lpid)
        per_job = args.tasks // args.jobs
        t1 = time.monotonic()
        for j in range(args.jobs):
            await call(client, "job_run", {
                "name": f"svc{j:03d}", "kind": "service", "command": ["server"],
                "count": per_job + (args.tasks - per_job * args.jobs if j == 0 else 0),
                "resources": {"cpus": 0.1, "memory": "64M"}, "spread": True})
        await wait_for(client, "job_ls", lambda js: running(js) == args.tasks, args.timeout,
                       f"{args.tasks} tasks running")
        t2 = time.monotonic()
        cpu1 = cpu_seconds(lpid)
        fig["converge_s"] = t2 - t1
        fig["placements_per_s"] = args.tasks / fig["converge_s"]
        fig["leader_cpu_s"] = cpu1 - cpu0
        fig["cpu_ms_per_placement"] = 1000 * (cpu1 - cpu0) / args.tasks
        fig["leader_rss"], fig["leader_hwm"] = rss(lpid)
        fig["zk_converge"] = mntr.window(t1, t2)
        print(f"converge: {args.tasks} tasks in {fig['converge_s']:.1f} s "
              f"({fig['placements_per_s']:.0f} placements/s); leader {lname} "
              f"{fig['leader_cpu_s']:.1f} CPU s ({fig['cpu_ms_per_placement']:.2f} ms per "
              f"placement), RSS {fig['leader_rss'] >> 20} MiB (peak "
              f"{fig['leader_hwm'] >> 20} MiB)", flush=True)
        z = fig["zk_converge"]
        print(f"ZooKeeper while converging: {z['requests_per_s']:.0f} requests/s, "
              f"outstanding peak {z['outstanding_peak']:.0f}, {z.get('znodes', 0):.0f} "
              f"znodes, {z.get('watches', 0):.0f} watches, "
              f"{z.get('connections', 0):.0f} connections", flush=True)
        await trio.sleep(15)  # settled: the last reports are written
        z = mntr.window(time.monotonic() - 10, time.monotonic())
        fig["zk_idle"] = z
        print(f"ZooKeeper at rest: {z['requests_per_s']:.0f} requests/s "
              f"({z['requests_per_s'] / args.nodes:.2f} per node)", flush=True)

        # --- kill `--kill` nodes at once
        names = [j["name"] for j in await call(client, "job_ls")]
        t3 = time.monotonic()
        procs.kill("fleet0")
        await wait_for(client, "nodes",
                       lambda ns: sum(n["status"] == "up" for n in ns)
                       == args.nodes - args.kill, args.timeout, "the killed nodes down")
        t_down = time.monotonic() - t3
        await wait_all_running(client, names, args.tasks, args.timeout,
                               "every task running again on a live node")
        t4 = time.monotonic()
        fig["replace_s"] = t4 - t3
        fig["replace_down_s"] = t_down
        fig["zk_replace"] = mntr.window(t3, t4)
        print(f"re-place after SIGKILL of {args.kill} nodes: every task running again in "
              f"{fig['replace_s']:.1f} s (nodes seen down after {t_down:.1f} s; floor: "
              f"session {args.session_timeout:g} s + grace 1 s); ZooKeeper "
              f"{fig['zk_replace']['requests_per_s']:.0f} requests/s, outstanding peak "
              f"{fig['zk_replace']['outstanding_peak']:.0f}", flush=True)

        # --- leader failover
        lead = await call(client, "leader")
        lname, lpid = leader_pid(procs, lead)
        t5 = time.monotonic()
        procs.kill(lname)
        other = "c2" if lname == "c1" else "c1"
        await wait_for(client, "leader", lambda info: info.get("name") == other,
                       args.timeout, "the other conductor leading", interval=0.1)
        t6 = time.monotonic()
        await wait_for(client, "job_ls", lambda js: running(js) == args.tasks, args.timeout,
                       "the new leader's job ls", interval=0.1)
        t7 = time.monotonic()
        opid = procs.procs[other].pid
        fig["failover_elected_s"] = t6 - t5
        fig["failover_ready_s"] = t7 - t5
        fig["new_leader_rss"] = rss(opid)[0]
        print(f"leader failover: {other} leads {fig['failover_elected_s']:.1f} s after "
              f"SIGKILL of {lname}, answers with every task running after "
              f"{fig['failover_ready_s']:.1f} s (its RSS {fig['new_leader_rss'] >> 20} MiB)",
              flush=True)
    mntr.stop_flag.set()
    fleet_rss = sum(rss(p.pid)[0] for n, p in procs.procs.items()
                    if n.startswith("fleet") and p.poll() is None)
    alive_nodes = args.nodes - args.kill
    fig["rss_per_sim_node"] = fleet_rss / max(alive_nodes, 1)
    print(f"sim nodes: {fleet_rss >> 20} MiB for {alive_nodes} nodes "
          f"({fig['rss_per_sim_node'] / 2**20:.1f} MiB each, with their tasks)", flush=True)
    nomad_per_server = NOMAD_PLACEMENTS_PER_S / NOMAD_SERVERS
    ratio = fig["placements_per_s"] / nomad_per_server
    print(f"baseline: Nomad C1M {NOMAD_PLACEMENTS_PER_S:.0f} placements/s with "
          f"{NOMAD_SERVERS} servers ({nomad_per_server:.0f}/s per server); Helios here "
          f"{fig['placements_per_s']:.0f}/s with one leader on a shared 2-core machine "
          f"that also runs ZooKeeper and every node ({ratio:.2f}x "
          f"a Nomad server), the leader spending {fig['cpu_ms_per_placement']:.2f} CPU ms "
          f"per placement", flush=True)
    return fig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--zk", default=None, help="ZooKeeper hosts (default: start one)")
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--tasks", type=int, default=10000)
    p.add_argument("--per-proc", type=int, default=100)
    p.add_argument("--kill", type=int, default=100)
    p.add_argument("--jobs", type=int, default=20)
    p.add_argument("--session-timeout", type=float, default=4.0)
    p.add_argument("--node-cpus", type=float, default=2.0,
                   help="CPUs of each sim node (tasks take 0.1)")
    p.add_argument("--start-rate", type=float, default=50.0,
                   help="nodes started per second per fleet process")
    p.add_argument("--timeout", type=float, default=900.0,
                   help="bound of every wait, seconds")
    args = p.parse_args()
    if args.kill > args.nodes:
        p.error("--kill must not exceed --nodes")
    logdir = Path(tempfile.mkdtemp(prefix="helios-fleet-bench-"))
    print(f"fleet bench: {args.nodes} sim nodes ({args.per_proc} per process), "
          f"{args.tasks} tasks in {args.jobs} jobs; logs in {logdir}", flush=True)
    with bench_zookeeper(args.zk) as zk:
        procs = Procs(logdir)
        try:
            trio.run(bench, zk, args, procs)
        finally:
            procs.stop_all()


if __name__ == "__main__":
    main()
