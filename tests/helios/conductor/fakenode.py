"""A node daemon stand-in that speaks protocol.py, for the conductor's unit tests.

It registers like a node (record + presence in the store), accepts `assign` with the
epoch rule, "runs" each task at once (reports `running`, or `exited` for batch jobs) and
"stops" tasks marked stop. It lets the conductor be tested alone, fast and exactly,
without containers; the integration tests use the real node daemon.
"""

from __future__ import annotations

import time
from typing import Any

import trio

import actors
from helios import protocol
from helios.coordination import presence
from helios.coordination.store import Store


class StaleEpoch(Exception):
    pass


class FakeNode(actors.Actor):
    def __init__(self, name: str, store: Store, batch_exit: int | None = 0,
                 hold_batch: bool = False, forge_stale: bool = False) -> None:
        self.node_name = name
        self.store = store
        self.epoch = 0
        self.generation = 0
        self.tasks: dict[str, dict[str, Any]] = {}
        self.states: dict[str, dict[str, Any]] = {}
        self.assign_calls = 0
        self.batch_exit = batch_exit
        self.hold_batch = hold_batch  # batch tasks stay `running` until told to stop
        self.outbox: list[dict[str, Any]] = []
        self.forge_stale = forge_stale  # refuse every epoch: a lying or confused node

    @actors.handler
    async def assign(self, epoch: int, generation: int, assignments: list[dict]) -> dict:
        if self.forge_stale:
            self.assign_calls += 1
            raise actors.Refusal(f"epoch {epoch} is stale (a lie)", type_name="StaleEpoch")
        if epoch < self.epoch:
            raise StaleEpoch(f"epoch {epoch} < {self.epoch}")
        if epoch == self.epoch and generation < self.generation:
            return {"epoch": epoch, "generation": generation, "accepted": False}
        self.epoch, self.generation = epoch, generation
        self.assign_calls += 1
        self.tasks = {a["id"]: a for a in assignments}
        for tid, a in self.tasks.items():
            cur = self.states.get(tid, {}).get("state")
            if a["desired"] == "run" and cur is None:
                kind = (a.get("spec") or {}).get("kind", "service")
                state = "running" if kind == "service" or self.hold_batch else \
                    ("exited" if self.batch_exit == 0 else "failed")
                self._report(a, state)
            elif a["desired"] == "stop" and cur not in ("stopped", "exited", "failed", None):
                self._report(a, "stopped")
        for tid in list(self.states):
            if tid not in self.tasks and self.states[tid]["state"] not in (
                    "stopped", "exited", "failed"):
                self._report({"id": tid, "job": self.states[tid]["job"]}, "stopped")
        return {"epoch": epoch, "generation": generation, "accepted": True}

    def _report(self, a: dict[str, Any], state: str) -> None:
        now = time.time()
        st = {"id": a["id"], "node": self.node_name, "job": a.get("job", ""),
              "state": state, "healthy": True if state == "running" else None,
              "container": f"c-{a['id']}", "ports": {"http": 21000 + len(self.states)},
              "exit_code": 0 if state == "exited" else None, "since": now, "updated": now}
        self.states[a["id"]] = st
        self.outbox.append(st)

    @actors.handler
    async def statuses(self) -> list[dict[str, Any]]:
        return list(self.states.values())

    @actors.handler
    async def info(self) -> dict[str, Any]:
        return {"name": self.node_name}

    @actors.handler
    async def logs(self, task_id: str, since: Any = None, tail: Any = None) -> dict:
        return {"lines": [f"log of {task_id}"], "cursor": 1.0}

    @actors.handler
    async def flush_reports(self) -> int:
        """Send buffered reports to the leader (tests call it, or the loop does)."""
        if not self.outbox:
            return 0
        entry = await self.store.get(protocol.LEADER_PATH)
        if entry is None:
            return 0
        ref = self.system.ref(entry.value["url"])
        batch, self.outbox = self.outbox, []
        try:
            await ref.ask("task_events", self.node_name, batch, timeout=5)
        except actors.ActorError:
            self.outbox = batch + self.outbox
            return 0
        return len(batch)

    async def on_start(self) -> None:
        self.start_soon(self._report_loop)

    async def _report_loop(self) -> None:
        while True:
            await trio.sleep(0.02)
            await self.flush_reports()


async def run_fake_node(store: Store, system: actors.ActorSystem, name: str, *,
                        cpus: float = 2.0, memory: int = 1 << 30,
                        labels: dict[str, str] | None = None, hold_batch: bool = False,
                        forge_stale: bool = False,
                        task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Register and run a fake node in `system` (its actor is named `node-<name>`...
    no: the protocol's `node`, so give each fake node its own system)."""
    ref = await system.spawn(FakeNode, name, store, hold_batch=hold_batch,
                             forge_stale=forge_stale, name=protocol.NODE_ACTOR)
    record = {"name": name, "address": system.url, "cpus": cpus, "memory": memory,
              "labels": labels or {}, "runtime": "process"}
    try:
        async with presence(store, name, record):
            task_status.started(ref)
            await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            try:
                await ref.stop()
            except actors.ActorError:
                pass
