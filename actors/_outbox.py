"""A connection's send queue: bounded, with one consumer (the connection's writer task).

Senders wait when it is full (backpressure) instead of growing memory; replies and
control frames may go past the soft bound, since the reader that produces them must never
wait, but not past the hard one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import trio

from ._errors import ConnectionLost

MAX_BATCH_BYTES = 256 * 1024
#: what one queued frame costs beyond its bytes (the bytes object and the deque slot)
FRAME_OVERHEAD = 64


class Outbox:
    """Bounded queue of encoded frames with one consumer (the writer task).

    Two bounds. Senders (`put`) wait while `limit` frames or `max_bytes` bytes are queued:
    backpressure. Replies and control frames (`force`) cannot wait, since the reader that
    produces them must never block; they may go past the soft bound, but a peer that lets
    `max_bytes` pile up (asking and never reading the answers) is cut off: `on_overflow`
    is called with the reason and the connection closes. Each frame is charged its length
    plus `FRAME_OVERHEAD`, what holding it in a deque costs, so a flood of tiny replies is
    bounded by memory and not only by payload.
    """

    __slots__ = ("_blocked", "_writer", "bytes", "closed", "items", "limit", "max_bytes",
                 "on_overflow", "sending", "soft_bytes")

    def __init__(self, limit: int, max_bytes: int = 1 << 62,
                 on_overflow: Callable[[str], None] | None = None) -> None:
        self.items: deque[bytes] = deque()
        self.limit = limit
        self.max_bytes = max_bytes
        self.soft_bytes = max_bytes // 2  # senders wait from here on
        self.bytes = 0
        self.on_overflow = on_overflow
        self.closed = False
        self.sending = False  # the writer is inside send_all
        self._writer: trio.lowlevel.Task | None = None
        self._blocked = trio.lowlevel.ParkingLot()

    def force(self, frame: bytes) -> None:
        """Queue past the soft bound (replies, control frames); over `max_bytes`, give up
        on the peer instead."""
        if self.closed:
            return
        cost = len(frame) + FRAME_OVERHEAD
        if self.bytes + cost > self.max_bytes:
            reason = (f"peer does not read: {self.bytes} bytes queued towards it "
                      f"(limit {self.max_bytes})")
            if self.on_overflow is not None:
                self.on_overflow(reason)
            self.close()
            return
        self.bytes += cost
        self.items.append(frame)
        self._wake_writer()

    def offer(self, frame: bytes) -> bool:
        """Queue without waiting when under both bounds; False means `put` must wait.

        The common case of a tell costs no coroutine and no trip through the scheduler."""
        if len(self.items) >= self.limit or self.bytes >= self.soft_bytes or self.closed:
            return False
        self.bytes += len(frame) + FRAME_OVERHEAD
        self.items.append(frame)
        writer = self._writer  # `_wake_writer`, written out: this runs once per tell
        if writer is not None:
            self._writer = None
            trio.lowlevel.reschedule(writer)
        return True

    async def put(self, frame: bytes) -> None:
        while ((len(self.items) >= self.limit or self.bytes >= self.soft_bytes)
               and not self.closed):
            await self._blocked.park()
        if self.closed:
            raise ConnectionLost("connection closed")
        self.bytes += len(frame) + FRAME_OVERHEAD
        self.items.append(frame)
        self._wake_writer()

    def push_front(self, rest: bytes) -> None:
        """The unsent tail of a direct write: it must go out before anything queued."""
        self.bytes += len(rest) + FRAME_OVERHEAD
        self.items.appendleft(rest)
        self._wake_writer()

    def _wake_writer(self) -> None:
        writer = self._writer
        if writer is not None:
            self._writer = None
            trio.lowlevel.reschedule(writer)

    async def take(self) -> bytes:
        """Everything queued (up to MAX_BATCH_BYTES), joined into one write."""
        items = self.items
        if not items:
            self._writer = trio.lowlevel.current_task()

            def abort(_: Any) -> trio.lowlevel.Abort:
                self._writer = None
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
        batch = []
        size = 0
        while items and size < MAX_BATCH_BYTES:
            frame = items.popleft()
            batch.append(frame)
            size += len(frame)
        self.bytes = max(0, self.bytes - size - FRAME_OVERHEAD * len(batch))
        if self._blocked:
            self._blocked.unpark(count=max(1, self.limit - len(items)))
        return b"".join(batch)

    def close(self) -> None:
        self.closed = True
        self.items.clear()
        self.bytes = 0
        self._blocked.unpark_all()
