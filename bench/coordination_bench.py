"""Coordination layer benchmark: the layer against raw kazoo, on one ZooKeeper, one run.

    python bench/coordination_bench.py [--zk HOSTS] [-n 2000] [--session-timeout 2]

Without --zk it starts its own ZooKeeper (tests/fixtures/zookeeper.py: standalone,
tickTime 200 ms, forceSync=no) and stops it by PID at the end. Figures, each next to its
raw baseline and the ratio:

Throughput on a shared 2-core machine is noisy, so rounds are paired and alternated, and
CPU time per operation (all threads of the process) is printed too: it is the cost the
layer adds, whatever else the machine is doing.

- sequential writes and reads: one call at a time, `ZooKeeperStore.set/get` (trio, JSON
  codec) against `KazooClient.set/get` (blocking, bytes). Target: layer under 1.2x time;
- pipelined writes: many calls outstanding, trio tasks against kazoo `set_async`;
- writes batched in transactions (how the conductor should write), `Store.transaction`
  against kazoo's `transaction().commit()`;
- leader failover: SIGKILL of the leader's process until another process holds a higher
  epoch, against the session timeout (the floor: ZooKeeper must expire the session).
  Target: under session timeout + 1 s.
- the embedded store (`helios solo`), which syncs every acknowledged write
  (`synchronous=FULL`): `EmbeddedStore.set` against raw sqlite3 upserts with FULL and
  with NORMAL on the same disk, so the price of durability is printed next to the layer's
  own cost (`--embedded-only` runs this part alone, without ZooKeeper).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import trio
from kazoo.client import KazooClient

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._zookeeper import bench_zookeeper  # noqa: E402
from helios.coordination import Set, ZooKeeperStore, open_zookeeper  # noqa: E402

VALUE = {"job": "web", "node": "n1", "state": "running", "ports": {"http": 21004}}


def raw_client(hosts: str) -> KazooClient:
    client = KazooClient(hosts=hosts, timeout=10.0)
    client.start(timeout=15)
    return client


TX_OPS = 50


class Figures:
    """Raw kazoo and layer versions of each measured operation on the same keys.

    Raw calls are made synchronously from the trio thread: nothing else runs meanwhile,
    so that is exactly the cost of a blocking kazoo call."""

    def __init__(self, client: KazooClient, store: ZooKeeperStore, window: int) -> None:
        self.client = client
        self.store = store
        self.window = window
        self.data = json.dumps(VALUE, separators=(",", ":")).encode()
        self.raw_key = f"{store.root}/raw/key"
        self.tx_keys = [f"/tx/k{i}" for i in range(TX_OPS)]

    async def setup(self) -> None:
        await self.store.create("/raw/key", VALUE)
        await self.store.create("/layer/key", VALUE)
        for k in self.tx_keys:
            await self.store.create(k, VALUE)

    # sequential writes
    def raw_set(self, n: int) -> None:
        for _ in range(n):
            self.client.set(self.raw_key, self.data)

    async def layer_set(self, n: int) -> None:
        for _ in range(n):
            await self.store.set("/layer/key", VALUE)

    # sequential reads
    def raw_get(self, n: int) -> None:
        for _ in range(n):
            self.client.get(self.raw_key)

    async def layer_get(self, n: int) -> None:
        for _ in range(n):
            await self.store.get("/layer/key")

    # pipelined writes, `window` outstanding
    def raw_pipelined(self, n: int) -> None:
        pending = []
        for _ in range(n):
            pending.append(self.client.set_async(self.raw_key, self.data))
            if len(pending) >= self.window:
                for r in pending:
                    r.get()
                pending = []
        for r in pending:
            r.get()

    async def layer_pipelined(self, n: int) -> None:
        per_task, extra = divmod(n, self.window)

        async def writer(count: int) -> None:
            for _ in range(count):
                await self.store.set("/layer/key", VALUE)

        async with trio.open_nursery() as nursery:
            for i in range(self.window):
                nursery.start_soon(writer, per_task + (1 if i < extra else 0))

    # writes batched TX_OPS to a transaction
    def raw_tx(self, n: int) -> None:
        for _ in range(n // TX_OPS):
            tx = self.client.transaction()
            for k in self.tx_keys:
                tx.set_data(self.store._abs(k), self.data)
            tx.commit()

    async def layer_tx(self, n: int) -> None:
        for _ in range(n // TX_OPS):
            await self.store.transaction([Set(k, VALUE) for k in self.tx_keys])


async def measure(hosts: str, root: str, n: int, window: int, repeat: int
                  ) -> list[tuple[str, list[float], list[float], float, float]]:
    """Per figure, `repeat` paired rounds (raw and layer back to back, order alternating
    so load from anything else on the machine hits both alike): ops/s lists."""
    client = await trio.to_thread.run_sync(raw_client, hosts)
    store = await open_zookeeper(hosts, root)
    try:
        f = Figures(client, store, window)
        await f.setup()
        plan = [("sequential writes", f.raw_set, f.layer_set, n),
                ("sequential reads", f.raw_get, f.layer_get, n),
                ("pipelined writes", f.raw_pipelined, f.layer_pipelined, 2 * n),
                (f"writes in {TX_OPS}-op txns", f.raw_tx, f.layer_tx, 5 * n)]
        out = []
        for name, raw_fn, layer_fn, count in plan:
            raw_fn(count // 5)                              # warm up both
            await layer_fn(count // 5)
            raws: list[float] = []
            layers: list[float] = []
            cpu = {"raw": 0.0, "layer": 0.0}
            for i in range(repeat):
                for which in (("raw", "layer") if i % 2 == 0 else ("layer", "raw")):
                    t, c = time.perf_counter(), time.process_time()
                    if which == "raw":
                        raw_fn(count)
                        raws.append(count / (time.perf_counter() - t))
                    else:
                        await layer_fn(count)
                        layers.append(count / (time.perf_counter() - t))
                    cpu[which] += time.process_time() - c
            ops = count * repeat
            out.append((name, raws, layers, cpu["raw"] / ops * 1e6, cpu["layer"] / ops * 1e6))
        return out
    finally:
        await store.aclose()
        await trio.to_thread.run_sync(client.stop)
        client.close()


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


def row(what: str, raws: list[float], layers: list[float]) -> None:
    """Median rates, and the median of the paired per-round ratios (robust to drift)."""
    raw, layer = statistics.median(raws), statistics.median(layers)
    ratio = statistics.median(lay / r for lay, r in zip(layers, raws, strict=True))
    print(f"{what:<26} layer {layer:>7.0f} ops/s   raw kazoo {raw:>7.0f} ops/s   "
          f"layer/raw {ratio:4.2f}   time overhead {(1 / ratio - 1) * 100:+5.1f}%   "
          f"(rounds: {' '.join(f'{lay / r:.2f}' for lay, r in zip(layers, raws, strict=True))})")


def bench_embedded(n: int) -> None:
    """Writes per second: the embedded store, and raw SQLite in WAL mode with FULL and
    NORMAL sync, in one temporary directory."""
    import sqlite3
    import tempfile

    from helios.coordination import open_embedded

    def raw(mode: str, d: str) -> float:
        db = sqlite3.connect(os.path.join(d, f"raw-{mode}.db"), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={mode}")
        db.execute("CREATE TABLE t(k TEXT PRIMARY KEY, v BLOB)")
        data = json.dumps(VALUE).encode()
        t0 = time.perf_counter()
        for i in range(n):
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT OR REPLACE INTO t VALUES (?, ?)", (f"k{i % 50}", data))
            db.execute("COMMIT")
        dt = time.perf_counter() - t0
        db.close()
        return n / dt

    async def layer(d: str) -> float:
        store = await open_embedded(os.path.join(d, "store.db"))
        try:
            for i in range(50):
                await store.put(f"/k{i}", VALUE)
            t0 = time.perf_counter()
            for i in range(n):
                await store.set(f"/k{i % 50}", VALUE)
            return n / (time.perf_counter() - t0)
        finally:
            await store.aclose()

    with tempfile.TemporaryDirectory(prefix="helios-embedded-bench-") as d:
        full, normal = raw("FULL", d), raw("NORMAL", d)
        store = trio.run(layer, d)
    print(f"{'embedded store writes':<26} layer {store:>7.0f} ops/s   raw sqlite FULL "
          f"{full:>7.0f} ops/s   layer/raw {store / full:4.2f}   "
          f"(raw sqlite NORMAL {normal:.0f} ops/s: durability costs "
          f"{normal / full:.0f}x on this disk)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zk", help="connection string; default: start a ZooKeeper")
    ap.add_argument("-n", type=int, default=1000, help="operations per round")
    ap.add_argument("--repeat", type=int, default=5, help="alternating rounds")
    ap.add_argument("--window", type=int, default=256, help="outstanding pipelined calls")
    ap.add_argument("--session-timeout", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3, help="failovers to measure")
    ap.add_argument("--embedded-only", action="store_true",
                    help="only the embedded store's figures (no ZooKeeper)")
    args = ap.parse_args()
    bench_embedded(min(args.n, 500))
    if args.embedded_only:
        return

    with bench_zookeeper(args.zk) as hosts:
        root = f"/helios-bench-{uuid.uuid4().hex[:8]}"
        try:
            results = trio.run(measure, hosts, root, args.n, args.window, args.repeat)
            print(f"operations per round: {args.n} sequential, {2 * args.n} pipelined "
                  f"({args.window} outstanding), {5 * args.n} in transactions; "
                  f"{args.repeat} paired rounds, medians; value {len(json.dumps(VALUE))} bytes")
            for name, raws, layers, raw_cpu, layer_cpu in results:
                row(name, raws, layers)
                print(f"{'':<26} CPU per op (all threads): layer {layer_cpu:6.0f} us   "
                      f"raw kazoo {raw_cpu:6.0f} us   layer/raw {layer_cpu / raw_cpu:4.2f}")
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
                for r in (root, root + "-election"):
                    c.delete(r, recursive=True)
                c.stop()
                c.close()
            except Exception as e:
                print(f"cleanup failed: {e!r}")


if __name__ == "__main__":
    main()
