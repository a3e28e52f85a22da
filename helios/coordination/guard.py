"""The cluster-id guard: never sync from a wiped or foreign ZooKeeper root.

The first conductor to start on an empty root writes `/cluster-id` (and the top-level
directories) in one transaction. Conductors and nodes remember the id they joined; when
the root later lacks it (ZooKeeper was wiped, or they point at the wrong ensemble), they
refuse to read desired state from it: a node keeps running its last known assignments and
retries with a clear log line until the root is right again.
"""

from __future__ import annotations

import logging
import time
import uuid

import trio

import helios.coordination.paths as paths
from helios.coordination.errors import (
    ClusterIdMismatch,
    CorruptValue,
    NodeExists,
    TransactionFailed,
    Unavailable,
)
from helios.coordination.store import Create, Store

log = logging.getLogger(__name__)

TOP_LEVEL = (paths.CONDUCTORS, paths.ELECTION, paths.NODES, paths.JOBS, paths.ASSIGNMENTS,
             paths.STATUS, paths.HISTORY, paths.CRON, paths.SERVICES)


async def read_cluster_id(store: Store) -> str | None:
    """The id under the root, or None (absent, or not a Helios value)."""
    try:
        entry = await store.get(paths.CLUSTER_ID)
    except CorruptValue as e:
        log.warning("%s", e)
        return None
    if entry is None or not isinstance(entry.value, dict):
        return None
    cid = entry.value.get("cluster_id")
    return cid if isinstance(cid, str) else None


async def init_cluster(store: Store, expected: str | None = None) -> str:
    """For conductors: return the root's cluster id, initialising an empty root.

    With `expected` (the id this conductor joined before), any other id, or a root
    without one, raises `ClusterIdMismatch`. Without it, an existing id is adopted; a
    root that holds data but no id is foreign and refused."""
    found = await read_cluster_id(store)
    if found is not None:
        if expected is not None and found != expected:
            raise ClusterIdMismatch(store.root, expected, found)
        return found
    if expected is not None:
        raise ClusterIdMismatch(store.root, expected, None)
    await store.ensure("/")
    existing = [n for n in await store.children("/") if n != paths.basename(paths.CLUSTER_ID)]
    if existing:
        raise ClusterIdMismatch(store.root, None, None)
    cid = uuid.uuid4().hex
    ops = [Create(paths.CLUSTER_ID, {"cluster_id": cid, "created": time.time()})]
    ops += [Create(p) for p in TOP_LEVEL]
    try:
        await store.transaction(ops)
    except TransactionFailed as e:
        if not isinstance(e.cause, NodeExists):
            raise
        found = await read_cluster_id(store)  # another conductor initialised it first
        if found is None:
            raise ClusterIdMismatch(store.root, None, None) from None
        return found
    log.info("initialised cluster %s at %s", cid, store.root)
    return cid


async def check_cluster(store: Store, expected: str | None) -> str:
    """For nodes: the root's id if it is `expected` (any id when None); else raise
    `ClusterIdMismatch`."""
    found = await read_cluster_id(store)
    if found is None or (expected is not None and found != expected):
        raise ClusterIdMismatch(store.root, expected, found)
    return found


async def wait_for_cluster(store: Store, expected: str | None, *,
                           interval: float = 2.0) -> str:
    """Retry `check_cluster` until it passes, logging why at each attempt.

    The caller keeps running its last known state meanwhile (run this in its own task)."""
    while True:
        try:
            return await check_cluster(store, expected)
        except ClusterIdMismatch as e:
            log.error("%s; keeping last known assignments, retrying in %.0fs", e, interval)
        except Unavailable as e:
            log.warning("store unavailable (%s); retrying in %.0fs", e, interval)
        await trio.sleep(interval)
