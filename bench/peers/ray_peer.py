"""Ray: every actor is a worker process, reached through the local raylet.

Idiomatic use per its documentation: `@ray.remote` classes, `actor.method.remote()`
returning ObjectRefs, `ray.get` on a list of refs rather than in a loop for throughput
("Anti-pattern: calling ray.get in a loop harms parallelism"), and calls whose result is
never fetched for one-way sends. Ray has no in-process actors, and an actor is a process
(tens of MB), so 1,000 of them do not fit this machine: those rows say so, and memory and
spawn rate are taken on a few actors.
"""

from __future__ import annotations

import os
import time
from typing import Any

import ray

from ._common import Figure, p50, rss, sizes

SPAWNED = 4


@ray.remote
class Echo:
    def __init__(self) -> None:
        self.count = 0

    def echo(self, v: Any) -> Any:
        return v

    def put(self, data: str, n: int = 1) -> None:
        self.count += 1

    def total(self) -> int:
        return self.count

    def pid(self) -> int:
        return os.getpid()


def measure(scale: float) -> dict[str, Figure]:
    n = sizes(scale)
    out: dict[str, Figure] = {
        "local_ask": "n/a: Ray has no in-process actors (each is a worker process)",
        "fanout": "n/a: 1,000 actors are 1,000 worker processes, more than this machine holds",
    }
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR",
             log_to_driver=False)
    try:
        # @ray.remote adds `.remote` at run time; Ray's stubs do not show it on the class
        a = Echo.remote()  # type: ignore[attr-defined]
        ray.get(a.echo.remote(1))
        lat = []
        for _ in range(n["rtt"] // 2):
            t0 = time.perf_counter()
            ray.get(a.echo.remote(1))
            lat.append(time.perf_counter() - t0)
        out["ask_p50"] = p50(lat) * 1e6
        out["ask1"] = len(lat) / sum(lat)

        total = n["conc"] // 4
        t0 = time.perf_counter()
        for _ in range(total // 64):
            ray.get([a.echo.remote(1) for _ in range(64)])
        out["ask64"] = (total // 64 * 64) / (time.perf_counter() - t0)

        tells = n["tell"] // 10
        data = "x" * 60
        t0 = time.perf_counter()
        for _ in range(tells):
            a.put.remote(data, n=1)
        while ray.get(a.total.remote()) < tells:
            pass
        out["tell"] = tells / (time.perf_counter() - t0)

        t0 = time.perf_counter()
        more = [Echo.remote() for _ in range(SPAWNED)]  # type: ignore[attr-defined]  # as above
        pids = ray.get([m.pid.remote() for m in more])
        out["spawn"] = (SPAWNED / (time.perf_counter() - t0), f"{SPAWNED} actors")
        out["mem"] = (sum(rss(p) for p in pids) / len(pids),
                      "RSS of one idle actor's worker process")
    finally:
        ray.shutdown()
    return out
