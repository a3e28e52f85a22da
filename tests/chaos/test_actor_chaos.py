"""Chaos: kill actors at random inside supervision trees, SIGKILL whole processes.

The model of OTP semantics is computed independently of the runtime: for each kill we
predict exactly which children restart, and compare with `which_children`. Random choices
come from a seeded generator so a failure replays.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

import actors

ROOT = Path(__file__).resolve().parents[2]


class Leaf(actors.Actor):
    @actors.handler
    async def crash(self) -> None:
        raise RuntimeError("chaos")

    @actors.handler
    async def ping(self) -> str:
        return "pong"


def expected_restarts(strategy: str, n: int, victim: int) -> list[int]:
    if strategy == "one_for_one":
        return [int(i == victim) for i in range(n)]
    if strategy == "one_for_all":
        return [1] * n
    return [int(i >= victim) for i in range(n)]  # rest_for_one


async def settled(sup: actors.ActorRef, total: int) -> list[dict]:
    with trio.fail_after(10):
        while True:
            kids = await sup.ask("which_children")
            if sum(k["restarts"] for k in kids) >= total and all(k["running"] for k in kids):
                return kids
            await trio.sleep(0.005)


@pytest.mark.parametrize("strategy", ["one_for_one", "one_for_all", "rest_for_one"])
@pytest.mark.parametrize("how", ["crash", "kill", "stop"])
async def test_random_kills_restart_exactly_what_otp_prescribes(strategy: str, how: str) -> None:
    rng = random.Random(f"{strategy}-{how}")
    n = 5
    tasks_before = trio.lowlevel.current_statistics().tasks_living
    async with actors.open_system() as system:
        sup = await system.spawn(actors.Supervisor, strategy=strategy, max_restarts=1000,
                                 within=1.0, name="sup",
                                 children=[actors.child(Leaf, name=f"l{i}") for i in range(n)])
        model = [0] * n
        for _ in range(25):
            victim = rng.randrange(n)
            ref = system.ref(f"l{victim}")
            if how == "crash":
                with pytest.raises(actors.RemoteError):
                    await ref.ask("crash")
            elif how == "kill":
                await ref.kill()
            else:
                await ref.stop()  # permanent children come back after a normal stop too
            model = [m + d for m, d in zip(model, expected_restarts(strategy, n, victim),
                                           strict=True)]
            kids = await settled(sup, sum(model))
            assert [k["restarts"] for k in kids] == model
        for i in range(n):
            assert await system.ref(f"l{i}").ask("ping") == "pong"
    await trio.sleep(0)
    assert trio.lowlevel.current_statistics().tasks_living == tasks_before, "leaked tasks"


async def test_random_kills_in_a_nested_tree_always_recover() -> None:
    rng = random.Random(7)
    leaves = [f"{g}-{i}" for g in "abc" for i in range(3)]
    async with actors.open_system() as system:
        groups = [actors.child(actors.Supervisor, name=f"g{g}", strategy="one_for_all",
                               max_restarts=1000, within=1.0,
                               children=[actors.child(Leaf, name=f"{g}-{i}") for i in range(3)])
                  for g in "abc"]
        await system.spawn(actors.Supervisor, name="root", strategy="one_for_one",
                           max_restarts=1000, within=1.0, children=groups)
        for _ in range(30):
            target = rng.choice([*leaves, "ga", "gb", "gc"])
            try:
                await system.ref(target).kill(timeout=5)
            except actors.ActorNotFound:
                pass  # between death and restart: that is fine, kill another
            with trio.fail_after(10):
                for leaf in leaves:
                    while True:
                        try:
                            assert await system.ref(leaf).ask("ping", timeout=5) == "pong"
                            break
                        except actors.ActorNotFound:
                            await trio.sleep(0.005)


def start_peer(tmp_path: Path) -> tuple[subprocess.Popen, str]:
    url_file = tmp_path / "peer.url"
    proc = subprocess.Popen([sys.executable, "-m", "tests.chaos.peer", str(url_file)], cwd=ROOT)
    deadline = time.monotonic() + 20
    while not url_file.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            proc.wait()
            raise RuntimeError("peer process did not start")
        time.sleep(0.05)
    return proc, url_file.read_text()


async def test_sigkill_of_a_peer_process_fires_monitors_and_fails_asks(tmp_path: Path) -> None:
    proc, url = start_peer(tmp_path)
    try:
        async with actors.open_system("observer", heartbeat_interval=0.2,
                                      heartbeat_timeout=1.0) as system:
            refs = [await system.lookup(f"{url}/w{i}") for i in range(4)]
            assert {await r.ask("work") for r in refs} == {proc.pid}
            monitors = [await system.monitor(r) for r in refs]
            outcomes: list[BaseException] = []

            async def in_flight(ref: actors.ActorRef) -> None:
                try:
                    await ref.ask("work", 30, timeout=20)
                except actors.ActorError as e:
                    outcomes.append(e)

            async with trio.open_nursery() as nursery:
                for r in refs:
                    nursery.start_soon(in_flight, r)
                await trio.sleep(0.2)
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            assert len(outcomes) == 4
            assert all(isinstance(e, actors.ConnectionLost) for e in outcomes)
            with trio.fail_after(10):
                downs = [await m.wait() for m in monitors]
            assert {d.reason for d in downs} == {"noconnection"}
            with pytest.raises(actors.ConnectionLost):
                await refs[0].ask("work", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_repeated_peer_deaths_never_hang_the_observer(tmp_path: Path) -> None:
    async with actors.open_system("observer") as system:
        for round_ in range(3):
            (tmp_path / str(round_)).mkdir()
            proc, url = start_peer(tmp_path / str(round_))
            try:
                ref = await system.lookup(f"{url}/w0")
                mon = await system.monitor(ref)
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
                assert (await mon.wait(timeout=10)).reason == "noconnection"
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        assert not system._conns
