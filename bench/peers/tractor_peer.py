"""tractor: structured-concurrency actors on trio, one process per actor.

Idiomatic use per its documentation: `tractor.open_nursery()` + `start_actor(...,
enable_modules=[...])` for a daemon actor, `Portal.run(fn, **kwargs)` for request/reply
(concurrent calls from a trio nursery for 64 outstanding), and a `@tractor.context` with
`open_stream()` for one-way sends. An actor is a process, so there is no in-process ask
and 1,000 actors do not fit this machine; memory and spawn rate are taken on a few.

The newest tractor on PyPI depends on a git-only `pdbpp`, which pip refuses; 0.1.0a5
installs with `--no-deps` plus its dependencies and needs trio < 0.25 (it imports
`trio.MultiError`), so it runs in a virtualenv of its own: see `run.py --python`.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import tractor
import trio

from ._common import Figure, p50, rss, sizes

SPAWNED = 2


async def echo(v: Any = None) -> Any:
    return v


async def pid() -> int:
    return os.getpid()


@tractor.context
async def sink(ctx: tractor.Context) -> None:
    await ctx.started()
    count = 0
    async with ctx.open_stream() as stream:
        async for msg in stream:
            if msg == "total":
                await stream.send(count)
            else:
                count += 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _measure(n: dict[str, int], out: dict[str, Figure]) -> None:
    async with tractor.open_nursery(arbiter_addr=("127.0.0.1", _free_port())) as an:
        portal = await an.start_actor("echo", enable_modules=[__name__])
        await portal.run(echo, v=1)
        lat = []
        for _ in range(n["rtt"] // 2):
            t0 = time.perf_counter()
            await portal.run(echo, v=1)
            lat.append(time.perf_counter() - t0)
        out["ask_p50"] = p50(lat) * 1e6
        out["ask1"] = len(lat) / sum(lat)

        total = n["conc"] // 4

        async def requester(count: int) -> None:
            for _ in range(count):
                await portal.run(echo, v=1)

        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(64):
                nursery.start_soon(requester, total // 64)
        out["ask64"] = (total // 64 * 64) / (time.perf_counter() - t0)

        tells = n["tell"] // 4
        data = ("put", "x" * 60)
        async with portal.open_context(sink) as (ctx, _), ctx.open_stream() as stream:
            t0 = time.perf_counter()
            for _ in range(tells):
                await stream.send(data)
            await stream.send("total")
            assert await stream.receive() == tells
            out["tell"] = tells / (time.perf_counter() - t0)

        t0 = time.perf_counter()
        portals = [await an.start_actor(f"idle{i}", enable_modules=[__name__])
                   for i in range(SPAWNED)]
        pids = [await p.run(pid) for p in portals]
        out["spawn"] = (SPAWNED / (time.perf_counter() - t0), f"{SPAWNED} actors")
        out["mem"] = (sum(rss(p) for p in pids) / len(pids), "RSS of one idle actor process")
        await an.cancel()


def measure(scale: float) -> dict[str, Figure]:
    n = sizes(scale)
    out: dict[str, Figure] = {
        "local_ask": "n/a: tractor has no in-process actors (each is a process)",
        "fanout": "n/a: 1,000 actors are 1,000 processes, more than this machine holds",
    }
    trio.run(_measure, n, out)
    return out
