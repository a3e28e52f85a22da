"""A mailbox: an unbounded FIFO with one waiting reader, built on trio's low-level parking.

Unbounded like Erlang's: a reader task that delivers into a mailbox must never block, or an
actor waiting for a reply on the same connection would deadlock the connection. Backpressure
lives in the transport's bounded send queues instead. A deque and one parked task cost a
fraction of a memory channel pair, which matters at 100,000 idle actors.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import trio


class SystemMessage(str):
    """The method field of a mailbox entry that the runtime itself put there (stop, a
    monitor's Down, a link, a child's exit).

    A type of its own, not a naming rule: a message from the network carries a plain `str`,
    so no peer can reach these by choosing a method name such as "$stop"."""

    __slots__ = ()


STOP = SystemMessage("$stop")
DOWN = SystemMessage("$down")
LINK = SystemMessage("$link")
CHILD_EXIT = SystemMessage("$child_exit")
#: a handler run inline (outside the actor's task) exited or crashed: the actor's task
#: raises the carried exception, so the actor ends in its own task with the same reason
RAISE = SystemMessage("$raise")


class Mailbox:
    __slots__ = ("_waiter", "queue")

    def __init__(self) -> None:
        self.queue: deque[Any] = deque()
        self._waiter: trio.lowlevel.Task | None = None

    def put(self, item: Any) -> None:
        self.queue.append(item)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            trio.lowlevel.reschedule(waiter)

    def put_front(self, item: Any) -> None:
        """For system messages that must overtake the queue (an inline handler's crash)."""
        self.queue.appendleft(item)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            trio.lowlevel.reschedule(waiter)

    async def wait(self) -> None:
        """Return once the queue is non-empty (a checkpoint either way)."""
        if self.queue:
            await trio.lowlevel.checkpoint()
            return
        self._waiter = trio.lowlevel.current_task()

        def abort(_: Any) -> trio.lowlevel.Abort:
            self._waiter = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)


class Slot:
    """A one-shot result that one task waits for: the reply to an ask.

    Cheaper than a trio.Event plus a result attribute, and cancellation-safe: an ask that
    times out leaves the slot, and a late reply is simply dropped.
    """

    __slots__ = ("_task", "done", "error", "timer_key", "value", "what")

    def __init__(self, what: str | tuple[str, str, float | None] = "") -> None:
        self._task: trio.lowlevel.Task | None = None
        # For the AskTimeout message: (target, method, timeout) is formatted only when the
        # ask does time out, since an f-string per ask costs more than the rest of it.
        self.what = what
        self.timer_key = 0
        self.done = False
        self.value: Any = None
        self.error: BaseException | None = None

    def describe(self) -> str:
        """Why the ask timed out, in words."""
        if isinstance(self.what, tuple):
            target, method, timeout = self.what
            return f"{target} {method} did not answer within {timeout}s"
        return self.what

    def set(self, value: Any = None, error: BaseException | None = None) -> None:
        if self.done:
            return
        self.done = True
        self.value = value
        self.error = error
        task = self._task
        if task is not None:
            self._task = None
            trio.lowlevel.reschedule(task)

    async def wait(self) -> Any:
        if not self.done:
            self._task = trio.lowlevel.current_task()

            def abort(_: Any) -> trio.lowlevel.Abort:
                self._task = None
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
        else:
            await trio.lowlevel.checkpoint()
        if self.error is not None:
            raise self.error
        return self.value
