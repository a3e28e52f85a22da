"""Ask timeouts without a cancel scope per ask.

A trio cancel scope with a deadline costs about 16 us to enter and leave on this machine
kind, more than the whole local round trip it would guard. Instead, every waiting `Slot` is
filed in a 10 ms bucket of its deadline, and one timer task per system fails the slots of
each bucket that comes due with `AskTimeout`. Adding and removing a slot is a set operation,
and memory is bounded by the asks outstanding.
"""

from __future__ import annotations

import heapq
import math

import trio

from ._errors import AskTimeout
from ._mailbox import Slot

RESOLUTION = 0.01


class Timer:
    def __init__(self) -> None:
        self._buckets: dict[int, set[Slot]] = {}
        self._heap: list[int] = []
        self._scope: trio.CancelScope | None = None

    def add(self, slot: Slot, timeout: float) -> None:
        key = math.ceil((trio.current_time() + timeout) / RESOLUTION)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = set()
            heapq.heappush(self._heap, key)
            scope = self._scope
            if scope is not None and key * RESOLUTION < scope.deadline:
                scope.deadline = key * RESOLUTION
        bucket.add(slot)
        slot.timer_key = key

    def discard(self, slot: Slot) -> None:
        bucket = self._buckets.get(slot.timer_key)
        if bucket is not None:
            bucket.discard(slot)

    async def run(self) -> None:
        heap = self._heap
        while True:
            with trio.CancelScope() as scope:
                scope.deadline = heap[0] * RESOLUTION if heap else math.inf
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None
            now = trio.current_time()
            while heap and heap[0] * RESOLUTION <= now:
                for slot in self._buckets.pop(heapq.heappop(heap), ()):
                    slot.set(error=AskTimeout(slot.describe()))
