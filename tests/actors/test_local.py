"""One system, local actors: the CONTRACT.md section 1 semantics."""

from __future__ import annotations

import pytest
import trio

import actors

from .conftest import Counter, Recorder


async def test_contract_example_locally() -> None:
    async with actors.open_system(name="demo", listen="127.0.0.1:0") as system:
        ref = await system.spawn(Counter, 5, name="counter")
        assert await ref.ask("incr", by=2) == 7
        await ref.tell("incr")
        assert await ref.ask("get") == 8
        assert system.url.startswith("tcp://127.0.0.1:")
        assert ref.url == system.url + "/counter"
        with pytest.raises(actors.RemoteError) as info:
            await ref.ask("boom")
        assert info.value.type_name == "ValueError"
        assert info.value.message == "bad"
        assert "raise ValueError" in info.value.traceback


async def test_messages_from_one_sender_are_handled_in_order() -> None:
    async with actors.open_system() as system:
        ref = await system.spawn(Counter, 0)
        for i in range(1, 200):
            await ref.tell("echo", i)
        results = [await ref.ask("incr", by=1) for _ in range(3)]
        assert results == [1, 2, 3]


async def test_sync_handlers_work_too() -> None:
    async with actors.open_system() as system:
        ref = await system.spawn(Counter)
        assert await ref.ask("sync_double", 21) == 42


async def test_unknown_name_handler_and_bad_arguments() -> None:
    async with actors.open_system() as system:
        ref = await system.spawn(Counter, 1, name="c")
        with pytest.raises(actors.ActorNotFound):
            await system.ref("nobody").ask("incr")
        with pytest.raises(actors.UnknownHandler):
            await ref.ask("not_a_handler")
        with pytest.raises(actors.UnknownHandler):
            await ref.ask("__init__")
        with pytest.raises(actors.BadArguments):
            await ref.ask("incr", 1, 2, 3)
        with pytest.raises(actors.BadArguments):
            await ref.ask("incr", nope=1)
        # none of those disturbed the actor
        assert await ref.ask("get") == 1
        assert issubclass(actors.UnknownHandler, actors.RemoteError)
        for err in (actors.RemoteError, actors.ActorNotFound, actors.AskTimeout,
                    actors.ConnectionLost):
            assert issubclass(err, actors.ActorError)


async def test_ask_timeout_leaves_the_actor_working() -> None:
    async with actors.open_system() as system:
        ref = await system.spawn(Counter)
        with pytest.raises(actors.AskTimeout):
            await ref.ask("sleep", 0.5, timeout=0.05)
        assert await ref.ask("get", timeout=2) == 0


async def test_crash_ends_the_actor_and_fails_queued_asks() -> None:
    async with actors.open_system() as system:
        ref = await system.spawn(Counter, name="fragile")
        mon = await system.monitor(ref)
        with pytest.raises(actors.RemoteError):
            await ref.ask("boom")
        down = await mon.wait(timeout=5)
        assert down.reason == "error" and "ValueError: bad" in down.detail
        assert down.abnormal
        with pytest.raises(actors.ActorNotFound):
            await ref.ask("get")


async def test_stop_is_normal_and_runs_on_stop() -> None:
    Counter.stopped.clear()
    async with actors.open_system() as system:
        ref = await system.spawn(Counter, name="s1")
        mon = await system.monitor(ref)
        await ref.stop()
        assert Counter.stopped == ["s1"]
        down = await mon.wait(timeout=5)
        assert (down.reason, down.abnormal) == ("normal", False)
        with pytest.raises(actors.ActorNotFound):
            await ref.stop()


async def test_exit_from_a_handler() -> None:
    async with actors.open_system() as system:
        ref = await system.spawn(Counter, name="q")
        mon = await system.monitor(ref)
        assert await ref.ask("quit") is None
        assert (await mon.wait(timeout=5)).reason == "normal"


async def test_kill_interrupts_a_busy_actor() -> None:
    async with actors.open_system() as system:
        ref = await system.spawn(Counter, name="busy")
        mon = await system.monitor(ref)
        async with trio.open_nursery() as nursery:
            async def asker() -> None:
                with pytest.raises(actors.ActorNotFound):
                    await ref.ask("sleep", 30, timeout=10)
            nursery.start_soon(asker)
            await trio.sleep(0.05)
            await ref.kill()
        assert (await mon.wait(timeout=5)).reason == "killed"


async def test_duplicate_names_and_bad_classes_are_refused() -> None:
    async with actors.open_system() as system:
        await system.spawn(Counter, name="one")
        with pytest.raises(ValueError, match="already runs"):
            await system.spawn(Counter, name="one")
        with pytest.raises(TypeError):
            await system.spawn(dict)  # type: ignore[arg-type]


async def test_on_start_failure_makes_spawn_raise() -> None:
    class Broken(actors.Actor):
        async def on_start(self) -> None:
            raise RuntimeError("no config")

    async with actors.open_system() as system:
        with pytest.raises(RuntimeError, match="no config"):
            await system.spawn(Broken, name="broken")
        assert "broken" not in system.registered()
        await system.spawn(Broken.__mro__[1], name="broken") if False else None


async def test_closing_the_system_stops_actors_in_reverse_start_order() -> None:
    Counter.stopped.clear()
    async with actors.open_system() as system:
        for name in ("first", "second", "third"):
            await system.spawn(Counter, name=name)
    assert Counter.stopped == ["third", "second", "first"]


async def test_children_stop_before_their_parent_in_reverse_order() -> None:
    order: list[str] = []

    class Parent(actors.Actor):
        async def on_start(self) -> None:
            await self.spawn(Child, "a", name="child-a")
            await self.spawn(Child, "b", name="child-b")

        async def on_stop(self) -> None:
            order.append("parent")

    class Child(actors.Actor):
        def __init__(self, tag: str) -> None:
            self.tag = tag

        async def on_stop(self) -> None:
            order.append(self.tag)

    async with actors.open_system() as system:
        parent = await system.spawn(Parent, name="parent")
        assert {"child-a", "child-b"} <= set(system.registered())
        await parent.stop()
        assert order == ["b", "a", "parent"]
        assert "child-a" not in system.registered()


async def test_local_monitor_and_noproc() -> None:
    async with actors.open_system() as system:
        rec = await system.spawn(Recorder, name="rec")
        target = await system.spawn(Counter, name="target")
        await rec.ask("watch", target)
        await target.kill()
        with trio.fail_after(5):
            while not await rec.ask("downs_seen"):
                await trio.sleep(0.01)
        assert await rec.ask("downs_seen") == [["target", "killed", ""]]
        mon = await system.monitor(system.ref("ghost"))
        assert (await mon.wait(timeout=1)).reason == "noproc"


async def test_demonitor_stops_delivery() -> None:
    async with actors.open_system() as system:
        target = await system.spawn(Counter, name="t")
        mon = await system.monitor(target)
        await mon.cancel()
        await target.stop()
        with trio.move_on_after(0.1):
            await mon.wait()
        assert mon.down is None


async def test_link_propagates_abnormal_exit_only() -> None:
    async with actors.open_system() as system:
        rec = await system.spawn(Recorder, name="linked")
        watcher = await system.monitor(rec)
        normal = await system.spawn(Counter, name="calm")
        await rec.ask("link_to", normal)
        await normal.stop()
        assert await rec.ask("downs_seen", timeout=2)  # saw it, survived it
        bad = await system.spawn(Counter, name="bad")
        await rec.ask("link_to", bad)
        with pytest.raises(actors.RemoteError):
            await bad.ask("boom")
        down = await watcher.wait(timeout=5)
        assert down.reason == "error" and "linked actor bad" in down.detail


async def test_messages_must_be_serialisable_only_when_remote() -> None:
    async with actors.open_system() as system:
        ref = await system.spawn(Counter)
        assert await ref.ask("echo", {"a": [1, 2, b"x"]}) == {"a": [1, 2, b"x"]}


async def test_refs_survive_in_messages_and_compare_by_url() -> None:
    async with actors.open_system(listen="127.0.0.1:0") as system:
        ref = await system.spawn(Counter, 3, name="c3")
        echoed = await ref.ask("echo", ref)
        assert echoed == ref and hash(echoed) == hash(ref)
        assert await echoed.ask("get") == 3


async def test_many_actors_all_answer() -> None:
    async with actors.open_system() as system:
        refs = [await system.spawn(Counter, i) for i in range(500)]
        async with trio.open_nursery() as nursery:
            results: dict[int, int] = {}

            async def ask(i: int, r: actors.ActorRef) -> None:
                results[i] = await r.ask("incr")

            for i, r in enumerate(refs):
                nursery.start_soon(ask, i, r)
        assert results == {i: i + 1 for i in range(500)}


async def test_background_task_runs_until_the_actor_ends_and_its_failure_crashes_it() -> None:
    ticks: list[int] = []

    class Ticker(actors.Actor):
        async def on_start(self) -> None:
            self.start_soon(self.tick)

        async def tick(self) -> None:
            for i in range(1000):
                ticks.append(i)
                await trio.sleep(0.01)

        @actors.handler
        async def fail_later(self) -> None:
            async def bad() -> None:
                raise OSError("disk on fire")
            self.start_soon(bad)

    async with actors.open_system() as system:
        ref = await system.spawn(Ticker, name="ticker")
        await trio.sleep(0.05)
        await ref.stop()
        seen = len(ticks)
        assert seen >= 1
        await trio.sleep(0.05)
        assert len(ticks) == seen  # cancelled with its actor

        ref = await system.spawn(Ticker, name="ticker2")
        mon = await system.monitor(ref)
        await ref.ask("fail_later")
        down = await mon.wait(timeout=5)
        assert down.reason == "error" and "disk on fire" in down.detail


async def test_a_refusal_answers_the_asker_and_keeps_the_actor() -> None:
    class Denied(actors.Refusal):
        pass

    class Gate(actors.Actor):
        @actors.handler
        async def enter(self, who: str) -> str:
            if who == "mallory":
                raise Denied(f"{who} may not enter")
            return f"welcome {who}"

    async with actors.open_system() as system:
        gate = await system.spawn(Gate, name="gate")
        mon = await system.monitor(gate)
        with pytest.raises(actors.RemoteError) as info:
            await gate.ask("enter", "mallory")
        assert (info.value.type_name, info.value.message) == ("Denied", "mallory may not enter")
        assert await gate.ask("enter", "alice") == "welcome alice"
        assert mon.down is None


async def test_plain_actor_children_may_end_on_their_own() -> None:
    class Parent(actors.Actor):
        @actors.handler
        async def start(self) -> None:
            await self.spawn(Counter, name="kid")

        @actors.handler
        async def kids(self) -> int:
            return len(self._cell.children)

    async with actors.open_system() as system:
        parent = await system.spawn(Parent, name="p")
        await parent.ask("start")
        with pytest.raises(actors.RemoteError):
            await system.ref("kid").ask("boom")
        with trio.fail_after(5):
            while await parent.ask("kids"):
                await trio.sleep(0.01)
        await parent.ask("start")  # the name is free again
        assert await system.ref("kid").ask("incr") == 1


async def test_aclose_inside_the_block_does_not_cancel_the_caller() -> None:
    after: list[str] = []
    async with actors.open_system(listen="127.0.0.1:0") as system:
        await system.spawn(Counter, name="c")
        await system.aclose()
        await trio.sleep(0.01)  # a checkpoint: would raise Cancelled if the block were cancelled
        after.append("ran")
        assert system.registered() == []
        with pytest.raises(RuntimeError, match="closing"):
            await system.spawn(Counter)
    assert after == ["ran"]
