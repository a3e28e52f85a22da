"""Actors: `Actor`, `@handler`, `Down`, and the cell that runs one actor instance.

An actor is one trio task reading its mailbox and running one message at a time, so its
state needs no lock. A handler that cannot suspend may instead run in the sender's task
while the actor is idle (`Cell.run_inline`): one message at a time still holds, and it
saves waking two tasks per ask. The task also owns a nursery for the actors it spawns, so
stopping an actor stops its children first (in reverse start order), as OTP does, and no
actor outlives the scope that started it.

Exit reasons, as `Down.reason` reports them:
  normal        `ref.stop()` or `self.exit()`
  error         an uncaught exception in a handler or hook (detail: "Type: message")
  killed        `ref.kill()`: immediate, whatever the actor is doing
  shutdown      stopped by its parent or its system closing
  noproc        (monitors only) there was no such actor when the monitor was placed
  noconnection  (monitors only) the connection to the actor's process was lost
"""

from __future__ import annotations

import dis
import inspect
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from ._errors import ActorNotFound, Refusal, RemoteError
from ._mailbox import CHILD_EXIT, DOWN, LINK, RAISE, STOP, Mailbox, SystemMessage

if TYPE_CHECKING:
    from ._ref import ActorRef
    from ._system import ActorSystem

log = logging.getLogger("actors")

ON_STOP_TIMEOUT = 5.0
NORMAL_REASONS = frozenset({"normal", "shutdown"})


#: bytecode that can suspend a coroutine: `await`, `async for`, `async with`
_SUSPENDING_OPS = frozenset({"YIELD_VALUE", "SEND", "GET_AWAITABLE", "GET_AITER", "GET_ANEXT",
                             "BEFORE_ASYNC_WITH", "YIELD_FROM"})


def _never_suspends(fn: Any) -> bool:
    """True when `fn` cannot give control back to trio before it returns: a plain `def`, or
    an `async def` whose own bytecode has no await, `async for` or `async with`.

    Such a handler can run to completion wherever it is called, so when its actor is idle
    the runtime runs it in the asking task (or the connection's reader) instead of waking
    the actor's task: nothing can interleave with it, so one-message-at-a-time and the
    order per sender hold exactly as in the actor's own loop. Anything else (wrappers,
    callables without code) is not inlined."""
    code = getattr(fn, "__code__", None)
    if code is None or not inspect.isfunction(fn):
        return False
    return not any(ins.opname in _SUSPENDING_OPS for ins in dis.get_instructions(code))


def handler(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a method as a message this actor accepts; nothing else can be called remotely."""
    fn.__actor_handler__ = True  # type: ignore[attr-defined]
    return fn


@dataclass(frozen=True)
class Down:
    """An actor you monitor has ended (or could not be reached)."""

    ref: ActorRef
    reason: str
    detail: str = ""

    @property
    def abnormal(self) -> bool:
        """True unless the actor stopped on purpose (`normal` or `shutdown`)."""
        return self.reason not in NORMAL_REASONS


class _Exit(Exception):
    """Raised inside an actor's loop to end it with a given reason."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class Actor:
    """Base class of every actor. Subclass it and mark message methods with `@handler`.

    `on_start` runs before the first message (a failure there makes `spawn` raise);
    `on_stop` runs after the last, whatever the exit reason; `on_down` receives the `Down`
    of every actor this one monitors.
    """

    _handlers: dict[str, tuple[Callable[..., Any], bool]] = {}
    #: handlers that never suspend (see `_never_suspends`): candidates for `Cell.run_inline`
    _inline: frozenset[str] = frozenset()
    _cell: Cell

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table: dict[str, tuple[Callable[..., Any], bool]] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                if getattr(value, "__actor_handler__", False):
                    table[attr] = (value, inspect.iscoroutinefunction(value))
                elif attr in table:  # overridden without @handler: no longer a message
                    del table[attr]
        cls._handlers = table
        cls._inline = frozenset(name for name, (fn, _) in table.items() if _never_suspends(fn))

    # -- identity -----------------------------------------------------------------------
    @property
    def system(self) -> ActorSystem:
        return self._cell.system

    @property
    def name(self) -> str:
        return self._cell.name

    @property
    def ref(self) -> ActorRef:
        return self._cell.system.ref(self._cell.name)

    @property
    def exit_reason(self) -> str | None:
        """Why the actor is ending, once its loop has ended (useful in `on_stop`)."""
        return self._cell.exit_reason

    # -- hooks --------------------------------------------------------------------------
    async def on_start(self) -> None:
        """Runs in the actor's task before any message."""

    async def on_stop(self) -> None:
        """Runs after the last message, children already stopped; bounded by a timeout."""

    async def on_down(self, down: Down) -> None:
        """A monitored actor ended. The default ignores it."""

    async def _child_exited(self, cell: Cell, reason: str, detail: str) -> None:
        """A child spawned with `self.spawn` ended; plain actors just forget it
        (monitor it to react). Supervisors override this to restart it."""
        self._cell.children.pop(cell, None)

    # -- acting -------------------------------------------------------------------------
    async def spawn(self, cls: type[Actor], *args: Any, name: str | None = None,
                    **kwargs: Any) -> ActorRef:
        """Start a child actor in this actor's nursery: it stops when this actor stops."""
        return await self._cell.system._spawn(cls, args, kwargs, name, parent=self._cell)

    async def monitor(self, ref: ActorRef) -> int:
        """Watch `ref`; its `Down` arrives through `on_down`. Returns an id for `demonitor`."""
        cell = self._cell
        return await cell.system._monitor(
            ref, lambda down: cell.mailbox.put((DOWN, down, None, None)))

    async def demonitor(self, monitor_id: int) -> None:
        await self._cell.system._demonitor(monitor_id)

    async def link(self, ref: ActorRef) -> int:
        """Die with `ref`: an abnormal exit of `ref` ends this actor too (reason `error`)."""
        cell = self._cell
        return await cell.system._monitor(
            ref, lambda down: cell.mailbox.put((LINK, down, None, None)))

    def start_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn(*args)` as a background task of this actor (a timer, a watch loop).

        It shares the actor's state with the handlers, interleaving only at awaits. It is
        cancelled when the actor ends; if it raises, the actor crashes (reason `error`)
        and its supervisor decides what happens next.
        """
        cell = self._cell
        scope = trio.CancelScope()
        if cell.background is None:
            cell.background = set()
        cell.background.add(scope)

        async def runner() -> None:
            try:
                with scope:
                    await fn(*args)
            except Exception as e:
                log.error("actor %s: background task %s failed: %s", cell.name,
                          getattr(fn, "__name__", fn), _describe(e), exc_info=True)
                cell.crash(_describe(e))
            finally:
                if cell.background is not None:
                    cell.background.discard(scope)

        assert cell.nursery is not None
        cell.nursery.start_soon(runner)

    def exit(self, reason: str = "normal", detail: str = "") -> None:
        """End this actor after the current message, with `reason`."""
        raise _Exit(reason, detail)


class Cell:
    """The runtime side of one actor instance: mailbox, task, children, monitors."""

    __slots__ = ("_done", "actor", "background", "children", "exit_detail", "exit_reason",
                 "finished", "forced_detail", "forced_reason", "mailbox", "monitors", "name",
                 "nursery", "parent", "scope", "start_error", "system")

    def __init__(self, system: ActorSystem, actor: Actor, name: str, parent: Cell | None):
        self.system = system
        self.actor = actor
        self.name = name
        self.parent = parent
        self.mailbox = Mailbox()
        self.children: dict[Cell, None] = {}
        self.monitors: dict[Any, Callable[[Down], None]] = {}
        self.nursery: trio.Nursery | None = None
        self.scope: trio.CancelScope | None = None
        self.exit_reason: str | None = None
        self.exit_detail = ""
        self.forced_reason: str | None = None
        self.forced_detail = ""
        self.background: set[trio.CancelScope] | None = None
        self.start_error: BaseException | None = None
        self.finished = False
        self._done: trio.Event | None = None
        actor._cell = self

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        started = False
        reason, detail = "shutdown", ""
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                with trio.CancelScope() as scope:
                    self.scope = scope
                    try:
                        await self.actor.on_start()
                    except Exception as e:
                        self.start_error = e
                        reason, detail = "error", _describe(e)
                        log.error("actor %s failed to start: %s", self.name, detail,
                                  exc_info=True)
                    else:
                        started = True
                        task_status.started()
                        try:
                            await self._loop()
                        except _Exit as e:
                            reason, detail = e.reason, e.detail
                        except Exception as e:
                            reason, detail = "error", _describe(e)
                            log.error("actor %s crashed: %s", self.name, detail, exc_info=True)
                if scope.cancelled_caught:
                    reason = self.forced_reason or "shutdown"
                    detail = self.forced_detail
                if self.background:
                    for task_scope in list(self.background):
                        task_scope.cancel()
                self.exit_reason, self.exit_detail = reason, detail
                await self._stop_children()
                if started:
                    with trio.move_on_after(ON_STOP_TIMEOUT) as guard:
                        guard.shield = True
                        try:
                            await self.actor.on_stop()
                        except Exception:
                            log.exception("actor %s: on_stop raised", self.name)
        finally:
            self.exit_reason = self.exit_reason or reason
            self._finish()
            if not started:
                task_status.started()

    async def _loop(self) -> None:
        mailbox = self.mailbox
        queue = mailbox.queue
        actor = self.actor
        handlers = actor._handlers
        handled = 0
        while True:
            if not queue:
                await mailbox.wait()
            method, args, kwargs, reply = queue.popleft()
            if type(method) is SystemMessage:
                await self._system_message(method, args, kwargs, reply)
                continue
            entry = handlers.get(method)
            if entry is None:  # checked at the sender too; kept for races with hot upgrades
                if reply is not None:
                    reply.set(error=_unknown(actor, method))
                continue
            fn, is_async = entry
            try:
                result = fn(actor, *args, **kwargs)
                if is_async:
                    result = await result
            except TypeError as e:
                if e.__traceback__ is not None and e.__traceback__.tb_next is None:
                    # Raised by the call itself, not inside the handler: the arguments do
                    # not bind. Refuse this request; the actor is not at fault.
                    if reply is not None:
                        reply.set(error=_bad_args(method, e))
                    continue
                _fail(reply, e)
                raise
            except _Exit:
                if reply is not None:
                    reply.set(None)
                raise
            except Refusal as e:  # the request is refused; the actor is fine
                _fail(reply, e)
                continue
            except Exception as e:
                _fail(reply, e)
                raise
            except BaseException:  # killed or shut down mid-handler
                if reply is not None:
                    reply.set(error=ActorNotFound(
                        f"actor {self.name!r} ended while handling {method!r}"))
                raise
            if reply is not None:
                reply.set(result)
            handled += 1
            if handled & 63 == 0 and queue:  # let others run when the mailbox never drains
                await trio.lowlevel.checkpoint()

    def idle_for(self, method: str) -> bool:
        """True when `method` may run inline now: the actor's task is parked on an empty
        mailbox (so no handler of it is running or queued) and the handler never suspends."""
        mailbox = self.mailbox
        return (mailbox._waiter is not None and not mailbox.queue
                and method in self.actor._inline)

    def run_inline(self, method: str, args: Any, kwargs: Any, reply: Any) -> None:
        """Run one message in the calling task; only when `idle_for(method)` said so.

        The outcomes are those of `_loop`: the reply gets the result or the error, and an
        exit or a crash is handed to the actor's own task (a RAISE message at the front of
        its mailbox), which ends the actor there, so supervision sees the same reason."""
        actor = self.actor
        fn, is_async = actor._handlers[method]
        try:
            result = fn(actor, *args, **kwargs)
            if is_async:
                try:
                    result.send(None)
                except StopIteration as done:
                    result = done.value
                else:  # excluded by _never_suspends; fail loudly rather than lose a message
                    result.close()
                    raise RuntimeError(f"handler {method!r} suspended when run inline")
        except TypeError as e:
            if e.__traceback__ is not None and e.__traceback__.tb_next is None:
                if reply is not None:  # the arguments do not bind: refused, actor is fine
                    reply.set(error=_bad_args(method, e))
                return
            _fail(reply, e)
            self.mailbox.put_front((RAISE, e, None, None))
            return
        except _Exit as e:
            if reply is not None:
                reply.set(None)
            self.mailbox.put_front((RAISE, e, None, None))
            return
        except Refusal as e:
            _fail(reply, e)
            return
        except Exception as e:
            _fail(reply, e)
            self.mailbox.put_front((RAISE, e, None, None))
            return
        if reply is not None:
            reply.set(result)

    async def _system_message(self, method: str, args: Any, kwargs: Any, reply: Any) -> None:
        if method is RAISE:  # a message run inline ended the actor: end it here
            raise args
        if method is STOP:
            if reply is not None:
                # The stopper waits for the actor's end, not for this message.
                self.on_done(lambda: reply.set(None))
            raise _Exit("normal")
        if method is DOWN:
            await self.actor.on_down(args)
        elif method is LINK:
            down: Down = args
            await self.actor.on_down(down)
            if down.abnormal:
                raise _Exit("error", f"linked actor {down.ref.name} exited: {down.reason}"
                            + (f" ({down.detail})" if down.detail else ""))
        elif method is CHILD_EXIT:
            await self.actor._child_exited(args, kwargs[0], kwargs[1])

    async def _stop_children(self) -> None:
        for child in reversed(list(self.children)):
            await child.shutdown("shutdown")

    async def shutdown(self, reason: str) -> None:
        """End this actor now (cancelling what it is doing) and wait until it has ended."""
        if self.finished:
            return
        if self.forced_reason is None:
            self.forced_reason = reason
        if self.scope is not None:
            self.scope.cancel()
        await self.wait_done()

    def crash(self, detail: str) -> None:
        """End abnormally from outside the loop (a failed background task)."""
        if not self.finished and self.scope is not None and self.forced_reason is None:
            self.forced_reason = "error"
            self.forced_detail = detail
            self.scope.cancel()

    def kill(self) -> None:
        """Abnormal, immediate end: the supervisor sees reason `killed`."""
        if not self.finished and self.scope is not None:
            self.forced_reason = "killed"
            self.scope.cancel()

    async def wait_done(self) -> None:
        if self.finished:
            return
        if self._done is None:
            self._done = trio.Event()
        with trio.CancelScope(shield=True):
            await self._done.wait()

    def on_done(self, callback: Callable[[], None]) -> None:
        key = object()
        self.monitors[key] = lambda _down: callback()

    def _finish(self) -> None:
        self.finished = True
        reason = self.exit_reason or "shutdown"
        self.system._unregister(self)
        gone = ActorNotFound(f"actor {self.name!r} stopped ({reason}) before handling the message")
        queue = self.mailbox.queue
        while queue:
            item = queue.popleft()
            if item[3] is not None and item[0] is not STOP:
                item[3].set(error=gone)
            elif item[0] is STOP:
                item[3].set(None)
        if self.monitors:
            down = Down(self.system.ref(self.name), reason, self.exit_detail)
            monitors, self.monitors = self.monitors, {}
            for deliver in monitors.values():
                try:
                    deliver(down)
                except Exception:
                    log.exception("delivering Down of %s failed", self.name)
        parent = self.parent
        if parent is not None and self in parent.children:
            if self.start_error is None and not parent.finished:
                # The parent learns in its own task, in order with its other messages.
                parent.mailbox.put((CHILD_EXIT, self, (reason, self.exit_detail), None))
            else:  # a failed start is reported to the spawner by spawn() raising
                del parent.children[self]
        if self._done is not None:
            self._done.set()


def _describe(e: BaseException) -> str:
    text = str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _fail(reply: Any, e: BaseException) -> None:
    if reply is not None:
        name = e.type_name if isinstance(e, Refusal) else type(e).__name__
        reply.set(error=RemoteError(name, str(e), traceback.format_exc()))


def _unknown(actor: Actor, method: str) -> Exception:
    from ._errors import UnknownHandler

    return UnknownHandler(f"{type(actor).__name__} has no handler {method!r}")


def _bad_args(method: str, e: TypeError) -> Exception:
    from ._errors import BadArguments

    return BadArguments(f"{method}: {e}")
