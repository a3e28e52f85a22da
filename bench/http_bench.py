"""The HTTP API against the actor protocol it fronts: requests/s and latency (p50, p99)
of `GET /v1/jobs` and `POST /v1/jobs/{name}/dispatch`, and of the same operations
(`job_ls`, `job_dispatch`) asked of the conductor actor directly, in the same run.

    python bench/http_bench.py [--requests 400] [--dispatches 100] [--concurrency 1,8]

The cluster is `helios solo --runtime process` started here as a subprocess, serving
HTTP. Both clients run in this one trio program: the HTTP one speaks HTTP/1.1 with h11
over one keep-alive connection per worker (as a script with a connection pool would), the
actor one is `helios.client.Client` (what the CLI uses). Each operation is measured at
each concurrency (workers each sending one request at a time), in the order http, actor,
actor, http (half the requests each time) so neither face gets the quieter moments.
Dispatches create real runs of a parameterized job whose task is `true` (the node runs
them; finished runs are garbage-collected), each with its own idempotency key.

The ratio http/actor says what the HTTP face costs on top of the protocol it forwards
to; the absolute numbers depend on this machine (and what else runs on it).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import h11
import trio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.failover_bench import free_port  # noqa: E402
from helios.client import Client  # noqa: E402

HELIOS = [sys.executable, "-m", "helios.cli"]


class HttpConn:
    """One keep-alive HTTP/1.1 connection (h11 over a trio stream)."""

    def __init__(self, stream: trio.SocketStream, host: str) -> None:
        self.stream = stream
        self.host = host
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(cls, host: str, port: int) -> HttpConn:
        return cls(await trio.open_tcp_stream(host, port), f"{host}:{port}")

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        headers = [("Host", self.host), ("Content-Length", str(len(body)))]
        if body:
            headers.append(("Content-Type", "application/json"))
        for event in (h11.Request(method=method, target=path, headers=headers),
                      h11.Data(data=body), h11.EndOfMessage()):
            data = self.conn.send(event)
            if data:
                await self.stream.send_all(data)
        status, chunks = 0, []
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                self.conn.start_next_cycle()
                return status, b"".join(chunks)
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("the server closed the connection")

    async def aclose(self) -> None:
        await self.stream.aclose()


async def measure(n: int, workers: int,
                  make: Callable[[], Awaitable[Callable[[int], Awaitable[None]]]]
                  ) -> tuple[float, list[float]]:
    """`n` operations spread over `workers` workers; (seconds, per-op latencies)."""
    latencies: list[float] = []
    ops = iter(range(n))
    calls = [await make() for _ in range(workers)]

    async def worker(call: Callable[[int], Awaitable[None]]) -> None:
        for i in ops:
            t0 = time.perf_counter()
            await call(i)
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for call in calls:
            nursery.start_soon(worker, call)
    return time.perf_counter() - start, latencies


def p(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


async def bench(conductor: str, http: str, requests: int, dispatches: int,
                concurrency: list[int]) -> None:
    host, port = http.split(":")
    job = f"bench-{uuid.uuid4().hex[:8]}"
    rows: list[tuple[str, int, str, float, float, float]] = []
    async with Client(None, conductor) as client:
        await client.call("job_run", {"name": job, "kind": "parameterized",
                                      "payload": "forbidden", "command": ["true"],
                                      "resources": {"cpus": 0.01, "memory": "8M"},
                                      "restart": {"policy": "never"}})
        conns: list[HttpConn] = []

        async def http_conn() -> HttpConn:
            c = await HttpConn.open(host, int(port))
            conns.append(c)
            return c

        async def http_ls() -> Callable[[int], Awaitable[None]]:
            c = await http_conn()

            async def call(i: int) -> None:
                status, _ = await c.request("GET", "/v1/jobs")
                assert status == 200, status
            return call

        async def http_dispatch() -> Callable[[int], Awaitable[None]]:
            c = await http_conn()

            async def call(i: int) -> None:
                body = json.dumps({"idempotency_key": f"h-{uuid.uuid4().hex}"}).encode()
                status, out = await c.request("POST", f"/v1/jobs/{job}/dispatch", body)
                assert status == 200, (status, out)
            return call

        async def actor_ls() -> Callable[[int], Awaitable[None]]:
            async def call(i: int) -> None:
                await client.call("job_ls")
            return call

        async def actor_dispatch() -> Callable[[int], Awaitable[None]]:
            async def call(i: int) -> None:
                await client.call("job_dispatch", job, idempotency_key=f"a-{uuid.uuid4().hex}")
            return call

        # warm both paths (connections, imports, the leader's caches)
        await measure(20, 1, http_ls)
        await measure(20, 1, actor_ls)
        for workers in concurrency:
            for op, n, fns in (("GET /v1/jobs", requests, (("http", http_ls),
                                                           ("actor", actor_ls))),
                               ("POST dispatch", dispatches, (("http", http_dispatch),
                                                              ("actor", actor_dispatch)))):
                # ABBA order: what runs later (e.g. while the node still runs the
                # dispatched runs) weighs the same on both faces
                got: dict[str, tuple[float, list[float]]] = {f: (0.0, []) for f, _ in fns}
                for face, fn in (*fns, *reversed(fns)):
                    seconds, lat = await measure(n // 2, workers, fn)
                    got[face] = (got[face][0] + seconds, got[face][1] + lat)
                for face, _ in fns:
                    seconds, lat = got[face]
                    rows.append((op, workers, face, len(lat) / seconds, p(lat, 0.5),
                                 p(lat, 0.99)))
        for c in conns:
            await c.aclose()
        await client.call("job_rm", job)

    print(f"{'operation':<15} {'conc':>4} {'face':<6} {'req/s':>9} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'http/actor':>11}")
    by_key = {(r[0], r[1], r[2]): r for r in rows}
    for op, workers, face, rate, p50, p99 in rows:
        ratio = ""
        if face == "http":
            other = by_key[(op, workers, "actor")]
            ratio = f"{rate / other[3]:.2f}x rate"
        print(f"{op:<15} {workers:>4} {face:<6} {rate:>9.0f} {p50:>8.2f} {p99:>8.2f} "
              f"{ratio:>11}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--dispatches", type=int, default=100)
    ap.add_argument("--concurrency", default="1,8")
    args = ap.parse_args()
    conductor, http = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    with tempfile.TemporaryDirectory() as state:
        log = open(Path(state) / "solo.log", "wb")  # noqa: SIM115 (closed below)
        proc = subprocess.Popen([*HELIOS, "solo", "--runtime", "process", "--listen",
                                 conductor, "--http", http, "--state-dir", state],
                                stdout=log, stderr=subprocess.STDOUT,
                                env=dict(os.environ))
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    host, _, port = http.rpartition(":")
                    socket.create_connection((host, int(port)), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        sys.exit("helios solo did not start: "
                                 + (Path(state) / "solo.log").read_text()[-2000:])
                    time.sleep(0.2)
            trio.run(bench, conductor, http, args.requests, args.dispatches,
                     [int(c) for c in args.concurrency.split(",")])
        finally:
            proc.terminate()  # SIGTERM: the daemon stops cleanly; SIGKILL if it hangs
            deadline = time.monotonic() + 20
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()


if __name__ == "__main__":
    main()
