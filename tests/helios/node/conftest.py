"""Helpers for the node daemon tests: a node in the test's trio run, a fake conductor.

The node under test is real (`run_node`: its own actor system on a TCP port, a real
runtime, a real store when the test gives one). The conductor is played by a small actor
in the test's own actor system: it asks the node `assign` over TCP and receives
`task_events`, exactly what the real conductor does.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

import actors
from helios import protocol
from helios.coordination import paths
from helios.model import Assignment
from helios.node.daemon import run_node
from helios.node.node import NodeCore
from helios.spec import validate
from tests.fixtures.common import unique_name

#: Small restart tuning so restart tests take seconds, not minutes.
FAST_RESTARTS = {"backoff_cap": 1.0, "stable_after": 5.0, "flap_restarts": 50,
                 "flap_window": 60.0}


class FakeConductor(actors.Actor):
    """Records the task events nodes send, like the conductor's `task_events`."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    @actors.handler
    async def task_events(self, node: str, events: list[dict[str, Any]]) -> None:
        self.events.extend(events)


def assignment(node: str, job: dict[str, Any], *, task: str | None = None, index: int = 0,
               version: int = 1, desired: str = "run", **kw: Any) -> dict[str, Any]:
    """An Assignment dict as the conductor sends it (with the validated spec)."""
    spec = validate(job)
    return Assignment(id=task or f"{spec.name}-{unique_name('t')[-6:]}", job=spec.name,
                      version=version, node=node, index=index, desired=desired,
                      fingerprint=spec.fingerprint(), spec=spec, **kw).to_dict()


async def claim_epoch(target: Any, epoch: int) -> None:
    """Play the leader of `epoch` in the store (a NodeCore's, or a Store itself): a
    node obeys only the epoch that `/conductors/epoch` holds, and this fake conductor
    wins no election. Nothing to do for a node without a store."""
    link = getattr(target, "link", None)
    if link is not None:
        with trio.fail_after(30):
            await link.connected.wait()
    store = target if hasattr(target, "transaction") else getattr(link, "store", None)
    if store is not None:
        await store.put(paths.EPOCH, {"epoch": epoch})


class NodeUnderTest:
    """A running node plus a client system to talk to it as the conductor does."""

    def __init__(self, core: NodeCore, client: actors.ActorSystem,
                 conductor: FakeConductor | None) -> None:
        self.core = core
        self.client = client
        self.conductor = conductor
        self.ref = client.ref(core.url)
        self.epoch = 1
        self.generation = 0

    @property
    def name(self) -> str:
        return self.core.name

    async def assign(self, assignments: list[dict[str, Any]], *, epoch: int | None = None,
                     generation: int | None = None) -> dict[str, Any]:
        if epoch is not None:
            self.epoch = epoch
        self.generation = generation if generation is not None else self.generation + 1
        await claim_epoch(self.core, self.epoch)
        return await self.ask("assign", self.epoch, self.generation, assignments)

    async def ask(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Ask the node actor, retrying while its front restarts after a refused
        (stale-epoch) call: a refusal ends the actor and its supervisor restarts it."""
        with trio.fail_after(10):
            while True:
                try:
                    return await self.ref.ask(method, *args, **kwargs)
                except actors.ActorNotFound:
                    await trio.sleep(0.01)

    async def status(self, task: str) -> dict[str, Any] | None:
        for s in await self.ask("statuses"):
            if s["id"] == task:
                return s
        return None

    async def wait_for(self, task: str, pred: Callable[[dict[str, Any]], bool],
                       timeout: float = 30.0, what: str = "") -> dict[str, Any]:
        """Poll `statuses` (the protocol call) until `pred` holds for `task`."""
        last: dict[str, Any] | None = None
        with trio.move_on_after(timeout):
            while True:
                last = await self.status(task)
                if last is not None and pred(last):
                    return last
                await trio.sleep(0.05)
        raise AssertionError(f"task {task}: {what or 'condition'} not met within "
                             f"{timeout}s; last status {last}")

    def events(self, task: str) -> list[str]:
        """States the fake conductor received for `task`, in order (a report that only
        updates details, e.g. ports, of the same state is shown once)."""
        assert self.conductor is not None
        out: list[str] = []
        for e in self.conductor.events:
            if e["id"] == task and (not out or out[-1] != e["state"]):
                out.append(e["state"])
        return out

    async def wait_event(self, task: str, state: str, timeout: float = 30.0) -> None:
        """Until the conductor has received `state` for `task`."""
        with trio.move_on_after(timeout):
            while state not in self.events(task):
                await trio.sleep(0.05)
            return
        raise AssertionError(f"task {task}: no {state} event within {timeout}s; "
                             f"got {self.events(task)}")

    async def wait_state(self, task: str, *states: str, timeout: float = 30.0
                         ) -> dict[str, Any]:
        return await self.wait_for(task, lambda s: s["state"] in states, timeout,
                                   f"state in {states}")


@contextlib.asynccontextmanager
async def node_running(state_dir: Path, *, name: str | None = None, runtime: str = "docker",
                       with_conductor: bool = True, cleanup: bool = True, **kw: Any
                       ) -> AsyncIterator[NodeUnderTest]:
    """Run a node (and a client system with a fake conductor) for the block.

    A stopped node leaves its tasks running (the next one adopts them). With `cleanup`,
    the process runtime's tasks are removed at the end (Docker containers are removed by
    the tests' labels); pass False to leave them for a node started next."""
    name = name or unique_name("node")
    kw.setdefault("restart_options", FAST_RESTARTS)
    async with actors.open_system("test-conductor", listen="127.0.0.1:0") as client, \
            trio.open_nursery() as nursery:
        fake = None
        if with_conductor:
            ref = await client.spawn(FakeConductor, name=protocol.CONDUCTOR_ACTOR)
            fake = client._registry[ref.name].actor  # type: ignore[attr-defined]
            kw.setdefault("conductor", client.url.split("://", 1)[1])
        core: NodeCore = await nursery.start(
            lambda task_status: run_node(name=name, state_dir=state_dir, runtime=runtime,
                                         task_status=task_status, **kw))
        try:
            yield NodeUnderTest(core, client, fake)  # type: ignore[arg-type]
        finally:
            nursery.cancel_scope.cancel()
    if cleanup and runtime == "process":
        with trio.CancelScope(shield=True), trio.move_on_after(20):
            for c in await core.runtime.list():
                await core.runtime.remove(c.id)


@pytest.fixture
def node_name() -> str:
    return unique_name("node")
