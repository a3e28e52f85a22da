"""The floor: no actor layer. A raw trio msgpack socket between two processes for the
cross-process rows (`bench/actors_bench.py --serve raw`), trio tasks on memory channels for
the in-process ones."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from typing import Any

import trio

from bench import actors_bench as ab

from ._common import FANOUT, Figure, against_server, p50, sizes


async def _local(n_local: int, n_spawn: int) -> dict[str, Figure]:
    out: dict[str, Figure] = {}

    async def server(task_status: trio.TaskStatus[tuple[Any, Any]] = trio.TASK_STATUS_IGNORED
                     ) -> None:
        req_s, req_r = trio.open_memory_channel[Any](0)
        rep_s, rep_r = trio.open_memory_channel[Any](0)
        task_status.started((req_s, rep_r))
        async for v in req_r:
            await rep_s.send(v)

    async with trio.open_nursery() as nursery:
        req, rep = await nursery.start(server)
        t0 = time.perf_counter()
        for _ in range(n_local):
            await req.send(1)
            await rep.receive()
        out["local_ask"] = n_local / (time.perf_counter() - t0)

        t0 = time.perf_counter()
        pairs = [await nursery.start(server) for _ in range(n_spawn)]
        out["spawn"] = n_spawn / (time.perf_counter() - t0)

        async def one(pair: tuple[Any, Any]) -> None:
            await pair[0].send(1)
            await pair[1].receive()

        t0 = time.perf_counter()
        async with trio.open_nursery() as fan:
            for pair in pairs[:FANOUT]:
                fan.start_soon(one, pair)
        out["fanout"] = (time.perf_counter() - t0) * 1e3
        nursery.cancel_scope.cancel()
    return out


async def _remote(port: str, n: dict[str, int]) -> tuple[list[float], float, float]:
    """Latencies at 1 outstanding, rate at 64, one-way rate (16 frames per send_all)."""
    return (await ab.raw_rtt(int(port), n["rtt"]),
            await ab.raw_concurrent(int(port), n["conc"], 64),
            await ab.raw_oneway(int(port), n["tell"], 16))


def measure(scale: float) -> dict[str, Figure]:
    n = sizes(scale)
    out = trio.run(_local, n["local"], max(n["spawn"], FANOUT))
    lat, out["ask64"], tell = against_server("raw", _remote, n)
    out["tell"] = (tell, "16 frames per send_all")
    out["ask_p50"] = p50(lat) * 1e6
    out["ask1"] = 1 / statistics.mean(lat)
    out["mem"] = (float(subprocess.check_output(
        [sys.executable, ab.__file__, "--mem", "trio", str(n["idle"])]
    ).decode().split()[-1]), "a bare trio task on a memory channel")
    return out
