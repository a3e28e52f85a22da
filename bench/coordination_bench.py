"""Coordination layer benchmark: the layer against raw kazoo, on one ZooKeeper, one run.

    python bench/coordination_bench.py [--zk HOSTS] [-n 2000] [--session-timeout 2]

Without --zk it starts its own ZooKeeper (tests/fixtures/zookeeper.py: standalone,
tickTime 200 ms, forceSync=no) and stops it by PID at the end. Figures, each next to its
raw baseline and the ratio:

- sequential writes and reads: one call at a time, `ZooKeeperStore.set/get` (trio, JSON
  codec) against `KazooClient.set/get` (blocking, bytes). Target: layer under 1.2x time;
- pipelined writes: many calls outstanding, trio tasks against kazoo `set_async`;
- leader failover: SIGKILL of the leader's process until another process holds a higher
  epoch, against the session timeout (the floor: ZooKeeper must expire the session).
  Target: under session timeout + 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import trio
from kazoo.client import KazooClient

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from helios.coordination import open_zookeeper  # noqa: E402

VALUE = {"job": "web", "node": "n1", "state": "running", "ports": {"http": 21004}}


def raw_client(hosts: str) -> KazooClient:
    client = KazooClient(hosts=hosts, timeout=10.0)
    client.start(timeout=15)
    return client


def bench_raw_sequential(hosts: str, root: str, n: int) -> tuple[float, float]:
    client = raw_client(hosts)
    try:
        path = f"{root}/raw/key"
        client.ensure_path(f"{root}/raw")
        data = json.dumps(VALUE, separators=(",", ":")).encode()
        client.create(path, data)
        t = time.perf_counter()
        for _ in range(n):
            client.set(path, data)
        writes = n / (time.perf_counter() - t)
        t = time.perf_counter()
        for _ in range(n):
            client.get(path)
        reads = n / (time.perf_counter() - t)
        return writes, reads
    finally:
        client.stop()
        client.close()


def bench_raw_pipelined(hosts: str, root: str, n: int, window: int) -> float:
    client = raw_client(hosts)
    try:
        path = f"{root}/rawp/key"
        client.ensure_path(f"{root}/rawp")
        data = json.dumps(VALUE, separators=(",", ":")).encode()
        client.create(path, data)
        t = time.perf_counter()
        pending = []
        for _ in range(n):
            pending.append(client.set_async(path, data))
            if len(pending) >= window:
                for r in pending:
                    r.get()
                pending = []
        for r in pending:
            r.get()
        return n / (time.perf_counter() - t)
    finally:
        client.stop()
        client.close()


async def bench_layer(hosts: str, root: str, n: int, window: int) -> tuple[float, float, float]:
    async with await open_zookeeper(hosts, root) as store:
        await store.create("/layer/key", VALUE)
        t = time.perf_counter()
        for _ in range(n):
            await store.set("/layer/key", VALUE)
        writes = n / (time.perf_counter() - t)
        t = time.perf_counter()
        for _ in range(n):
            await store.get("/layer/key")
        reads = n / (time.perf_counter() - t)

        await store.create("/layerp/key", VALUE)
        limiter = trio.CapacityLimiter(window)

        async def one() -> None:
            async with limiter:
                await store.set("/layerp/key", VALUE)

        t = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(one)
        pipelined = n / (time.perf_counter() - t)
        return writes, reads, pipelined


CONTENDER = textwrap.dedent("""
    import sys, time, trio
    from helios.coordination import open_zookeeper, lead

    async def main(hosts, root, name, timeout):
        store = await open_zookeeper(hosts, root, session_timeout=timeout)
        async def body(term):
            print(f"leader {name} {term.epoch} {time.monotonic()}", flush=True)
            await trio.sleep_forever()
        await lead(store, name, body)

    trio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]))
""")


def bench_failover(hosts: str, root: str, session_timeout: float, rounds: int) -> list[float]:
    """Two contender processes; each round SIGKILLs the leader and starts a replacement."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def spawn(name: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", CONTENDER, hosts, root, name, str(session_timeout)],
            stdout=subprocess.PIPE, text=True, env=env)

    procs: dict[str, subprocess.Popen[str]] = {}
    times: list[float] = []
    try:
        procs["c0"] = spawn("c0")
        line = procs["c0"].stdout.readline().split()      # c0 leads first
        leader, epoch = line[1], int(line[2])
        for i in range(rounds):
            standby = f"c{i + 1}"
            procs[standby] = spawn(standby)
            time.sleep(1.5)                                  # standby is contending
            t0 = time.monotonic()
            procs[leader].kill()                             # SIGKILL, by PID
            procs[leader].wait(10)
            line = procs[standby].stdout.readline().split()
            assert line and line[1] == standby and int(line[2]) > epoch, line
            times.append(float(line[3]) - t0)
            leader, epoch = standby, int(line[2])
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
            p.wait(10)
    return times


def row(what: str, layer: float, raw: float, unit: str) -> None:
    print(f"{what:<28} layer {layer:>9.0f} {unit}   raw kazoo {raw:>9.0f} {unit}   "
          f"layer/raw {layer / raw:5.2f}   overhead {(raw / layer - 1) * 100:+5.1f}%")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zk", help="connection string; default: start a ZooKeeper")
    ap.add_argument("-n", type=int, default=1000, help="operations per round")
    ap.add_argument("--repeat", type=int, default=5, help="alternating rounds")
    ap.add_argument("--window", type=int, default=256, help="outstanding pipelined calls")
    ap.add_argument("--session-timeout", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3, help="failovers to measure")
    args = ap.parse_args()

    server = None
    if args.zk is None:
        from tests.fixtures.zookeeper import start_zookeeper

        server = start_zookeeper(Path(tempfile.mkdtemp(prefix="helios-bench-zk-")))
        hosts = server.hosts
        print(f"ZooKeeper: own server {hosts} (pid {server.pid}, tickTime 200ms, "
              "forceSync=no)")
    else:
        hosts = args.zk
        print(f"ZooKeeper: {hosts}")
    root = f"/helios-bench-{uuid.uuid4().hex[:8]}"
    try:
        # warm up, then alternate raw and layer rounds so that load from anything else on
        # the machine hits both alike; report the median round of each
        bench_raw_sequential(hosts, root + "-warm", 200)
        trio.run(bench_layer, hosts, root + "-warm", 200, args.window)
        raw_w, raw_r, raw_p, lay_w, lay_r, lay_p = ([] for _ in range(6))
        for i in range(args.repeat):
            w, r = bench_raw_sequential(hosts, f"{root}/raw{i}", args.n)
            raw_w.append(w)
            raw_r.append(r)
            raw_p.append(bench_raw_pipelined(hosts, f"{root}/rawp{i}", args.n * 2, args.window))
            w, r, p = trio.run(bench_layer, hosts, f"{root}/layer{i}", args.n, args.window)
            lay_w.append(w)
            lay_r.append(r)
            lay_p.append(p)
        med = statistics.median
        print(f"operations: {args.n} sequential, {args.n * 2} pipelined "
              f"({args.window} outstanding), median of {args.repeat} alternating rounds; "
              f"value {len(json.dumps(VALUE))} bytes")
        row("sequential writes", med(lay_w), med(raw_w), "ops/s")
        row("sequential reads", med(lay_r), med(raw_r), "ops/s")
        row("pipelined writes", med(lay_p), med(raw_p), "ops/s")
        times = bench_failover(hosts, root + "-election", args.session_timeout, args.rounds)
        fo = statistics.median(times)
        print(f"{'leader failover (SIGKILL)':<28} layer {fo:>9.2f} s      "
              f"session timeout {args.session_timeout:>5.2f} s   ratio "
              f"{fo / args.session_timeout:5.2f}"
              f"   target < {args.session_timeout + 1:.2f} s   rounds "
              + ", ".join(f"{t:.2f}" for t in times))
    finally:
        try:
            c = raw_client(hosts)
            for r in (root, root + "-warm", root + "-election"):
                c.delete(r, recursive=True)
            c.stop()
            c.close()
        except Exception as e:
            print(f"cleanup failed: {e!r}")
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
