"""Property test: the embedded store answers like ZooKeeper itself.

Hypothesis draws sequences of single operations and transactions over a few paths; each
sequence runs on a real ZooKeeper and on the embedded store, and every outcome (result,
or error type with the failing op's index) and the final tree must be the same."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helios.coordination import (
    Check,
    CoordinationError,
    Create,
    Delete,
    Set,
    Store,
    TransactionFailed,
    open_embedded,
    open_zookeeper,
)
from tests.fixtures.zookeeper import delete_root

PATHS = ["/a", "/a/b", "/a/b/c", "/d", "/d/e"]

path = st.sampled_from(PATHS)
version = st.sampled_from([-1, 0, 1, 2])
value = st.integers(0, 3)
create = st.builds(Create, path, value, ephemeral=st.booleans(), sequential=st.booleans())
op = st.one_of(create, st.builds(Set, path, value, version),
               st.builds(Delete, path, version), st.builds(Check, path, version))
step = st.one_of(st.tuples(st.just("one"), op),
                 st.tuples(st.just("tx"), st.lists(op, min_size=1, max_size=4)))


async def apply_one(store: Store, o: Any) -> Any:
    if isinstance(o, Create):
        return await store.create(o.path, o.value, ephemeral=o.ephemeral,
                                  sequential=o.sequential, makepath=False)
    if isinstance(o, Set):
        return await store.set(o.path, o.value, o.version)
    if isinstance(o, Delete):
        return await store.delete(o.path, o.version)
    return await store.exists(o.path)


async def run(store: Store, steps: list[tuple[str, Any]]) -> list[Any]:
    outcomes: list[Any] = []
    for kind, body in steps:
        try:
            if kind == "one":
                outcomes.append(("ok", await apply_one(store, body)))
            else:
                outcomes.append(("ok", await store.transaction(body)))
        except TransactionFailed as e:
            outcomes.append(("txfail", e.index, type(e.cause).__name__))
        except CoordinationError as e:
            outcomes.append(("error", type(e).__name__))
    outcomes.append(("tree", await tree(store, "/")))
    return outcomes


async def tree(store: Store, at: str) -> list[Any]:
    out = []
    for name in await store.children(at):
        p = f"{at.rstrip('/')}/{name}"
        entry = await store.get(p)
        out.append((p, entry.value if entry else None, entry.version if entry else None,
                    await tree(store, p)))
    return out


@pytest.mark.zookeeper
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=12))
def test_embedded_matches_zookeeper(steps: list[tuple[str, Any]], zk_hosts: str,
                                    tmp_path: Path) -> None:
    root = f"/helios-eq-{uuid.uuid4().hex[:10]}"
    file = tmp_path / f"{uuid.uuid4().hex}.db"

    async def both() -> tuple[list[Any], list[Any]]:
        zk = await open_zookeeper(zk_hosts, root, session_timeout=4.0)
        emb = await open_embedded(file, root)
        try:
            await zk.ensure("/")
            await emb.ensure("/")
            return await run(zk, steps), await run(emb, steps)
        finally:
            await zk.aclose()
            await emb.aclose()

    try:
        on_zk, on_embedded = trio.run(both)
    finally:
        delete_root(zk_hosts, root)
    assert on_embedded == on_zk
