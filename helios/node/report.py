"""Where a node's task reports go: its status znodes, and the leader conductor.

Two outlets with different needs, so two buffers:

- The store keeps the *last* state of each task (`/status/<node>/<task>`). While the store
  is unreachable only the newest status per task is kept (a task that went pending ->
  starting -> running while ZooKeeper was down needs one write when it returns, not
  three). Deleting a forgotten task's status is queued the same way.
- The conductor wants *every* state change, oldest first (`task_events`), to keep its
  history and drive rollouts. Events are buffered in order while no conductor answers,
  bounded by `max_events` (past it the oldest are dropped, with a warning: the store
  still holds each task's last state, so a conductor can always catch up from there),
  and replayed in batches on reconnect. Each event carries a sequence number so an
  acknowledged batch is removed exactly, even if the buffer overflowed meanwhile.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import trio

import actors
from helios import protocol
from helios.coordination import CoordinationError, Store, StoreClosed, paths
from helios.model import TaskStatus
from helios.retry import Backoff

log = logging.getLogger(__name__)

MAX_EVENTS = 10_000
BATCH = 256
RETRY_MIN = 0.2
RETRY_MAX = 5.0
SEND_TIMEOUT = 10.0

_DELETE = object()


class Reporter:
    """Buffers and delivers task reports for node `node`."""

    def __init__(self, node: str, *, max_events: int = MAX_EVENTS) -> None:
        self.node = node
        self.max_events = max_events
        self._pending: dict[str, Any] = {}          # task -> newest status dict, or _DELETE
        self._events: deque[tuple[int, dict[str, Any]]] = deque()
        self._seq = 0
        self._store_wake = trio.Event()
        self._conductor_wake = trio.Event()
        self.dropped = 0
        self.sent = 0

    # -- input ----------------------------------------------------------------------------

    def report(self, status: TaskStatus) -> None:
        """A task changed state: queue it for both outlets (never blocks)."""
        d = status.to_dict()
        self._pending[status.id] = d
        self._seq += 1
        self._events.append((self._seq, d))
        if len(self._events) > self.max_events:
            self._events.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("node %s: conductor unreachable for long; %d oldest task events "
                            "dropped (statuses in the store stay current)", self.node,
                            self.dropped)
        self._store_wake.set()
        self._conductor_wake.set()

    def forget(self, task_id: str) -> None:
        """The task is gone from this node: delete its status znode."""
        self._pending[task_id] = _DELETE
        self._store_wake.set()

    def wake(self) -> None:
        """Something changed outside (a new session, a new leader): try again now."""
        self._store_wake.set()
        self._conductor_wake.set()

    @property
    def backlog(self) -> tuple[int, int]:
        """(statuses not yet in the store, events not yet acknowledged by a conductor)."""
        return len(self._pending), len(self._events)

    # -- the store --------------------------------------------------------------------------

    async def store_loop(self, store: Store) -> None:
        """Write pending statuses to the store, forever; waits out outages."""
        backoff = Backoff(RETRY_MIN, RETRY_MAX)
        while True:
            await self._store_wake.wait()
            self._store_wake = trio.Event()
            try:
                await self._flush_store(store)
                backoff.reset()
            except StoreClosed:
                raise
            except CoordinationError as e:
                log.info("node %s: status writes wait for the store (%s)", self.node, e)
                self._store_wake.set()
                await backoff.sleep()

    async def _flush_store(self, store: Store) -> None:
        for task, value in list(self._pending.items()):
            path = paths.status(self.node, task)
            if value is _DELETE:
                await store.delete(path)
            else:
                await store.put(path, value)
            if self._pending.get(task) is value:  # not replaced meanwhile
                del self._pending[task]

    # -- the conductor ----------------------------------------------------------------------

    async def conductor_loop(self, system: actors.ActorSystem,
                             conductor_url: Callable[[], str | None],
                             leader_changed: Callable[[], trio.Event]) -> None:
        """Send buffered events to the current leader, in order, forever."""
        backoff = Backoff(RETRY_MIN, RETRY_MAX)
        redirect: str | None = None
        while True:
            if not self._events:
                await self._conductor_wake.wait()
            self._conductor_wake = trio.Event()
            if not self._events:
                continue
            url = redirect or conductor_url()
            redirect = None
            if not url:
                await leader_changed().wait()
                continue
            batch = [d for _, d in list(self._events)[:BATCH]]
            last = self._events[min(BATCH, len(self._events)) - 1][0]
            try:
                ref = system.ref(url)
                if system.config.tls is not None and not ref.is_local:
                    peer = await system.peer(url)  # reports go to a conductor, or nowhere
                    if peer.role != "conductor":
                        raise actors.ConnectionLost(f"{url} is answered by {peer}, not by "
                                                    "a conductor: no events sent")
                await ref.ask("task_events", self.node, batch, timeout=SEND_TIMEOUT)
            except actors.RemoteError as e:
                if e.type_name == "NotLeader" and e.message:
                    redirect = protocol.conductor_url(e.message)
                log.info("node %s: conductor %s refused task events: %s", self.node, url, e)
            except (actors.ActorError, OSError, ValueError) as e:
                log.info("node %s: conductor %s unreachable (%s); %d events buffered",
                         self.node, url, e, len(self._events))
            else:
                while self._events and self._events[0][0] <= last:
                    self._events.popleft()
                self.sent += len(batch)
                backoff.reset()
                continue
            if redirect is None:
                with trio.move_on_after(backoff.next()):
                    await leader_changed().wait()
