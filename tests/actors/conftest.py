"""Actors used across the actor-runtime tests."""

from __future__ import annotations

from typing import Any

import trio

import actors


class Counter(actors.Actor):
    """The CONTRACT.md example actor, plus a few probes."""

    started: list[str] = []
    stopped: list[str] = []

    def __init__(self, start: int = 0) -> None:
        self.n = start

    async def on_start(self) -> None:
        Counter.started.append(self.name)

    async def on_stop(self) -> None:
        Counter.stopped.append(self.name)

    @actors.handler
    async def incr(self, by: int = 1) -> int:
        self.n += by
        return self.n

    @actors.handler
    async def get(self) -> int:
        return self.n

    @actors.handler
    async def boom(self) -> None:
        raise ValueError("bad")

    @actors.handler
    async def sleep(self, seconds: float) -> str:
        await trio.sleep(seconds)
        return "slept"

    @actors.handler
    async def quit(self) -> None:
        self.exit("normal")

    @actors.handler
    def sync_double(self, x: int) -> int:
        return 2 * x

    @actors.handler
    async def echo(self, value: Any) -> Any:
        return value

    async def not_a_handler(self) -> str:
        return "secret"


class Recorder(actors.Actor):
    """Collects the Down messages it receives."""

    def __init__(self) -> None:
        self.downs: list[actors.Down] = []
        self.got = trio.Event()

    async def on_down(self, down: actors.Down) -> None:
        self.downs.append(down)
        self.got.set()

    @actors.handler
    async def watch(self, ref: actors.ActorRef) -> int:
        return await self.monitor(ref)

    @actors.handler
    async def link_to(self, ref: actors.ActorRef) -> int:
        return await self.link(ref)

    @actors.handler
    async def downs_seen(self) -> list[list[str]]:
        return [[d.ref.name, d.reason, d.detail] for d in self.downs]
