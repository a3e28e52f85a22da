"""Task events per job, kept in the store under `/history/<job>/` and trimmed to a bound.

Why batches: every flush of the conductor appends at most one sequential znode per job,
holding the events of that flush as a list. One task start is five or six state changes;
a znode per event would multiply writes and, worse, the reads of `helios job history`.
Trimming keeps the newest `keep` batches, so history costs bounded space whatever runs.
Why in the store: a new leader must answer `job history` for what happened before it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import trio

from helios.coordination import paths
from helios.coordination.codec import split_by_size
from helios.coordination.errors import CoordinationError, CorruptValue
from helios.coordination.store import Create, Delete, Op, Store
from helios.events import EventLog
from helios.model import MAX_REASON, clip

log = logging.getLogger(__name__)

__all__ = ["History", "event", "read_history"]

#: batches kept per job; each batch holds the events of one conductor flush
KEEP_BATCHES = 100
#: events kept per batch (a larger burst keeps its newest events)
MAX_BATCH_EVENTS = 200
#: collected jobs whose late events are dropped (the newest this many are remembered)
MAX_DROPPED = 10_000
#: characters kept of an event's text fields other than the reason (model.MAX_REASON)
MAX_FIELD = 200
#: encoded bytes of one stored batch: a burst of events becomes several batches, each
#: far below the store's value limit, so no batch is ever refused for its size
MAX_BATCH_BYTES = 128 * 1024

def event(job: str, task: str, node: str, state: str, reason: str = "",
          at: float | None = None, **extra: Any) -> dict[str, Any]:
    """One history record: what happened to which task, where, when and why; every
    text field bounded (MAX_REASON, MAX_FIELD)."""
    ev = {"time": time.time() if at is None else at, "job": clip(str(job), MAX_FIELD),
          "task": clip(str(task), MAX_FIELD), "node": clip(str(node), MAX_FIELD),
          "state": clip(str(state), MAX_FIELD), "reason": clip(str(reason), MAX_REASON)}
    for k, v in extra.items():
        if v is not None:
            ev[k] = clip(v, MAX_FIELD) if isinstance(v, str) else v
    return ev


class History:
    """Buffers events between flushes; turns them into store ops; trims old batches.

    Owned by one leadership term (its counts are only a cache of the store)."""

    def __init__(self, store: Store, keep: int = KEEP_BATCHES) -> None:
        self.store = store
        self.keep = keep
        self.buffer: dict[str, list[dict[str, Any]]] = {}
        #: events taken by `take_ops` whose write has not finished yet (`written()`
        #: clears them): a reader sees them here rather than nowhere
        self.inflight: dict[str, list[dict[str, Any]]] = {}
        self._counts: dict[str, int] = {}
        self._dirs: set[str] = set()
        #: jobs whose history was deleted (collected runs), in order, -> True
        self._dropped: dict[str, bool] = {}
        #: events dropped because even alone they were over MAX_BATCH_BYTES
        self.oversized = 0
        #: whether a job exists now (set by the owner): a dropped job that exists again
        #: (a name used anew) records events again
        self.exists: Callable[[str], bool] = lambda job: False
        #: the cluster's event stream (helios.events): every flushed event goes there too
        self.log = EventLog(store)

    def add(self, ev: Mapping[str, Any]) -> None:
        job = str(ev["job"])
        if job in self._dropped and not self.exists(job):
            return  # a late report of a collected run would bring its history back
        self.buffer.setdefault(job, []).append(dict(ev))

    def written_with_claim(self, job: str) -> None:
        """A batch another fenced write appended to `job`'s history (a cron claim's
        event, cron_runner): it counts towards the job's bound."""
        if job in self._counts:
            self._counts[job] += 1
        with contextlib.suppress(ValueError):
            self._dirs.add(paths.history(job))

    def extend(self, events: Iterable[Mapping[str, Any]]) -> None:
        for ev in events:
            self.add(ev)

    async def take_ops(self, known_dirs: set[str]) -> list[Op]:
        """Ops that append the buffered events (one batch per job), emptying the buffer."""
        ops: list[Op] = []
        buffer, self.buffer = self.buffer, {}
        for job, events in buffer.items():
            self.inflight.setdefault(job, []).extend(events)
        for job, events in buffer.items():
            try:
                d = paths.history(job)
            except ValueError:
                continue
            if d not in self._dirs and d not in known_dirs:
                if not await self.store.exists(d):
                    ops.append(Create(d))
                known_dirs.add(d)
            self._dirs.add(d)
            # A burst keeps its newest events: at most a bound's worth of batches.
            split, dropped = split_by_size(events[-MAX_BATCH_EVENTS * 4:],
                                           MAX_BATCH_BYTES, MAX_BATCH_EVENTS)
            if dropped:
                self.oversized += dropped
                log.warning("history of %s: %d event(s) over %d bytes dropped (%d so far)",
                            job, dropped, MAX_BATCH_BYTES, self.oversized)
            for batch in split:
                ops.append(Create(paths.history_event_prefix(job), {"events": batch},
                                  sequential=True))
                if job in self._counts:
                    self._counts[job] += 1
        ops.extend(await self.log.append_ops(e for evs in buffer.values() for e in evs))
        return ops

    def written(self) -> None:
        """The ops of the last `take_ops` are written (or their events are back in the
        buffer): they are no longer in flight."""
        self.inflight = {}

    def unwritten(self, job: str) -> list[dict[str, Any]]:
        """`job`'s events not in the store yet (in flight first, then buffered)."""
        return [dict(e) for e in self.inflight.get(job, []) + self.buffer.get(job, [])]

    async def trim_ops(self) -> list[Op]:
        """Deletes of the oldest batches of jobs over the bound (checked lazily: a job's
        count is read once per term, then tracked)."""
        ops: list[Op] = []
        for job in list(self._dirs_jobs()):
            n = self._counts.get(job)
            if n is not None and n <= self.keep + self.keep // 4:
                continue
            try:
                names = await self.store.children(paths.history(job))
            except CoordinationError:
                continue
            names.sort(key=paths.sequence_of)
            extra = max(0, len(names) - self.keep)
            for name in names[:extra]:
                ops.append(Delete(f"{paths.history(job)}/{name}"))
            self._counts[job] = len(names) - extra
        try:
            ops.extend(await self.log.trim_ops())
        except CoordinationError as e:
            log.info("event log not trimmed: %s", e)
        return ops

    def _dirs_jobs(self) -> Iterable[str]:
        return [paths.basename(d) for d in self._dirs]

    def forget(self, job: str) -> None:
        self._counts.pop(job, None)
        self._dirs.discard(paths.history(job))

    async def drop_ops(self, jobs: Iterable[str], known_dirs: set[str]) -> list[Op]:
        """Deletes of the whole history of `jobs` (collected runs): every batch, then
        the directory. Their buffered events go, and later events of theirs are ignored
        while they do not exist (`exists`), so a late report of a finished task does not
        bring the history back."""
        jobs = list(dict.fromkeys(jobs))
        for job in jobs:
            self.buffer.pop(job, None)
            self._dropped.pop(job, None)
            self._dropped[job] = True
            with contextlib.suppress(ValueError):
                self.forget(job)
                known_dirs.discard(paths.history(job))
        while len(self._dropped) > MAX_DROPPED:
            del self._dropped[next(iter(self._dropped))]
        found: dict[str, tuple[list[str], bool]] = {}
        errors: list[CoordinationError] = []
        limit = trio.CapacityLimiter(16)

        async def one(job: str) -> None:
            try:
                d = paths.history(job)
            except ValueError:
                return
            async with limit:
                try:
                    names = await self.store.children(d)
                    found[job] = (names, bool(names) or await self.store.exists(d))
                except CoordinationError as e:  # raised below, unwrapped
                    errors.append(e)

        async with trio.open_nursery() as nursery:
            for job in jobs:
                nursery.start_soon(one, job)
        if errors:
            raise errors[0]
        ops: list[Op] = []
        for job in jobs:
            if job not in found:
                continue
            names, exists = found[job]
            d = paths.history(job)
            ops.extend(Delete(f"{d}/{n}") for n in names)
            if exists:
                ops.append(Delete(d))
        return ops


async def read_history(store: Store, job: str, limit: int | None = None
                       ) -> list[dict[str, Any]]:
    """A job's events, oldest first (newest last), at most `limit` of the newest."""
    try:
        d = paths.history(job)
    except ValueError:
        return []
    names = sorted(await store.children(d), key=paths.sequence_of)
    values: list[Any] = [None] * len(names)

    async def one(i: int, name: str) -> None:
        try:
            entry = await store.get(f"{d}/{name}")
        except CorruptValue as e:
            log.warning("skipping %s", e)
            return
        values[i] = entry.value if entry is not None else None

    async with trio.open_nursery() as nursery:
        for i, name in enumerate(names):
            nursery.start_soon(one, i, name)
    out: list[dict[str, Any]] = []
    for v in values:
        if isinstance(v, dict):
            out.extend(e for e in v.get("events", []) if isinstance(e, dict))
    out.sort(key=lambda e: e.get("time", 0.0))
    return out[-limit:] if limit else out
