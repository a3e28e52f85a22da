"""A small in-process cluster for the conductor's unit tests: conductors and fake nodes,
each in its own actor system and with its own session on one embedded (SQLite) store, or
on a real ZooKeeper (`zk_cluster`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

import actors
from helios.conductor.conductor import Conductor
from helios.conductor.daemon import run_conductor
from helios.coordination import Store, open_embedded, open_zookeeper
from tests.helios.conductor.fakenode import run_fake_node


class MiniCluster:
    def __init__(self, db: Path, nursery: trio.Nursery, stack: AsyncExitStack,
                 opener: Callable[[], Awaitable[Store]] | None = None) -> None:
        self.db = db
        self.nursery = nursery
        self.stack = stack
        self.opener = opener or (lambda: open_embedded(self.db))
        self.nodes: dict[str, tuple[trio.CancelScope, Any, actors.ActorSystem]] = {}
        self.conductors: list[tuple[trio.CancelScope, Conductor]] = []
        self.client: actors.ActorSystem | None = None

    async def conductor(self, name: str, grace: float = 0.3, **kwargs: Any) -> Conductor:
        """A conductor on its own session; `kwargs` go to `run_conductor` (e.g. gc=)."""
        store = await self.opener()
        scope = trio.CancelScope()

        async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            with scope:
                try:
                    await run_conductor(store=store, listen="127.0.0.1:0", name=name,
                                        failover_grace=grace, task_status=task_status,
                                        **kwargs)
                finally:
                    with trio.CancelScope(shield=True):
                        await store.aclose()

        c = await self.nursery.start(run)
        self.conductors.append((scope, c))
        return c

    async def node(self, name: str, **kwargs: Any) -> Any:
        store = await self.opener()
        scope = trio.CancelScope()

        async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            with scope:
                try:
                    async with actors.open_system(name=f"node-{name}",
                                                  listen="127.0.0.1:0") as system, \
                            trio.open_nursery() as inner:
                        ref = await inner.start(run_fake_node_wrapped, store, system,
                                                name, kwargs)
                        task_status.started((ref, system))
                        await trio.sleep_forever()
                finally:
                    with trio.CancelScope(shield=True):
                        await store.aclose()

        ref, system = await self.nursery.start(run)
        self.nodes[name] = (scope, ref, system)
        return ref

    def kill_node(self, name: str) -> None:
        self.nodes.pop(name)[0].cancel()

    async def ask(self, conductor: Conductor, method: str, *args: Any, **kw: Any) -> Any:
        assert self.client is not None
        return await self.client.ref(conductor.url).ask(method, *args, **kw)

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0,
                       what: str = "condition") -> Any:
        with trio.move_on_after(timeout):
            while True:
                result = await predicate()
                if result:
                    return result
                await trio.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}")


async def run_fake_node_wrapped(store: Any, system: actors.ActorSystem, name: str,
                                kwargs: dict[str, Any],
                                task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    await run_fake_node(store, system, name, task_status=task_status, **kwargs)


@asynccontextmanager
async def mini_cluster(tmp_path: Path, opener: Callable[[], Awaitable[Store]] | None = None
                       ) -> AsyncIterator[MiniCluster]:
    async with AsyncExitStack() as stack, trio.open_nursery() as nursery:
        mc = MiniCluster(tmp_path / "helios.db", nursery, stack, opener)
        async with actors.open_system(name="test-client") as client:
            mc.client = client
            try:
                yield mc
            finally:
                nursery.cancel_scope.cancel()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[MiniCluster]:
    async with mini_cluster(tmp_path) as mc:
        yield mc


@pytest.fixture
async def zk_cluster(tmp_path: Path, zk_hosts: str, zk_root: str
                     ) -> AsyncIterator[MiniCluster]:
    """The same, on the session's real ZooKeeper under a unique root (every conductor and
    node with its own session)."""
    async with mini_cluster(tmp_path, lambda: open_zookeeper(zk_hosts, zk_root,
                                                             session_timeout=2.0)) as mc:
        yield mc
