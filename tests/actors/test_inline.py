"""The inline fast path: a handler that cannot suspend runs in the asking task (or the
connection's reader) when its actor is idle. Every outcome must match the actor's loop."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import actors

GATES: dict[str, trio.Event] = {}
HANDLED: list[object] = []  # the order in which Probe handled messages


class Probe(actors.Actor):
    def __init__(self) -> None:
        self.tasks: list[object] = []
        self.n = 0

    @actors.handler
    async def plain(self, v: int) -> int:
        self.n += 1
        HANDLED.append(v)
        return v

    @actors.handler
    async def crash(self) -> None:
        raise ValueError("inline crash")

    @actors.handler
    async def leave(self) -> None:
        self.exit("normal")

    @actors.handler
    async def waits(self, gate: str) -> str:
        await GATES[gate].wait()
        HANDLED.append(gate)
        return "waited"

    @actors.handler
    def sync_count(self) -> int:
        return self.n


def test_only_handlers_that_cannot_suspend_are_inline_candidates() -> None:
    assert Probe._inline == {"plain", "crash", "leave", "sync_count"}


async def test_inline_crash_restarts_through_the_supervisor() -> None:
    async with actors.open_system() as system:
        sup = await system.spawn(actors.Supervisor, strategy="one_for_one", max_restarts=3,
                                 within=5.0, children=[actors.child(Probe, name="p")])
        ref = system.ref("p")
        assert await ref.ask("plain", 1) == 1
        mon = await system.monitor(ref)
        with pytest.raises(actors.RemoteError) as info:
            await ref.ask("crash")
        assert info.value.type_name == "ValueError"
        down = await mon.wait(timeout=5)
        assert down.reason == "error" and "inline crash" in down.detail
        with trio.fail_after(5):
            while True:
                children = await sup.ask("which_children")
                if children[0]["restarts"] == 1 and children[0]["running"]:
                    break
                await trio.sleep(0.01)
        assert await ref.ask("sync_count") == 0  # a fresh instance


async def test_inline_exit_ends_the_actor_normally_and_fails_what_follows() -> None:
    async with actors.open_system() as system:
        ref = await system.spawn(Probe, name="p")
        mon = await system.monitor(ref)
        assert await ref.ask("leave") is None
        down = await mon.wait(timeout=5)
        assert down.reason == "normal"
        with pytest.raises(actors.ActorNotFound):
            await ref.ask("plain", 1)


async def test_a_loop_of_inline_asks_lets_other_tasks_run() -> None:
    async with actors.open_system() as system:
        ref = await system.spawn(Probe)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            for i in range(1_000):
                assert await ref.ask("plain", i) == i
            nursery.cancel_scope.cancel()
        assert ticks >= 10


async def test_a_busy_actor_queues_even_handlers_that_cannot_suspend() -> None:
    async with actors.open_system() as system:
        ref = await system.spawn(Probe)
        GATES["g"] = trio.Event()
        HANDLED.clear()
        results: list[object] = []

        async def ask(method: str, *args: object) -> None:
            results.append(await ref.ask(method, *args))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, "waits", "g")
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(ask, "plain", 7)  # the actor is inside `waits`: queued
            await trio.testing.wait_all_tasks_blocked()
            assert results == [] and HANDLED == []
            GATES["g"].set()
        assert HANDLED == ["g", 7]
        assert sorted(results, key=str) == [7, "waited"]


async def test_remote_inline_asks_tells_and_crash() -> None:
    async with actors.open_system("srv", listen="127.0.0.1:0") as server, \
            actors.open_system("cli") as client:
        await server.spawn(Probe, name="p")
        ref = await client.lookup(server.url + "/p")
        for i in range(3):
            await ref.tell("plain", i)
        assert [await ref.ask("plain", i) for i in range(100)] == list(range(100))
        assert await ref.ask("sync_count") == 103
        with pytest.raises(actors.BadArguments):
            await ref.ask("plain", 1, 2)
        with pytest.raises(actors.RemoteError):
            await ref.ask("crash")
        with trio.fail_after(5):
            while "p" in server.registered():
                await trio.sleep(0.01)
