"""Regression tests of bugs the chaos soak found (issue 18), each focused on one bug.

**A returning node's stale report of a task the leader had forgotten.** In the soak, a
node cut off from ZooKeeper and the conductors lost its task (replaced elsewhere); when
the partition healed it stopped its copy and reported `stopped`, from its buffered
events and from its `statuses()` answer (the leader re-reads every node's reports when
the node comes back and every 15 s). The leader took each such report as a new status,
found no assignment owning it and planned `forget <task> on <node>: orphan status
(stopped)`: the same task forgotten again and again (14 times in one run), a write to
ZooKeeper and a history event each time. The fix (the conductor's `_merge_reports`, in
helios/conductor/conductor.py): a node's report is taken only for a task assigned to that
node or whose last known status came from it; anything else is ignored (and logged).
Here the conductor runs against fake nodes (tests/helios/conductor/fakenode.py); the
returning node's reports of its stopped copy are sent as `task_events` (the path both
replayed events and `statuses()` answers take); without the fix the forgotten status
comes back and is forgotten again each time.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.helios.conductor.conftest import mini_cluster

WEB = {"name": "web", "kind": "service", "image": "local/busybox:1",
       "command": ["httpd", "-f"], "count": 1, "resources": {"cpus": 0.5, "memory": "64M"},
       "update": {"min_healthy_time": "0s"}}


async def test_a_returning_nodes_stale_stopped_report_is_not_taken_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="helios.conductor")
    async with mini_cluster(tmp_path) as cluster:
        c = await cluster.conductor("c1", grace=0.3)
        await cluster.node("n1")
        await cluster.ask(c, "job_run", WEB)

        async def running_on(exclude: str | None = None) -> Any:
            st = await cluster.ask(c, "job_status", "web")
            live = [t for t in st["tasks"] if t["state"] == "running"
                    and t["node"] != exclude]
            return live[0] if len(live) == 1 else None

        old = await cluster.wait_for(running_on, what="web running on n1")
        assert old["node"] == "n1"
        # n1 is cut off (its session ends): its task is lost and replaced on n2
        cluster.kill_node("n1")
        await cluster.node("n2")
        new = await cluster.wait_for(lambda: running_on(exclude="n1"), timeout=20,
                                     what="web replaced on n2")
        assert new["id"] != old["id"]
        # n1 comes back and is told its copy must stop: it stops it and reports
        # `stopped`, then the leader forgets the copy
        back = await cluster.node("n1")
        L = c.lead
        assert L is not None

        async def forgotten() -> bool:
            return old["id"] not in L.state.statuses and \
                old["id"] not in L.state.assignments

        # the returning fake node starts empty: give it the copy it still held, as
        # the real node does (its job actor reports `stopped` once the copy is down)
        now = time.time()
        stale = {"id": old["id"], "node": "n1", "job": "web", "state": "stopped",
                 "healthy": None, "container": f"c-{old['id']}", "ports": {},
                 "exit_code": None, "since": now, "updated": now}
        await cluster.ask(c, "task_events", "n1", [stale])
        await cluster.wait_for(forgotten, timeout=20, what="the old copy forgotten")
        forgets_before = _forgets(caplog.text, old["id"])
        # the node keeps reporting it (its buffered events replayed, its statuses()
        # answer read again at each re-sync: both go through the same merge)
        for i in range(5):
            again = dict(stale, updated=now + 1 + i)
            await cluster.ask(c, "task_events", "n1", [again])
            await trio.sleep(0.2)
        assert await forgotten(), "the forgotten copy's status came back"
        assert _forgets(caplog.text, old["id"]) == forgets_before, caplog.text
        assert "not assigned to it, ignored" in caplog.text
        assert back is not None


def _forgets(log: str, task: str) -> int:
    return sum(1 for line in log.splitlines() if f"forget {task}" in line)
