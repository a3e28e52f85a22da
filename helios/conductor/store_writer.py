"""Making the desired state durable: diff the leader's cache against what the store holds,
and write the difference in fenced transactions.

Why a diff and not one write per plan item: the conductor changes its cache from three
sources (plans, task reports, CLI writes) and this one function turns any mix of them
into the fewest operations. Why transactions: kazoo costs ~1 ms per call and a multi-op
transaction is ~20x cheaper per op; why fenced: every write carries a check of the
leadership epoch, so a deposed leader that wakes up changes nothing (`StaleEpoch`).

A chunk that fails for a reason other than the epoch (the cache and the store disagree,
e.g. a znode someone else deleted) is retried op by op with upsert semantics, so one bad
path never blocks the rest.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from helios.conductor.plan import ClusterState
from helios.coordination import paths
from helios.coordination.codec import pack
from helios.coordination.election import Term
from helios.coordination.errors import (
    CoordinationError,
    NodeExists,
    NoNode,
    NotEmpty,
    StaleEpoch,
    TransactionFailed,
    Unavailable,
    ValueTooLarge,
)
from helios.coordination.store import Create, Delete, Op, Set
from helios.model import Assignment

log = logging.getLogger(__name__)

__all__ = ["Persisted", "Writer", "chunks", "diff_ops", "service_dir_ops"]

#: at most this many ops, or this many encoded bytes, per transaction (ZooKeeper's
#: jute.maxbuffer is 1 MiB for the whole request)
MAX_OPS = 200
MAX_BYTES = 600_000


@dataclass
class Persisted:
    """What this leader knows the store holds: the state it last wrote or read, and the
    directories that exist."""

    state: ClusterState = field(default_factory=ClusterState)
    dirs: set[str] = field(default_factory=set)
    _by_node: dict[str, list[Assignment]] = field(default_factory=dict, repr=False)
    _indexed: Any = field(default=None, repr=False)

    def on_node(self, node: str) -> list[Assignment]:
        """The stored assignments of `node`. Why an index: the leader pushes each node
        its complete set after every change, and scanning every assignment per push cost
        O(nodes x tasks) per flush (10 million steps at 1,000 nodes and 10,000 tasks,
        enough to starve the leader's heartbeats); it is rebuilt once per flush."""
        current = self.state.assignments
        if self._indexed is not current:
            index: dict[str, list[Assignment]] = {}
            for a in current.values():
                index.setdefault(a.node, []).append(a)
            self._by_node, self._indexed = index, current
        return self._by_node.get(node, [])


def diff_ops(old: ClusterState, new: ClusterState, dirs: set[str],
             stamp: dict[str, int] | None = None) -> tuple[list[Op], list[str]]:
    """The writes that turn `old` (in the store) into `new`, and the status paths to
    delete (the caller checks they exist: nodes delete their own too).

    Task statuses are the nodes' to write (`/status/<node>/<task>`); the conductor only
    forgets those of finished or orphaned tasks. Every node directory whose assignments
    change gets `stamp` (`{"epoch", "generation"}`) as its value in the same write, which
    is how a node that missed a push notices the change in the store. Adds created
    directories to `dirs`. Identity is checked first: the cache replaces records only
    when they change, so an unchanged cluster costs one pass of pointer comparisons."""
    ops: list[Op] = []
    for name, rec in new.jobs.items():
        prev = old.jobs.get(name)
        if prev is rec:
            continue
        if prev is None:
            ops.append(Create(paths.job(name), rec.to_dict()))
        elif prev != rec or prev.spec != rec.spec or prev.previous != rec.previous:
            ops.append(Set(paths.job(name), rec.to_dict()))
    for name in old.jobs.keys() - new.jobs.keys():
        ops.append(Delete(paths.job(name)))
    ops.extend(_drain_ops(old, new, dirs))

    task_ops: list[Op] = []
    touched: set[str] = set()
    for tid, a in new.assignments.items():
        before = old.assignments.get(tid)
        if before is a:
            continue
        if before is not None and before.node != a.node:
            task_ops.append(Delete(paths.assignment(before.node, tid)))
            touched.add(before.node)
            before = None
        if before is None:
            task_ops.append(Create(paths.assignment(a.node, tid), a.to_dict()))
            touched.add(a.node)
        elif before != a or before.spec != a.spec or before.ports != a.ports:
            task_ops.append(Set(paths.assignment(a.node, tid), a.to_dict()))
            touched.add(a.node)
    for tid in old.assignments.keys() - new.assignments.keys():
        gone = old.assignments[tid]
        task_ops.append(Delete(paths.assignment(gone.node, tid)))
        touched.add(gone.node)
    value = dict(stamp) if stamp is not None else None
    for node in sorted(touched):
        d = paths.assignments(node)
        if d in dirs:
            if value is not None:
                ops.append(Set(d, value))
        else:
            ops.append(Create(d, value))
            dirs.add(d)
    ops.extend(task_ops)

    status_deletes = [paths.status(st.node, tid)
                      for tid, st in old.statuses.items()
                      if tid not in new.statuses or new.statuses[tid].node != st.node]
    return ops, status_deletes


def service_dir_ops(old: ClusterState, new: ClusterState, dirs: set[str]) -> list[Op]:
    """Creates of `/services/<job>/<node>` for every node newly given a task of a
    service with ports (adding them to `dirs`): the directory that node may publish the
    task's endpoint in. With ACLs only the conductor may make it, with the node as its
    owner (helios.coordination.acl)."""
    ops: list[Op] = []
    for tid, a in new.assignments.items():
        prev = old.assignments.get(tid)
        if prev is a or (prev is not None and prev.node == a.node):
            continue
        if a.spec is None or a.spec.kind != "service" or not a.spec.ports:
            continue
        for d in (paths.SERVICES, paths.services(a.job), paths.service_node(a.job, a.node)):
            if d not in dirs:
                ops.append(Create(d))
                dirs.add(d)
    return ops


def _drain_ops(old: ClusterState, new: ClusterState, dirs: set[str]) -> list[Op]:
    """Writes of the operators' drain records (`/drain/<node>`, drain.py); the directory
    is created with the first one (clusters made before drains existed lack it)."""
    ops: list[Op] = []
    for name, d in new.drains.items():
        prev = old.drains.get(name)
        if prev is d or prev == d:
            continue
        ops.append(Set(paths.drain(name), d.to_dict()) if prev is not None
                   else Create(paths.drain(name), d.to_dict()))
    ops.extend(Delete(paths.drain(name)) for name in old.drains.keys() - new.drains.keys())
    if ops and paths.DRAIN not in dirs:
        ops.insert(0, Create(paths.DRAIN))
        dirs.add(paths.DRAIN)
    return ops


def _size(op: Op) -> int:
    value = getattr(op, "value", None)
    return len(op.path) + 64 + (len(json.dumps(value, separators=(",", ":")))
                                if value is not None else 0)


def chunks(ops: Sequence[Op], max_ops: int = MAX_OPS,
           max_bytes: int = MAX_BYTES) -> list[list[Op]]:
    """Split `ops` into transactions under ZooKeeper's request size, keeping order (a
    directory's Create always precedes its children's)."""
    return pack(ops, _size, max_bytes, max_ops)


class Writer:
    """Writes the leader's cache to the store under its term."""

    def __init__(self, term: Term, persisted: Persisted) -> None:
        self.term = term
        self.persisted = persisted
        self.writes = 0  # ops written, for logs and tests
        self.refused = 0  # ops the store refused for their size, dropped with a log line

    async def flush(self, state: ClusterState, extra: Sequence[Op] = (),
                    stamp: dict[str, int] | None = None) -> int:
        """Write what changed since the last flush (plus `extra` ops, e.g. history),
        then remember `state` as persisted. Raises `StaleEpoch` once deposed."""
        target = state.copy()  # the cache may change while the writes are in flight
        dirs = self.persisted.dirs
        made: list[Op] = service_dir_ops(self.persisted.state, target, dirs)
        ops: list[Op] = []
        try:
            await self._make_service_dirs(made)
            ops, status_paths = diff_ops(self.persisted.state, target, dirs, stamp)
            if status_paths:
                store = self.term.store
                exists = [await store.exists(p) for p in status_paths]
                ops.extend(Delete(p) for p, e in zip(status_paths, exists, strict=True) if e)
            ops.extend(extra)
            if ops:
                await self.write(ops)
        except BaseException:
            # Directories count as made only once written: after a failed flush the next
            # one must create them again (nodes cannot make an endpoint directory).
            dirs.difference_update(op.path for op in [*made, *ops] if isinstance(op, Create))
            raise
        self.persisted.state = target
        return len(ops)

    async def _make_service_dirs(self, ops: Sequence[Op]) -> None:
        """Make the endpoint directories before the assignments that need them, so a
        node told of a task finds where to publish it. Best effort: a directory that
        cannot be made (a refused ACL) leaves that task unpublished, which the rollout
        gate sees, and must not block the cluster's every other write."""
        if not ops:
            return
        try:
            await self.term.transaction(ops)
            return
        except (StaleEpoch, Unavailable):
            raise
        except CoordinationError:
            pass
        for op in ops:
            try:
                await self.term.transaction([op])
            except (StaleEpoch, Unavailable):
                raise
            except TransactionFailed as e:
                if not isinstance(e.cause, NodeExists):
                    log.warning("cannot make %s: %s; its node cannot publish endpoints "
                                "there", op.path, e.cause)
            except CoordinationError as e:
                log.warning("cannot make %s: %s; its node cannot publish endpoints there",
                            op.path, e)

    async def write(self, ops: Sequence[Op]) -> None:
        """Fenced, chunked; a failing chunk falls back to one op at a time."""
        for chunk in chunks(ops):
            try:
                await self.term.transaction(chunk)
            except (TransactionFailed, ValueTooLarge) as e:
                log.info("transaction of %d ops failed at %s (%s); writing one by one",
                         len(chunk), getattr(getattr(e, "op", None), "path", "?"),
                         getattr(e, "cause", e))
                for op in chunk:
                    await self._one(op)
            self.writes += len(chunk)

    async def _one(self, op: Op) -> None:
        """Upsert semantics: a Create that exists becomes a Set, a Set or Delete of a
        missing path is done or moot; missing parents are created."""
        try:
            await self.term.transaction([op])
            return
        except StaleEpoch:
            raise
        except ValueTooLarge as e:
            # One value the store cannot hold must not block every later write.
            self.refused += 1
            log.error("dropped the write of %s: %s (%d dropped so far)", op.path, e,
                      self.refused)
            return
        except TransactionFailed as e:
            cause: Any = e.cause
        if isinstance(op, Create) and isinstance(cause, NodeExists):
            if op.sequential:
                raise cause
            await self.term.transaction([Set(op.path, op.value)])
        elif isinstance(op, Set) and isinstance(cause, NoNode):
            await self._create_with_parents(op.path, op.value)
        elif isinstance(op, Create) and isinstance(cause, NoNode):
            await self._create_with_parents(op.path, op.value, op.sequential)
        elif isinstance(op, Delete) and isinstance(cause, NoNode):
            return
        elif isinstance(op, Delete) and isinstance(cause, NotEmpty):
            log.warning("cannot delete %s: it has children", op.path)
        else:
            log.warning("write of %s failed: %s", op.path, cause)

    async def _create_with_parents(self, path: str, value: Any,
                                   sequential: bool = False) -> None:
        ops: list[Op] = []
        parts = path.strip("/").split("/")
        store = self.term.store
        for i in range(1, len(parts)):
            parent = "/" + "/".join(parts[:i])
            if parent not in self.persisted.dirs and not await store.exists(parent):
                ops.append(Create(parent))
            self.persisted.dirs.add(parent)
        ops.append(Create(path, value, sequential=sequential))
        try:
            await self.term.transaction(ops)
        except TransactionFailed as e:
            if isinstance(e.cause, NodeExists) and not sequential:
                await self.term.transaction([Set(path, value)])
            else:
                raise
