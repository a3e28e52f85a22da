"""pykka: one thread per actor, in one process; no remote actors.

Idiomatic fastest use per its documentation: `ThreadingActor.on_receive` with plain
messages and `ActorRef.ask` (the proxy adds attribute lookups on top), `ask(block=False)`
futures gathered with `pykka.get_all` for concurrency, `ActorRef.tell` for one-way.
"""

from __future__ import annotations

import time
from typing import Any

import pykka

from ._common import FANOUT, Figure, rss, sizes

NO_REMOTE = "n/a: pykka has no remote actors (threads of one process)"


class Echo(pykka.ThreadingActor):
    def on_receive(self, message: Any) -> Any:
        return message


def measure(scale: float) -> dict[str, Figure]:
    n = sizes(scale)
    out: dict[str, Figure] = {k: NO_REMOTE for k in ("ask_p50", "ask1", "ask64", "tell")}
    try:
        ref = Echo.start()
        t0 = time.perf_counter()
        for _ in range(n["local"]):
            ref.ask(1)
        out["local_ask"] = n["local"] / (time.perf_counter() - t0)

        count = max(FANOUT, n["spawn"] // 2)  # one OS thread each: keep it modest
        base = rss()
        t0 = time.perf_counter()
        refs = [Echo.start() for _ in range(count)]
        out["spawn"] = count / (time.perf_counter() - t0)
        time.sleep(0.2)
        out["mem"] = ((rss() - base) / count, f"{count:,} actors (one thread each)")

        t0 = time.perf_counter()
        pykka.get_all([r.ask(1, block=False) for r in refs[:FANOUT]])
        out["fanout"] = (time.perf_counter() - t0) * 1e3
    finally:
        pykka.ActorRegistry.stop_all()
    return out
