"""The event log (`helios.events`) on the embedded store: the line shape, indexes that
only grow, reading after an index (with a job filter and a limit), the bound kept by
trimming and the `truncated` flag a reader behind the trim gets, and a follower woken by
a new entry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
import trio.testing

from helios.conductor.history import event
from helios.coordination import open_embedded
from helios.events import (
    EVENTS,
    PER_BATCH,
    EventLog,
    cluster_event,
    follow_events,
    read_events,
    to_line,
)


async def append(store: Any, log: EventLog, events: list[dict[str, Any]]) -> None:
    await store.transaction(await log.append_ops(events))


def test_lines_have_the_contract_shape() -> None:
    keys = {"time", "topic", "type", "job", "task", "node", "detail"}
    task = to_line(event("web", "web-1", "n1", "running", "", at=0.5))
    assert set(task) == keys
    assert task == {"time": "1970-01-01T00:00:00.500Z", "topic": "task", "type": "running",
                    "job": "web", "task": "web-1", "node": "n1", "detail": ""}
    assert to_line(event("web", "", "", "submitted", "version 2"))["topic"] == "job"
    ro = to_line(event("web", "web-2", "", "rollout replaced", "slot 0"))
    assert (ro["topic"], ro["type"], ro["node"]) == ("rollout", "replaced", None)
    node = to_line(cluster_event("node", "down", node="n1", detail="127.0.0.1:7101"))
    assert (node["topic"], node["type"], node["job"], node["node"]) == \
        ("node", "down", None, "n1")
    assert to_line(cluster_event("leader", "elected"))["topic"] == "leader"


async def test_read_after_an_index_filter_limit_and_follow(tmp_path: Path) -> None:
    store = await open_embedded(tmp_path / "s.db")
    await store.create("/cluster-id", "test")  # the root exists, as in a cluster
    try:
        log = EventLog(store)
        assert await read_events(store) == {"events": [], "index": -1, "truncated": False}
        await append(store, log, [event("a", "a-1", "n1", "placed", at=1.0),
                                  event("b", "b-1", "n1", "placed", at=1.1)])
        await append(store, log, [event("a", "a-1", "n1", "running", at=2.0)])
        got = await read_events(store)
        idx = [e["index"] for e in got["events"]]
        assert idx == [0, 1, PER_BATCH] and got["index"] == PER_BATCH
        assert [e["type"] for e in (await read_events(store, 0))["events"]] == \
            ["placed", "running"]
        only_a = await read_events(store, -1, job="a")
        assert [e["index"] for e in only_a["events"]] == [0, PER_BATCH]
        limited = await read_events(store, -1, limit=2)
        assert [e["index"] for e in limited["events"]] == [0, 1] and limited["index"] == 1
        # filtered out, the index still moves past what was read
        assert (await read_events(store, 1, job="b"))["index"] == PER_BATCH
        # the newest few only, and where to resume after them
        newest = await read_events(store, last=2)
        assert [e["index"] for e in newest["events"]] == [1, PER_BATCH]
        assert newest["index"] == PER_BATCH
        assert [e["index"] for e in (await read_events(store, last=1, job="b"))["events"]] \
            == [1]
        assert (await read_events(store, last=0))["events"] == []

        seen: list[dict[str, Any]] = []

        async def follow() -> None:
            async for ev in follow_events(store, PER_BATCH):
                seen.append(ev)
                if len(seen) == 2:
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            # the embedded store runs in this trio run: once every task is blocked, the
            # follower has read what there is and waits on its watch (the wake is tested)
            await trio.testing.wait_all_tasks_blocked()
            await append(store, log, [event("a", "a-1", "n1", "stopping", at=3.0),
                                      event("a", "a-1", "n1", "stopped", at=3.1)])
            with trio.fail_after(10):
                while len(seen) < 2:
                    await trio.sleep(0.01)
        assert [e["index"] for e in seen] == [2 * PER_BATCH, 2 * PER_BATCH + 1]
    finally:
        await store.aclose()


async def test_the_log_is_trimmed_to_its_bound_and_a_late_reader_is_told(
        tmp_path: Path) -> None:
    store = await open_embedded(tmp_path / "s.db")
    await store.create("/cluster-id", "test")  # the root exists, as in a cluster
    try:
        log = EventLog(store, keep=4)
        for i in range(12):
            await append(store, log, [event("j", f"j-{i}", "n", "placed", at=float(i))])
            await store.transaction(await log.trim_ops() or [])
        names = await store.children(EVENTS)
        assert 4 <= len(names) <= 5  # the bound, plus at most a quarter over it
        got = await read_events(store, 0)
        assert got["truncated"] is True
        assert got["events"][-1]["task"] == "j-11"
        first = got["events"][0]["index"]
        assert (await read_events(store, first))["truncated"] is False
        assert (await read_events(store))["truncated"] is False  # from the start: all kept
    finally:
        await store.aclose()
