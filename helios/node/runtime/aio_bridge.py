"""The one place where trio calls into asyncio (for aiodocker).

Helios is trio; aiodocker is asyncio. Rather than mixing loops (trio-asyncio changes every
asyncio loop in the process), the Docker runtime owns one `AsyncioBridge`: a plain
`asyncio.SelectorEventLoop` running on a dedicated thread, built explicitly so that no
loop policy installed by anyone else can swap it. trio code calls

    result = await bridge.run(some_async_fn, arg1, arg2)

which schedules `some_async_fn(arg1, arg2)` as an asyncio task on that thread and sleeps
(trio side) until it finishes. Nothing in the trio thread blocks.

Cancellation is structured: when the trio caller is cancelled, the asyncio task is
cancelled too, and the caller waits (shielded, bounded by `CANCEL_GRACE`) for it to
really end, so an aiohttp response is closed before the caller moves on.

`iterate()` turns an asyncio async iterator (a followed log stream) into a trio async
generator, one item per bridge round trip, which gives natural backpressure.

Cost: two cross-thread wake-ups per call (self-pipe into asyncio, wakeup fd into trio);
bench/runtime_bench.py measures it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Self, TypeVar

import trio

T = TypeVar("T")

#: How long a cancelled caller waits for the asyncio side to finish cancelling.
CANCEL_GRACE = 5.0


class BridgeClosed(RuntimeError):
    """The bridge loop is not running (never opened, or already closed)."""


class AsyncioBridge:
    """An asyncio loop on its own thread, driven from trio. Use `async with`."""

    def __init__(self, name: str = "helios-asyncio") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The asyncio loop (for code that must build asyncio objects on it)."""
        if self._loop is None or self._loop.is_closed():
            raise BridgeClosed("the asyncio bridge is not running")
        return self._loop

    async def open(self) -> None:
        """Start the loop thread; returns once the loop runs."""
        if self._thread is not None:
            raise RuntimeError("bridge already opened")
        loop = asyncio.SelectorEventLoop()  # explicit: never a trio-asyncio loop
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            try:
                loop.run_forever()
            finally:
                try:
                    loop.run_until_complete(loop.shutdown_asyncgens())
                finally:
                    asyncio.set_event_loop(None)
                    loop.close()

        thread = threading.Thread(target=main, name=self._name, daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        await trio.to_thread.run_sync(ready.wait)

    async def aclose(self) -> None:
        """Cancel what still runs on the loop, stop it and join its thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def drain() -> None:
            tasks = [t for t in self._tasks if not t.done()]
            for t in tasks:
                t.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=CANCEL_GRACE)

        if not loop.is_closed() and loop.is_running():
            with trio.CancelScope(shield=True):
                fut = asyncio.run_coroutine_threadsafe(drain(), loop)
                with contextlib.suppress(concurrent.futures.TimeoutError):
                    await trio.to_thread.run_sync(fut.result, CANCEL_GRACE + 1)
                loop.call_soon_threadsafe(loop.stop)
                await trio.to_thread.run_sync(thread.join, CANCEL_GRACE)
        self._loop = None

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def run(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        """Run `await fn(*args)` on the asyncio loop; return its result or raise its error."""
        loop = self.loop
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        box: list[asyncio.Task[T]] = []

        def on_done(_task: asyncio.Future[T]) -> None:
            # Runs on the asyncio thread; hands the wake-up to trio.
            with contextlib.suppress(trio.RunFinishedError):  # trio run gone: nobody waits
                token.run_sync_soon(done.set)

        def start() -> None:
            task = loop.create_task(fn(*args))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(on_done)
            box.append(task)

        def cancel() -> None:
            if box:
                box[0].cancel()

        try:
            loop.call_soon_threadsafe(start)
        except RuntimeError as e:  # loop closed between the check and the call
            raise BridgeClosed("the asyncio bridge is not running") from e
        try:
            await done.wait()
        except trio.Cancelled:
            # FIFO: `cancel` runs after `start`, so the task exists by then.
            loop.call_soon_threadsafe(cancel)
            with trio.CancelScope(shield=True), trio.move_on_after(CANCEL_GRACE):
                await done.wait()
            raise
        task = box[0]
        if task.cancelled():
            # Cancelled from the asyncio side (bridge closing), not by our caller.
            raise BridgeClosed("the asyncio bridge was closed during the call")
        return task.result()

    async def iterate(self, make: Callable[[], AsyncIterator[T]]) -> AsyncIterator[T]:
        """Yield from an asyncio async iterator built by `make()` on the loop thread.

        The iterator is created, advanced and closed on the asyncio thread; closing this
        trio generator (or cancelling its consumer) closes the asyncio one.
        """
        async def build() -> AsyncIterator[T]:
            return make()

        it = await self.run(build)

        async def step() -> list[T]:
            """The next item, or nothing at the end."""
            try:
                return [await it.__anext__()]
            except StopAsyncIteration:
                return []

        async def close() -> None:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()

        try:
            while True:
                items = await self.run(step)
                if not items:
                    return
                yield items[0]
        finally:
            with (trio.CancelScope(shield=True), trio.move_on_after(CANCEL_GRACE),
                  contextlib.suppress(BridgeClosed)):
                await self.run(close)
