"""Supervision trees: strategies, restart types, intensity, nesting (OTP semantics)."""

from __future__ import annotations

import pytest
import trio

import actors


class Probe(actors.Actor):
    """Logs its starts and stops into a shared journal so tests see the exact sequence."""

    def __init__(self, journal: list[tuple[str, str]]) -> None:
        self.journal = journal

    async def on_start(self) -> None:
        self.journal.append(("start", self.name))

    async def on_stop(self) -> None:
        self.journal.append(("stop", self.name))

    @actors.handler
    async def crash(self) -> None:
        raise RuntimeError("crash on purpose")

    @actors.handler
    async def ident(self) -> int:
        return id(self)


async def wait_running(sup: actors.ActorRef, names: list[str], restarts: int = 0,
                       count: int | None = None) -> list[dict]:
    """Bounded wait until the named children all run, with at least `restarts` restarts
    among them (and exactly `count` specs, if given); returns which_children.

    Exits reach a supervisor as messages, so right after a crash it may not have seen it
    yet: tests wait for the state they expect rather than assume it."""
    with trio.fail_after(5):
        while True:
            kids = await sup.ask("which_children")
            running = {k["name"] for k in kids if k["running"]}
            if (set(names) <= running and sum(k["restarts"] for k in kids) >= restarts
                    and (count is None or len(kids) == count)):
                return kids
            await trio.sleep(0.01)


async def crash(system: actors.ActorSystem, name: str) -> None:
    with pytest.raises(actors.RemoteError):
        await system.ref(name).ask("crash")


def spec(journal: list, name: str, restart: str = "permanent") -> actors.ChildSpec:
    return actors.child(Probe, journal, name=name, restart=restart)


async def test_one_for_one_restarts_only_the_failed_child() -> None:
    j: list = []
    async with actors.open_system() as system:
        sup = await system.spawn(actors.Supervisor, strategy="one_for_one",
                                 children=[spec(j, "a"), spec(j, "b"), spec(j, "c")], name="sup")
        ids = {n: await system.ref(n).ask("ident") for n in "abc"}
        j.clear()
        await crash(system, "b")
        kids = await wait_running(sup, ["a", "b", "c"], restarts=1)
        assert j == [("stop", "b"), ("start", "b")]
        assert [k["restarts"] for k in kids] == [0, 1, 0]
        assert await system.ref("a").ask("ident") == ids["a"]
        assert await system.ref("b").ask("ident") != ids["b"]


async def test_one_for_all_restarts_everyone_in_order() -> None:
    j: list = []
    async with actors.open_system() as system:
        sup = await system.spawn(actors.Supervisor, strategy="one_for_all",
                                 children=[spec(j, "a"), spec(j, "b"), spec(j, "c")], name="sup")
        j.clear()
        await crash(system, "b")
        await wait_running(sup, ["a", "b", "c"], restarts=1)
        # b died first; the others are stopped in reverse start order; all start in order
        assert j == [("stop", "b"), ("stop", "c"), ("stop", "a"),
                     ("start", "a"), ("start", "b"), ("start", "c")]


async def test_rest_for_one_restarts_the_failed_child_and_those_after_it() -> None:
    j: list = []
    async with actors.open_system() as system:
        sup = await system.spawn(actors.Supervisor, strategy="rest_for_one",
                                 children=[spec(j, "a"), spec(j, "b"), spec(j, "c")], name="sup")
        j.clear()
        await crash(system, "b")
        await wait_running(sup, ["a", "b", "c"], restarts=1)
        assert j == [("stop", "b"), ("stop", "c"), ("start", "b"), ("start", "c")]


async def test_restart_types_on_normal_stop_and_on_crash() -> None:
    j: list = []
    async with actors.open_system() as system:
        sup = await system.spawn(actors.Supervisor, max_restarts=10, children=[
            spec(j, "perm", "permanent"), spec(j, "trans", "transient"),
            spec(j, "temp", "temporary")], name="sup")
        for name in ("perm", "trans", "temp"):
            await system.ref(name).stop()
        await wait_running(sup, ["perm"], restarts=1, count=2)
        kids = {k["name"]: k for k in await sup.ask("which_children")}
        assert kids["perm"]["running"] and kids["perm"]["restarts"] == 1
        assert not kids["trans"]["running"] and kids["trans"]["restarts"] == 0
        assert "temp" not in kids  # a temporary child is forgotten once it ends

    j2: list = []
    async with actors.open_system() as system:
        sup = await system.spawn(actors.Supervisor, max_restarts=10, children=[
            spec(j2, "trans", "transient"), spec(j2, "temp", "temporary")], name="sup")
        await crash(system, "trans")
        await crash(system, "temp")
        kids = await wait_running(sup, ["trans"], restarts=1, count=1)
        assert [(k["name"], k["running"], k["restarts"]) for k in kids] == [("trans", True, 1)]


async def test_killed_child_is_restarted() -> None:
    j: list = []
    async with actors.open_system() as system:
        sup = await system.spawn(actors.Supervisor, children=[spec(j, "k", "transient")],
                                 name="sup")
        await system.ref("k").kill()
        kids = await wait_running(sup, ["k"], restarts=1)
        assert kids[0]["restarts"] == 1


async def test_restart_intensity_exceeded_stops_children_and_fails_upward() -> None:
    j: list = []
    async with actors.open_system() as system:
        sup = await system.spawn(actors.Supervisor, max_restarts=2, within=30.0,
                                 children=[spec(j, "a"), spec(j, "b")], name="sup")
        mon = await system.monitor(sup)
        await crash(system, "a")
        await wait_running(sup, ["a"], restarts=1)
        await crash(system, "a")
        await wait_running(sup, ["a"], restarts=2)
        j.clear()
        await crash(system, "a")  # third within the window: give up
        down = await mon.wait(timeout=5)
        assert down.reason == "error" and "max restart intensity" in down.detail
        assert j == [("stop", "a"), ("stop", "b")]
        assert not {"a", "b", "sup"} & set(system.registered())


async def test_restarts_outside_the_window_do_not_accumulate() -> None:
    j: list = []
    async with actors.open_system() as system:
        sup = await system.spawn(actors.Supervisor, max_restarts=1, within=0.2,
                                 children=[spec(j, "a")], name="sup")
        for i in range(3):
            await crash(system, "a")
            await wait_running(sup, ["a"], restarts=i + 1)
            await trio.sleep(0.3)
        assert (await sup.ask("which_children"))[0]["restarts"] == 3


async def test_nested_supervisor_is_restarted_by_its_parent() -> None:
    j: list = []
    async with actors.open_system() as system:
        inner = actors.child(actors.Supervisor, name="inner", max_restarts=0, within=5.0,
                             children=[spec(j, "leaf")])
        top = await system.spawn(actors.Supervisor, max_restarts=3, children=[inner],
                                 name="top")
        j.clear()
        await crash(system, "leaf")  # inner gives up at once (max_restarts=0)
        kids = await wait_running(top, ["inner"], restarts=1)
        assert kids[0]["restarts"] == 1
        await wait_running(system.ref("inner"), ["leaf"])
        assert j == [("stop", "leaf"), ("start", "leaf")]


async def test_stopping_a_supervisor_stops_children_in_reverse_order() -> None:
    j: list = []
    async with actors.open_system() as system:
        sup = await system.spawn(actors.Supervisor,
                                 children=[spec(j, "a"), spec(j, "b"), spec(j, "c")], name="sup")
        j.clear()
        await sup.stop()
        assert j == [("stop", "c"), ("stop", "b"), ("stop", "a")]


async def test_child_that_fails_to_start_counts_against_intensity() -> None:
    attempts: list[int] = []

    class Flaky(actors.Actor):
        async def on_start(self) -> None:
            attempts.append(1)
            if len(attempts) > 1:
                raise RuntimeError("cannot start again")

        @actors.handler
        async def crash(self) -> None:
            raise RuntimeError("x")

    async with actors.open_system() as system:
        sup = await system.spawn(actors.Supervisor, max_restarts=3, within=30.0,
                                 children=[actors.child(Flaky, name="flaky")], name="sup")
        mon = await system.monitor(sup)
        await crash(system, "flaky")
        down = await mon.wait(timeout=5)
        assert "max restart intensity" in down.detail
        assert len(attempts) == 4  # the first start, then three failing restarts


@pytest.mark.parametrize("kwargs, message", [
    ({"strategy": "one_for_some"}, "strategy must be one of"),
    ({"max_restarts": -1}, "max_restarts"),
    ({"within": 0}, "within"),
    ({"children": ["not a spec"]}, "actors.child"),
    ({"children": [actors.child(Probe, [], name="x", restart="sometimes")]}, "restart must be"),
    ({"children": [actors.child(Probe, [], name="x"), actors.child(Probe, [], name="x")]},
     "duplicate child name"),
])
async def test_invalid_specs_are_refused_at_the_boundary(kwargs: dict, message: str) -> None:
    async with actors.open_system() as system:
        with pytest.raises(ValueError, match=message):
            await system.spawn(actors.Supervisor, **kwargs)
