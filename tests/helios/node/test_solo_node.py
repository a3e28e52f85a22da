"""The node on the embedded store and a shared actor system (as `helios solo` runs it),
with the process runtime: desired state from the store, statuses written, events sent,
restart policy, and a second daemon refused on the same state directory."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import trio

import actors
from helios import protocol
from helios.coordination import init_cluster, open_embedded, paths
from helios.node.daemon import run_node
from helios.node.node import NodeCore
from helios.node.state import StateDirLocked
from tests.fixtures.common import unique_name
from tests.helios.node.conftest import FAST_RESTARTS, FakeConductor, assignment

HAVE_ENDPOINTS = importlib.util.find_spec("helios.endpoints") is not None


async def _status(store, node: str, task: str, pred, timeout: float = 20.0) -> dict:
    with trio.fail_after(timeout):
        while True:
            entry = await store.get(paths.status(node, task))
            if entry is not None and pred(entry.value):
                return entry.value
            await trio.sleep(0.05)


async def _ask(ref: actors.ActorRef, method: str, *args: object) -> dict:
    """Ask, retrying while the `node` front restarts after a refusal (microseconds)."""
    with trio.fail_after(10):
        while True:
            try:
                return await ref.ask(method, *args)
            except actors.ActorNotFound:
                await trio.sleep(0.01)


async def test_solo_node_takes_store_assignments_reports_and_restarts(tmp_path: Path) -> None:
    name = unique_name("solo")
    store = await open_embedded(tmp_path / "store.db", "/helios")
    try:
        await init_cluster(store)
        crash = assignment(name, {"name": "crash", "command": ["sh", "-c", "exit 4"],
                                  "restart": {"policy": "on-failure", "max": 1,
                                              "backoff": "50ms"}})
        svc = assignment(name, {"name": "svc", "command": ["sleep", "60"], "grace": 0,
                                "ports": {"http": {"container": 8000}}})
        # desired state written by a (now absent) leader of epoch 3
        await store.put(paths.EPOCH, {"epoch": 3})
        await store.put(paths.assignments(name), {"epoch": 3, "generation": 9})
        for a in (crash, svc):
            await store.put(paths.assignment(name, a["id"]), a)
        async with actors.open_system("solo", listen="127.0.0.1:0") as system, \
                trio.open_nursery() as nursery:
            ref = await system.spawn(FakeConductor, name=protocol.CONDUCTOR_ACTOR)
            fake = system._registry[ref.name].actor
            await store.put(protocol.LEADER_PATH, {"name": "c", "url": ref.url, "epoch": 3})
            core: NodeCore = await nursery.start(lambda task_status: run_node(
                name=name, state_dir=tmp_path / "state", store=store, system=system,
                runtime="process", restart_options=FAST_RESTARTS, task_status=task_status))
            node = system.ref(protocol.NODE_ACTOR)
            await _status(store, name, svc["id"], lambda v: v["state"] == "running")
            failed = await _status(store, name, crash["id"], lambda v: v["state"] == "failed")
            assert failed["restarts"] == 1 and "exited with code 4" in failed["reason"]
            assert (await node.ask("info"))["epoch"] == 3
            if HAVE_ENDPOINTS:  # the running service's endpoint is published
                with trio.fail_after(10):
                    while (ep := await store.get(paths.service("svc", name, svc["id"]))) is None:
                        await trio.sleep(0.05)
                assert ep.value["node"] == name and set(ep.value["ports"]) == {"http"}
            record = (await store.get(paths.node(name))).value
            assert record["url"] == core.url and record["runtime"] == "process"
            assert "up" in await store.children(paths.node(name))
            with trio.fail_after(10):
                while not any(e["id"] == svc["id"] and e["state"] == "running"
                              for e in fake.events):
                    await trio.sleep(0.05)
            # a second daemon on the same state directory is refused
            with pytest.raises(StateDirLocked):
                await run_node(name=name + "-2", state_dir=tmp_path / "state",
                               runtime="process", listen=None)
            # an older (epoch, generation) in the store does not override the node's
            with pytest.raises(actors.RemoteError) as ei:
                await node.ask("assign", 2, 1, [])
            assert ei.value.type_name == "StaleEpoch"
            assert (await _ask(node, "assign", 3, 10, [svc]))["accepted"]
            await store.put(paths.assignments(name), {"epoch": 3, "generation": 9})
            await trio.sleep(0.3)  # time for the node to see the older one: it must not act
            assert (await node.ask("info"))["generation"] == 10
            # unassigned: the endpoint is withdrawn before the task stops
            assert (await _ask(node, "assign", 3, 11, []))["accepted"]
            with trio.fail_after(10):
                while await store.get(paths.service("svc", name, svc["id"])) is not None:
                    await trio.sleep(0.05)
            with trio.fail_after(5):  # the job's grace (0), not a default, applies
                while not any(e["id"] == svc["id"] and e["state"] == "stopped"
                              for e in fake.events):
                    await trio.sleep(0.05)
            # the crashed task's status is deleted once it is unassigned and forgotten
            with trio.fail_after(10):
                while await store.get(paths.status(name, crash["id"])) is not None:
                    await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
        assert "up" not in await store.children(paths.node(name))  # clean exit: presence gone
    finally:
        await store.aclose()
