"""The ZooKeeper backend of `Store`, on kazoo, bridged into trio.

kazoo is thread-based. This module never makes a blocking kazoo call on the trio thread:

- data operations use kazoo's `*_async` calls, which only queue a request for kazoo's
  connection thread; the result's callback re-enters trio through the trio token
  (`run_sync_soon`), so no trio worker thread is spent per call and many calls can be
  outstanding at once (pipelining);
- connecting and closing, which block, run in `trio.to_thread`;
- watch callbacks and connection-state listeners run on kazoo threads and only schedule
  work into trio through the token.

Every call is bounded by `op_timeout` (default: the session timeout): past it, or on a
connection loss, it raises `Unavailable` rather than waiting for a quorum forever.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any

import trio
from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import (
    BadVersionError,
    ConnectionClosedError,
    ConnectionLoss,
    KazooException,
    NoAuthError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    OperationTimeoutError,
    RolledBackError,
    SessionExpiredError,
    ZookeeperError,
)
from kazoo.handlers.threading import AsyncResult, SequentialThreadingHandler
from kazoo.protocol.states import ZnodeStat

import helios.coordination.codec as codec
import helios.coordination.paths as paths
from helios.coordination.acl import Credential, acl_for
from helios.coordination.errors import (
    CoordinationError,
    CorruptValue,
    NodeExists,
    NoNode,
    NotAuthorized,
    NotEmpty,
    StoreClosed,
    TransactionFailed,
    Unavailable,
    ValueTooLarge,
    VersionConflict,
)
from helios.coordination.store import (
    Check,
    ConnectionState,
    Create,
    Delete,
    Entry,
    Op,
    Set,
    StateBroadcast,
    Store,
    WakeFlag,
    full_path,
    relative_path,
)

log = logging.getLogger(__name__)

DEFAULT_ROOT = "/helios"


class _InlineWakeResult(AsyncResult):
    """An AsyncResult that runs callbacks marked `inline` on the thread that sets the
    result (kazoo's connection thread), after releasing the result's lock, instead of
    queueing them for kazoo's completion thread. Our only inline callback is
    `TrioToken.run_sync_soon`, which never blocks. This saves a thread hop per call, and
    the trio task that wakes up never contends for a lock still held by the setter."""

    _exception: BaseException | None  # kazoo's attribute (kazoo ships no types)

    def set(self, value: Any = None) -> None:
        with self._condition:
            self.value = value
            self._exception = None
            inline = self._queue_callbacks()
            self._condition.notify_all()
        for callback in inline:
            callback(self)

    def set_exception(self, exception: BaseException) -> None:
        with self._condition:
            self._exception = exception
            inline = self._queue_callbacks()
            self._condition.notify_all()
        for callback in inline:
            callback(self)

    def _queue_callbacks(self) -> list[Callable[[Any], None]]:
        inline = []
        for callback in self._callbacks:
            if getattr(callback, "inline", False) or not self._handler.running:
                inline.append(callback)
            else:
                self._handler.completion_queue.put(functools.partial(callback, self))
        return inline

    def _do_callbacks(self) -> None:  # rawlink() on a result that is already set
        for callback in self._queue_callbacks():
            callback(self)

    def outcome(self) -> Any:
        """The value, or raise the exception, of a result known to be set (no lock:
        both fields are final once set)."""
        if self._exception is None:
            return self.value
        raise self._exception


class _Handler(SequentialThreadingHandler):
    """kazoo's default threading handler, with `_InlineWakeResult` results."""

    def async_result(self) -> AsyncResult:
        return _InlineWakeResult(self)


class _PendingCall:
    """One kazoo call a trio task is parked on."""

    __slots__ = ("task", "waiting")

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.waiting = True


class ZooKeeperStore(Store):
    """A `Store` on a ZooKeeper ensemble. Open with `await open_zookeeper(...)`."""

    def __init__(self, hosts: str, root: str = DEFAULT_ROOT, *, session_timeout: float = 10.0,
                 op_timeout: float | None = None, credential: Credential | None = None,
                 client_id: tuple[int, bytes] | None = None) -> None:
        self.hosts = hosts
        self.root = paths.normalize(root)
        self.session_timeout = session_timeout
        self.op_timeout = op_timeout if op_timeout is not None else max(session_timeout, 2.0)
        self.credential = credential
        auth = list(credential.auth) if credential else None
        self.client = KazooClient(
            hosts=hosts, timeout=session_timeout, client_id=client_id, auth_data=auth,
            connection_retry={"max_tries": -1, "delay": 0.05, "backoff": 2, "max_delay": 1.0},
            command_retry={"max_tries": 0}, handler=_Handler(),
        )
        self._token: trio.lowlevel.TrioToken | None = None
        self._states = StateBroadcast(ConnectionState.SUSPENDED)
        self._flags: set[WakeFlag] = set()
        self._closed = False
        self._session_id = 0

    # -- lifecycle ----------------------------------------------------------------

    async def _start(self, connect_timeout: float) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self.client.add_listener(self._listener)
        try:
            await trio.to_thread.run_sync(self.client.start, connect_timeout)
        except Exception as e:
            self._closed = True
            await trio.to_thread.run_sync(self._stop_client)
            raise Unavailable(f"cannot connect to ZooKeeper at {self.hosts} "
                              f"within {connect_timeout}s: {e!r}") from None
        self._session_id = self.client.client_id[0] if self.client.client_id else 0
        self._states.publish(ConnectionState.CONNECTED)

    def _stop_client(self) -> None:
        try:
            self.client.stop()
        finally:
            self.client.close()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._stop_client)
        self._states.publish(ConnectionState.CLOSED)
        for flag in list(self._flags):
            flag.set()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("store closed")

    # -- connection state ---------------------------------------------------------

    def _listener(self, state: str) -> None:
        """kazoo connection thread: hand the change to trio, never block here."""
        token = self._token
        if token is None:
            return
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(self._on_state, state)

    def _on_state(self, state: str) -> None:
        if self._closed:
            return
        if state == KazooState.CONNECTED:
            cid = self.client.client_id
            new_id = cid[0] if cid else 0
            if self._session_id and new_id != self._session_id \
                    and self._states.state != ConnectionState.LOST:
                # a new session without kazoo reporting LOST first: report it anyway
                self._states.publish(ConnectionState.LOST)
            self._session_id = new_id
            self._states.publish(ConnectionState.CONNECTED)
        elif state == KazooState.SUSPENDED:
            self._states.publish(ConnectionState.SUSPENDED)
        elif state == KazooState.LOST:
            self._states.publish(ConnectionState.LOST)
        for flag in list(self._flags):
            flag.set()

    @property
    def state(self) -> ConnectionState:
        return self._states.state

    def connection_events(self) -> AsyncGenerator[ConnectionState, None]:
        return self._states.subscribe()

    @property
    def session_id(self) -> int:
        return self._session_id

    def _track_flag(self, flag: WakeFlag) -> Callable[[], None]:
        self._flags.add(flag)
        return lambda: self._flags.discard(flag)

    # -- the call bridge ----------------------------------------------------------

    async def _call(self, what: str, path: str, start: Callable[[], Any]) -> Any:
        """Start a kazoo async call and park this trio task until its result arrives.

        The result callback runs on kazoo's connection thread and only schedules the
        task's wake-up through the trio token. This is the hot path of the layer, so it
        uses trio's low-level park/reschedule instead of an Event. The call's deadline
        (`op_timeout`) is a cancel scope around the park: kazoo queues requests made while
        it is disconnected and would otherwise hold them until it reconnects. (No task
        of the store's own watches deadlines: nothing outlives the caller's nursery.)"""
        self._check_open()
        token = self._token
        assert token is not None
        call = _PendingCall(trio.lowlevel.current_task())

        def resume() -> None:
            if call.waiting:
                call.waiting = False
                trio.lowlevel.reschedule(call.task)

        def wake(_: Any) -> None:
            try:
                token.run_sync_soon(resume)
            except trio.RunFinishedError:
                pass

        # a mark `_InlineWakeResult` reads on its callbacks (a function attribute mypy
        # cannot know of)
        wake.inline = True  # type: ignore[attr-defined]
        try:
            result = start()
        except KazooException as e:
            raise self._map(e, what, path) from None
        result.rawlink(wake)

        def abort(_: Any) -> trio.lowlevel.Abort:
            call.waiting = False
            return trio.lowlevel.Abort.SUCCEEDED

        with trio.move_on_after(self.op_timeout) as deadline:
            await trio.lowlevel.wait_task_rescheduled(abort)
        if deadline.cancelled_caught:
            result.unlink(wake)
            raise Unavailable(f"ZooKeeper did not answer {what} {path} within "
                              f"{self.op_timeout}s (outcome unknown)")
        try:
            if isinstance(result, _InlineWakeResult):
                return result.outcome()
            return result.get(block=False)
        except KazooException as e:
            raise self._map(e, what, path) from None

    def _map(self, e: Exception, what: str, path: str, version: int = -1) -> Exception:
        if isinstance(e, NoNodeError):
            return NoNode(path)
        if isinstance(e, NodeExistsError):
            return NodeExists(path)
        if isinstance(e, BadVersionError):
            return VersionConflict(path, version)
        if isinstance(e, NotEmptyError):
            return NotEmpty(path)
        if isinstance(e, NoAuthError):
            return NotAuthorized(path, what)
        if isinstance(e, ConnectionClosedError) and self._closed:
            return StoreClosed("store closed")
        if isinstance(e, (ConnectionLoss, SessionExpiredError, ConnectionClosedError,
                          OperationTimeoutError)):
            return Unavailable(f"ZooKeeper unavailable during {what} {path}: "
                               f"{type(e).__name__} (outcome unknown)")
        if isinstance(e, ZookeeperError):
            return CoordinationError(f"ZooKeeper refused {what} {path}: {e!r}")
        return CoordinationError(f"{what} {path} failed: {e!r}")

    def _abs(self, path: str) -> str:
        return full_path(self.root, path)

    def _acl(self, path: str) -> Any:
        return acl_for(self.credential, path) if self.credential else None

    # -- data -----------------------------------------------------------------------

    async def get(self, path: str) -> Entry | None:
        try:
            data, stat = await self._call("get", path,
                                          lambda: self.client.get_async(self._abs(path)))
        except NoNode:
            return None
        return Entry(codec.decode(path, data), stat.version)

    async def children(self, path: str) -> list[str]:
        try:
            names = await self._call("children", path,
                                     lambda: self.client.get_children_async(self._abs(path)))
        except NoNode:
            return []
        return sorted(names)

    async def create(self, path: str, value: Any = None, *, ephemeral: bool = False,
                     sequential: bool = False, makepath: bool = True) -> str:
        path = paths.normalize(path)
        data = codec.encode(path, value)
        for _ in range(5):
            try:
                created = await self._call("create", path, lambda: self.client.create_async(
                    self._abs(path), data, acl=self._acl(path), ephemeral=ephemeral,
                    sequence=sequential))
                return relative_path(self.root, created)
            except NoNode:
                if not makepath:
                    raise
            await self._make_parents(path)
        raise NoNode(paths.parent(path))

    async def _make_parents(self, path: str) -> None:
        """Create the missing ancestors of `path` (up to and including the root), each
        with its own ACL. Existing ones are found with `exists`, which needs no
        permission, so a node never tries to create a directory it may not touch."""
        root_parts = [x for x in self.root.split("/") if x]
        chain: list[tuple[str, str | None]] = []   # (absolute, relative or None)
        p = paths.parent(path)
        while p != "/":
            chain.append((self._abs(p), p))
            p = paths.parent(p)
        chain += [("/" + "/".join(root_parts[:i]), None)
                  for i in range(len(root_parts), 0, -1)]
        missing: list[tuple[str, str | None]] = []
        for full, rel in chain:                     # deepest first, stop at the first found

            def check(full: str = full) -> Any:
                return self.client.exists_async(full)

            if await self._call("exists", rel or full, check) is not None:
                break
            missing.append((full, rel))
        for full, rel in reversed(missing):
            acl = self._acl(rel if rel is not None else "/")

            def start(full: str = full, acl: Any = acl) -> Any:
                return self.client.create_async(full, b"", acl=acl)

            with contextlib.suppress(NodeExists):
                await self._call("create", rel or full, start)

    async def set(self, path: str, value: Any, version: int = -1) -> int:
        data = codec.encode(path, value)
        try:
            stat = await self._call("set", path, lambda: self.client.set_async(
                self._abs(path), data, version))
        except VersionConflict:
            raise VersionConflict(path, version) from None
        return stat.version

    async def delete(self, path: str, version: int = -1, recursive: bool = False) -> None:
        path = paths.normalize(path)
        if recursive:
            for name in await self.children(path):
                await self.delete(f"{path}/{name}", recursive=True)
        try:
            await self._call("delete", path, lambda: self.client.delete_async(
                self._abs(path), version))
        except NoNode:
            return
        except VersionConflict:
            raise VersionConflict(path, version) from None
        except NotEmpty:
            if not recursive:
                raise
            await self.delete(path, version, recursive=True)  # a child raced in

    async def transaction(self, ops: Sequence[Op]) -> list[Any]:
        tx = self.client.transaction()
        total = 0
        for op in ops:
            if isinstance(op, Create):
                data = codec.encode(op.path, op.value)
                total += len(data)
                tx.create(self._abs(op.path), data, acl=self._acl(op.path),
                          ephemeral=op.ephemeral, sequence=op.sequential)
            elif isinstance(op, Set):
                data = codec.encode(op.path, op.value)
                total += len(data)
                tx.set_data(self._abs(op.path), data, op.version)
            elif isinstance(op, Delete):
                tx.delete(self._abs(op.path), op.version)
            elif isinstance(op, Check):
                tx.check(self._abs(op.path), op.version)
            else:
                raise TypeError(f"not a transaction op: {op!r}")
        if total > codec.MAX_VALUE_BYTES:
            raise ValueTooLarge("transaction", total, codec.MAX_VALUE_BYTES)
        results = await self._call("transaction", f"({len(ops)} ops)", tx.commit_async)
        failed = [(i, r) for i, r in enumerate(results)
                  if isinstance(r, Exception) and not isinstance(r, RolledBackError)]
        if failed:
            i, err = failed[0]
            op = ops[i]
            cause = self._map(err, type(op).__name__.lower(), op.path,
                              getattr(op, "version", -1))
            if isinstance(cause, NoNode) and isinstance(op, Create):
                cause = NoNode(paths.parent(op.path))
            if not isinstance(cause, (NoNode, NodeExists, VersionConflict, NotEmpty)):
                raise cause
            raise TransactionFailed(i, op, cause)
        if any(isinstance(r, Exception) for r in results):
            raise CoordinationError(f"transaction rolled back without a cause: {results!r}")
        out: list[Any] = []
        for op, r in zip(ops, results, strict=True):
            if isinstance(op, Create):
                out.append(relative_path(self.root, r))
            elif isinstance(op, Set):
                out.append(r.version if isinstance(r, ZnodeStat) else None)
            else:
                out.append(None)
        return out

    # -- watches --------------------------------------------------------------------

    async def _arm_data(self, path: str, flag: WakeFlag) -> Entry | None:
        def watcher(_event: Any) -> None:
            flag.set_threadsafe()

        full = self._abs(path)
        for _ in range(10):
            try:
                data, stat = await self._call("get", path,
                                              lambda: self.client.get_async(full, watch=watcher))
            except NoNode:
                stat = await self._call("exists", path,
                                        lambda: self.client.exists_async(full, watch=watcher))
                if stat is None:
                    return None
                continue  # created in between: read it
            try:
                return Entry(codec.decode(path, data), stat.version)
            except CorruptValue as e:
                log.warning("%s", e)
                return Entry(None, stat.version, corrupt=e)
        raise Unavailable(f"{path} keeps appearing and vanishing; retry later")

    async def _arm_children(self, path: str, flag: WakeFlag) -> list[str]:
        def watcher(_event: Any) -> None:
            flag.set_threadsafe()

        full = self._abs(path)
        for _ in range(10):
            try:
                names = await self._call("children", path, lambda: self.client.get_children_async(
                    full, watch=watcher))
                return sorted(names)
            except NoNode:
                stat = await self._call("exists", path,
                                        lambda: self.client.exists_async(full, watch=watcher))
                if stat is None:
                    return []
        raise Unavailable(f"{path} keeps appearing and vanishing; retry later")


async def open_zookeeper(hosts: str, root: str = DEFAULT_ROOT, *, session_timeout: float = 10.0,
                         connect_timeout: float = 15.0, op_timeout: float | None = None,
                         credential: Credential | None = None) -> ZooKeeperStore:
    """Connect to ZooKeeper (`hosts` like "127.0.0.1:2181,127.0.0.1:2182") and return a
    store rooted at `root`. Raises `Unavailable` if no server answers in time.

    `credential` (see `acl.load_credential`) turns on digest ACLs for every znode created.
    Close with `await store.aclose()` or use `async with`."""
    store = ZooKeeperStore(hosts, root, session_timeout=session_timeout, op_timeout=op_timeout,
                           credential=credential)
    await store._start(connect_timeout)
    return store
