"""thespian: actors as OS processes talking TCP (`multiprocTCPBase`), or all in the
caller's thread (`simpleSystemBase`, its in-process base).

Idiomatic use per its documentation: `Actor.receiveMessage` answering with `self.send`,
`ActorSystem.ask` for request/reply from outside, `ActorSystem.tell` for one-way, and
`tell` + `listen` to keep several requests in flight. Cross-process rows use
`multiprocTCPBase` (the asker is the external ActorSystem, the actor a process of its
own); the in-process rows use `simpleSystemBase`, since 1,000 actors would be 1,000
processes under `multiprocTCPBase`.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from thespian.actors import Actor, ActorSystem

from ._common import FANOUT, Figure, p50, rss, sizes

TIMEOUT = 10.0
IN_PROCESS = "simpleSystemBase (in-process, runs in the caller's thread)"


class Echo(Actor):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, int):
            self.send(sender, msg)
        elif isinstance(msg, tuple):
            self.count += 1
        elif msg == "total":
            self.send(sender, self.count)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _local(out: dict[str, Figure], n: dict[str, int]) -> None:
    asys = ActorSystem("simpleSystemBase")
    try:
        echo = asys.createActor(Echo)
        t0 = time.perf_counter()
        for _ in range(n["local"]):
            asys.ask(echo, 1, TIMEOUT)
        out["local_ask"] = (n["local"] / (time.perf_counter() - t0), IN_PROCESS)

        count = max(FANOUT, n["spawn"])
        base = rss()
        t0 = time.perf_counter()
        addrs = [asys.createActor(Echo) for _ in range(count)]
        out["spawn"] = (count / (time.perf_counter() - t0), IN_PROCESS)
        out["mem"] = ((rss() - base) / count, IN_PROCESS)

        t0 = time.perf_counter()
        for addr in addrs[:FANOUT]:
            asys.tell(addr, 1)
        got = 0
        while got < FANOUT and asys.listen(TIMEOUT) is not None:
            got += 1
        out["fanout"] = ((time.perf_counter() - t0) * 1e3, IN_PROCESS)
    finally:
        asys.shutdown()


def _remote(out: dict[str, Figure], n: dict[str, int]) -> None:
    asys = ActorSystem("multiprocTCPBase", {"Admin Port": _free_port()})
    try:
        echo = asys.createActor(Echo)
        asys.ask(echo, 1, TIMEOUT)
        lat = []
        for _ in range(n["rtt"]):
            t0 = time.perf_counter()
            asys.ask(echo, 1, TIMEOUT)
            lat.append(time.perf_counter() - t0)
        out["ask_p50"] = p50(lat) * 1e6
        out["ask1"] = len(lat) / sum(lat)

        total = n["conc"] // 4  # thespian is slow enough that a quarter gives a stable rate
        t0 = time.perf_counter()
        for _ in range(64):
            asys.tell(echo, 1)
        sent, got = 64, 0
        while got < total and asys.listen(TIMEOUT) is not None:
            got += 1
            if sent < total:
                asys.tell(echo, 1)
                sent += 1
        out["ask64"] = got / (time.perf_counter() - t0)

        tells = n["tell"] // 10
        data = "x" * 60
        t0 = time.perf_counter()
        for _ in range(tells):
            asys.tell(echo, ("put", data))
        while (asys.ask(echo, "total", TIMEOUT) or 0) < tells:
            pass
        out["tell"] = tells / (time.perf_counter() - t0)
    finally:
        asys.shutdown()


def measure(scale: float) -> dict[str, Figure]:
    n = sizes(scale)
    out: dict[str, Figure] = {}
    _local(out, n)
    _remote(out, n)
    return out
