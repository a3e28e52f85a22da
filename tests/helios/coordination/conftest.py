"""Backend-parametrised fixtures: every contract test runs once on ZooKeeper (a real
server, from tests/fixtures/zookeeper.py) and once on the embedded SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from kazoo.client import KazooClient

from helios.coordination import (
    ConnectionState,
    EmbeddedStore,
    Store,
    ZooKeeperStore,
    open_embedded,
    open_zookeeper,
)

# Long enough that a loaded 2-core machine never expires a session by accident; the
# contract tests end sessions explicitly (Backend.expire), they never wait for expiry.
SESSION_TIMEOUT = 4.0


class Backend:
    """Opens independent sessions (separate clients) on one backend under one root."""

    def __init__(self, kind: str, root: str, hosts: str = "", file: Path | None = None) -> None:
        self.kind = kind
        self.root = root
        self.hosts = hosts
        self.file = file
        self.stores: list[Store] = []

    async def open(self, **kwargs: object) -> Store:
        if self.kind == "zookeeper":
            store: Store = await open_zookeeper(self.hosts, self.root,
                                                session_timeout=SESSION_TIMEOUT, **kwargs)
        else:
            assert self.file is not None
            store = await open_embedded(self.file, self.root)
        self.stores.append(store)
        return store

    async def expire(self, store: Store) -> None:
        """End `store`'s session from outside, as a server-side expiry would."""
        if isinstance(store, EmbeddedStore):
            await store.simulate_session_loss()
            return
        assert isinstance(store, ZooKeeperStore)
        await trio.to_thread.run_sync(_expire_zk_session, self.hosts, store.client.client_id)

    async def wait_connected(self, store: Store) -> None:
        """Until `store` has a live session again (bounded by the caller's deadline)."""
        async for state in store.connection_events():
            if state == ConnectionState.CONNECTED:
                return

    async def write_raw(self, store: Store, path: str, data: bytes) -> None:
        """Bytes that are not Helios JSON, as a foreign writer would leave them."""
        if isinstance(store, EmbeddedStore):
            store.write_raw(path, data)
            return
        assert isinstance(store, ZooKeeperStore)
        full = store._abs(path)
        await trio.to_thread.run_sync(
            lambda: store.client.create(full, data, makepath=True))

    async def close_all(self) -> None:
        for store in self.stores:
            await store.aclose()


def _expire_zk_session(hosts: str, client_id: tuple[int, bytes]) -> None:
    """The standard ZooKeeper test trick: a second client joins the session and closes
    it, so the server ends that session for good."""
    other = KazooClient(hosts=hosts, client_id=client_id, timeout=SESSION_TIMEOUT)
    other.start(timeout=10)
    other.stop()
    other.close()


@pytest.fixture(params=["zookeeper", "embedded"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def backend_spec(backend_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if backend_kind == "zookeeper":
        hosts = request.getfixturevalue("zk_hosts")
        root = request.getfixturevalue("zk_root")
        return Backend("zookeeper", root, hosts=hosts)
    return Backend("embedded", "/helios-test", file=tmp_path / "store.db")


@pytest.fixture
async def backend(backend_spec: Backend) -> AsyncIterator[Backend]:
    try:
        yield backend_spec
    finally:
        await backend_spec.close_all()


@pytest.fixture
async def store(backend: Backend) -> Store:
    return await backend.open()
