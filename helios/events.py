"""The cluster's event stream (`helios events`, `GET /v1/events`): one log in the store.

Why in the store, not in a conductor's memory: a client that follows the stream must be
able to resume from the last index it saw after a reconnect or a leader change, so the
index has to mean the same thing to every conductor. The leader appends the events of
each flush as sequential entries `/events/b-<seq>` in the same fenced writes that carry
the state change they describe (a deposed leader can append nothing), and an event's
index is `seq * PER_BATCH + position`. ZooKeeper's sequence counter of a parent only
grows (the embedded store counts the same way), so indexes only grow, across terms too.

The log is bounded: the leader keeps the newest `KEEP_BATCHES` entries (each holds at
most `PER_BATCH` events) and deletes older ones as it writes. A reader that resumes from
an index older than the oldest kept entry gets what remains (`truncated` tells it).

Each line: {"index", "time", "topic": "job"|"task"|"node"|"rollout"|"leader", "type",
"job", "task", "node", "detail"} (docs/http-api.md).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Iterable, Mapping
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Any

from helios.coordination import paths
from helios.coordination.codec import split_by_size
from helios.coordination.errors import CorruptValue
from helios.coordination.store import Create, Delete, Op, Store

log = logging.getLogger(__name__)

__all__ = ["EVENTS", "KEEP_BATCHES", "PER_BATCH", "TOPICS", "EventLog", "cluster_event",
           "follow_events", "read_events", "to_line"]

#: the log's directory in the store; children are sequential `b-<10 digits>`
EVENTS = "/events"
_PREFIX = f"{EVENTS}/b-"
#: events per stored entry at most; an index is `seq * PER_BATCH + position`
PER_BATCH = 1000
#: encoded bytes of one stored entry, far below the store's value limit
MAX_ENTRY_BYTES = 128 * 1024
#: stored entries kept (the newest); older ones are deleted by the leader
KEEP_BATCHES = 2000
TOPICS = ("job", "task", "node", "rollout", "leader")


def cluster_event(topic: str, type_: str, *, node: str | None = None, detail: str = "",
                  at: float | None = None) -> dict[str, Any]:
    """A history-shaped record of something that belongs to no job (a node going up or
    down, a new leader). It travels in the conductor's history buffer under the job ""
    (which `History` never writes as a job's history) so it is flushed, and put back on a
    failed flush, exactly like the jobs' events."""
    import time

    return {"time": time.time() if at is None else at, "job": "", "task": "",
            "node": node or "", "state": type_, "reason": detail, "topic": topic}


def to_line(ev: Mapping[str, Any]) -> dict[str, Any]:
    """A history event (`helios.conductor.history.event`) as a stream line, without its
    index (given when read)."""
    state = str(ev.get("state") or "")
    topic = ev.get("topic")
    if topic not in TOPICS:
        if state.startswith("rollout "):
            topic, state = "rollout", state.removeprefix("rollout ")
        elif ev.get("task"):
            topic = "task"
        else:
            topic = "job"
    try:
        when = datetime.fromtimestamp(float(ev.get("time") or 0.0), tz=UTC)
        stamp = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (TypeError, ValueError, OverflowError):
        stamp = ""
    return {"time": stamp, "topic": topic, "type": state,
            "job": ev.get("job") or None, "task": ev.get("task") or None,
            "node": ev.get("node") or None, "detail": str(ev.get("reason") or "")}


class EventLog:
    """The writer's side, owned by one leadership term (through its `History`): turns
    buffered events into appends and trims the log to its bound."""

    def __init__(self, store: Store, keep: int = KEEP_BATCHES) -> None:
        self.store = store
        self.keep = keep
        self._dir_known = False
        self._count: int | None = None  # entries in the store, read once per term

    async def append_ops(self, events: Iterable[Mapping[str, Any]]) -> list[Op]:
        lines = [to_line(e) for e in sorted(events, key=lambda e: e.get("time") or 0.0)]
        if not lines:
            return []
        ops: list[Op] = []
        if not self._dir_known:
            if not await self.store.exists(EVENTS):
                ops.append(Create(EVENTS))
            self._dir_known = True
        split, dropped = split_by_size(lines, MAX_ENTRY_BYTES, PER_BATCH)
        if dropped:
            log.warning("event log: %d event(s) over %d bytes dropped", dropped,
                        MAX_ENTRY_BYTES)
        for batch in split:
            ops.append(Create(_PREFIX, {"events": batch}, sequential=True))
            if self._count is not None:
                self._count += 1
        return ops

    async def trim_ops(self) -> list[Op]:
        """Deletes of the oldest entries once there are a quarter more than `keep`."""
        if self._count is not None and self._count <= self.keep + self.keep // 4:
            return []
        names = sorted(await self.store.children(EVENTS), key=paths.sequence_of)
        extra = max(0, len(names) - self.keep)
        self._count = len(names) - extra
        return [Delete(f"{EVENTS}/{n}") for n in names[:extra]]


async def _entry(store: Store, name: str) -> list[Any]:
    try:
        entry = await store.get(f"{EVENTS}/{name}")
    except CorruptValue as e:
        log.warning("skipping %s", e)
        return []
    value = entry.value if entry is not None else None
    lines = value.get("events") if isinstance(value, dict) else None
    return list(lines or [])


async def _newest(store: Store, names: list[str], seqs: list[int], job: str | None,
                  last: int) -> dict[str, Any]:
    """The newest `last` events (of `job`), reading entries from the newest back."""
    picked: list[dict[str, Any]] = []
    index = -1
    for name, seq in zip(reversed(names), reversed(seqs), strict=True):
        lines = await _entry(store, name)
        if index < 0 and lines:
            index = seq * PER_BATCH + len(lines) - 1
        picked[:0] = [{"index": seq * PER_BATCH + i, **line} for i, line in enumerate(lines)
                      if isinstance(line, dict) and (job is None or line.get("job") == job)]
        if len(picked) >= last:
            break
    return {"events": picked[-last:] if last else [], "index": index, "truncated": False}


async def read_events(store: Store, after: int = -1, job: str | None = None,
                      limit: int | None = None, last: int | None = None) -> dict[str, Any]:
    """Events with an index greater than `after` (all kept ones by default), oldest
    first, at most `limit`; with `job`, only that job's. With `last` (and no `after`),
    only the newest `last` of them (a dashboard's first look).

    Returns {"events": [...], "index": the index to resume after (the last one read, also
    when `job` filtered it out), "truncated": whether events after `after` were already
    trimmed away}."""
    names = sorted(await store.children(EVENTS), key=paths.sequence_of)
    seqs = [paths.sequence_of(n) for n in names]
    if last is not None and after < 0:
        return await _newest(store, names, seqs, job, max(0, last))
    # Sequence numbers are contiguous (only this log creates children here), so a gap
    # between the entry of `after` and the oldest kept one means entries were trimmed.
    truncated = bool(seqs) and after >= 0 and seqs[0] > after // PER_BATCH + 1
    out: list[dict[str, Any]] = []
    last = after
    for name, seq in zip(names, seqs, strict=True):
        if (seq + 1) * PER_BATCH - 1 <= after:
            continue
        for i, line in enumerate(await _entry(store, name)):
            index = seq * PER_BATCH + i
            if index <= after or not isinstance(line, dict):
                continue
            last = index
            if job is not None and line.get("job") != job:
                continue
            out.append({"index": index, **line})
            if limit is not None and len(out) >= limit:
                return {"events": out, "index": last, "truncated": truncated}
    return {"events": out, "index": last, "truncated": truncated}


async def follow_events(store: Store, after: int = -1, job: str | None = None,
                        last: int | None = None) -> AsyncGenerator[dict[str, Any], None]:
    """Every event after `after` (or the newest `last`) and then each new one as the
    leader writes it, forever (a store watch wakes it; no polling)."""
    async with aclosing(store.watch_children(EVENTS)) as changes:
        async for _ in changes:
            if last is not None and after < 0:
                got = await read_events(store, -1, job, last=last)
                for ev in got["events"]:
                    yield ev
                after, last = got["index"], None
                continue
            while True:
                got = await read_events(store, after, job, limit=PER_BATCH)
                for ev in got["events"]:
                    yield ev
                more = got["index"] > after and len(got["events"]) >= PER_BATCH
                after = max(after, got["index"])
                if not more:
                    break

