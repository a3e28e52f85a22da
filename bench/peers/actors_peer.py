"""`actors` (this repository): every workload, cross-process ones against a server process
running `bench/actors_bench.py --serve actors`."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

import trio

import actors
from bench import actors_bench as ab

from ._common import FANOUT, Figure, against_server, p50, sizes


async def _local(n_local: int, n_spawn: int) -> dict[str, Figure]:
    out: dict[str, Figure] = {}
    async with actors.open_system("peers-local") as system:
        sink = await system.spawn(ab.Sink, name="sink")
        t0 = time.perf_counter()
        for _ in range(n_local):
            await sink.ask("echo", 1)
        out["local_ask"] = n_local / (time.perf_counter() - t0)

        t0 = time.perf_counter()
        refs = [await system.spawn(ab.Sink, name=f"s{i}") for i in range(n_spawn)]
        out["spawn"] = n_spawn / (time.perf_counter() - t0)

        async def one(ref: actors.ActorRef) -> None:
            await ref.ask("echo", 1)

        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for ref in refs[:FANOUT]:
                nursery.start_soon(one, ref)
        out["fanout"] = (time.perf_counter() - t0) * 1e3
    return out


def measure(scale: float) -> dict[str, Figure]:
    n = sizes(scale)
    out = trio.run(_local, n["local"], max(n["spawn"], FANOUT))
    remote = against_server("actors", ab.actor_figures, n["tell"], n["rtt"], n["conc"])
    # against_server returns one dict of mixed figures: rtt is the list of latencies,
    # conc and tell are rates (floats)
    lat: list[float] = remote["rtt"]  # type: ignore[assignment]
    out["ask_p50"] = p50(lat) * 1e6
    out["ask1"] = 1 / statistics.mean(lat)
    out["ask64"] = remote["conc"]  # type: ignore[assignment]
    out["tell"] = remote["tell"]  # type: ignore[assignment]
    out["mem"] = float(subprocess.check_output(
        [sys.executable, ab.__file__, "--mem", "actors", str(n["idle"])]
    ).decode().split()[-1])
    return out
