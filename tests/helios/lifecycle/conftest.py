"""Backend-parametrised fixtures for the lifecycle tests (endpoints, cron, dispatch): each
test runs once on a real ZooKeeper server and once on the embedded SQLite store, with the
`Backend` helper of the coordination contract tests (independent sessions on one root)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from helios.coordination import Store, init_cluster
from helios.model import JobRecord
from helios.spec import validate
from tests.helios.coordination.conftest import Backend


@pytest.fixture(params=["zookeeper", "embedded"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def backend(backend_kind: str, request: pytest.FixtureRequest,
                  tmp_path: Path) -> AsyncIterator[Backend]:
    if backend_kind == "zookeeper":
        spec = Backend("zookeeper", request.getfixturevalue("zk_root"),
                       hosts=request.getfixturevalue("zk_hosts"))
    else:
        spec = Backend("embedded", "/helios-test", file=tmp_path / "store.db")
    try:
        yield spec
    finally:
        await spec.close_all()


@pytest.fixture
async def store(backend: Backend) -> Store:
    s = await backend.open()
    await init_cluster(s)
    return s


def job(name: str, kind: str, created: float = 0.0, stopped: bool = False,
        **fields: object) -> JobRecord:
    """A validated JobRecord of `kind` running a trivial command."""
    spec = validate({"name": name, "kind": kind, "command": ["true"], **fields})
    return JobRecord(spec=spec, version=1, created=created, stopped=stopped)
