"""The `Store` interface that the conductor and the nodes use, whatever the backend.

Two backends implement it: `ZooKeeperStore` (kazoo, for a cluster) and `EmbeddedStore`
(one SQLite file, for `helios solo`). Both give the same guarantees, which the contract
tests in `tests/helios/coordination/` check on both:

- paths are relative to the store's root and start with "/" (build them with `paths`);
- every path has a version, bumped by each `set`; `set`/`delete` with `version >= 0` is a
  compare-and-set that raises `VersionConflict` when someone else wrote in between;
- `transaction` applies all its ops or none, and names the op that failed;
- ephemeral entries belong to the store's session and vanish when it ends;
- watches are async iterators that yield the current state first, then once per change
  they observe (level-triggered: a burst of changes may arrive as one, never lost as a
  final state), and survive reconnects.

All methods are async and never block the trio loop.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import trio

import helios.coordination.paths as paths
from helios.coordination.errors import CorruptValue, Unavailable

log = logging.getLogger(__name__)


class ConnectionState(enum.Enum):
    """What a store reports about its session; see `Store.connection_events`."""

    CONNECTED = "connected"   # session alive, calls work
    SUSPENDED = "suspended"   # connection lost, session may still live: calls may fail
    LOST = "lost"             # session expired: ephemerals and watches are gone
    CLOSED = "closed"         # closed by its owner


@dataclass(frozen=True, slots=True)
class Entry:
    """A value with its version. `corrupt` is set (and `value` None) when the stored bytes
    do not decode: watches report it instead of crashing."""

    value: Any
    version: int
    corrupt: CorruptValue | None = None


# -- transaction ops ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Create:
    """Create `path` (its parent must exist, or be created earlier in the transaction)."""

    path: str
    value: Any = None
    ephemeral: bool = False
    sequential: bool = False


@dataclass(frozen=True, slots=True)
class Set:
    """Set `path`'s value; with `version >= 0` only if its version is that one."""

    path: str
    value: Any
    version: int = -1


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete `path` (no children); with `version >= 0` only at that version."""

    path: str
    version: int = -1


@dataclass(frozen=True, slots=True)
class Check:
    """Require that `path` exists, and with `version >= 0` that it has that version."""

    path: str
    version: int = -1


Op = Create | Set | Delete | Check


class WakeFlag:
    """A resettable wake-up for one watch loop; `set_threadsafe` is called by backends
    from their own threads (kazoo watch callbacks) through the loop's trio token."""

    def __init__(self) -> None:
        self._event = trio.Event()
        self._token = trio.lowlevel.current_trio_token()

    def clear(self) -> None:
        if self._event.is_set():
            self._event = trio.Event()

    def set(self, *_: Any) -> None:
        self._event.set()

    def set_threadsafe(self, *_: Any) -> None:
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(self._event.set)

    async def wait(self) -> None:
        await self._event.wait()


class Store(ABC):
    """Keyed, versioned, watched coordination state under one root."""

    #: absolute root in the backend (e.g. "/helios")
    root: str

    # -- data -----------------------------------------------------------------------

    @abstractmethod
    async def get(self, path: str) -> Entry | None:
        """The value and version at `path`, or None if it does not exist.

        Raises `CorruptValue` naming the path when the bytes are not Helios JSON."""

    @abstractmethod
    async def children(self, path: str) -> list[str]:
        """Sorted names of `path`'s children; [] when `path` does not exist."""

    @abstractmethod
    async def create(self, path: str, value: Any = None, *, ephemeral: bool = False,
                     sequential: bool = False, makepath: bool = True) -> str:
        """Create `path` and return the path created (with its sequence suffix).

        Missing parents are created (empty, persistent) unless `makepath` is False.
        Raises `NodeExists`, or `NoNode` for a missing parent without `makepath`."""

    @abstractmethod
    async def set(self, path: str, value: Any, version: int = -1) -> int:
        """Replace the value; return the new version. `version >= 0` makes it a
        compare-and-set raising `VersionConflict`. Raises `NoNode` if missing."""

    @abstractmethod
    async def delete(self, path: str, version: int = -1, recursive: bool = False) -> None:
        """Delete `path` (and its subtree if `recursive`). Missing path: no error.
        `version >= 0` is a compare-and-set (`VersionConflict`); children without
        `recursive` raise `NotEmpty`."""

    @abstractmethod
    async def transaction(self, ops: Sequence[Op]) -> list[Any]:
        """Apply all `ops` or none. Returns one result per op (created path for
        Create, new version for Set, None otherwise). Raises `TransactionFailed`
        naming the failing op."""

    async def exists(self, path: str) -> bool:
        """Whether `path` exists (a corrupt value still exists)."""
        try:
            return await self.get(path) is not None
        except CorruptValue:
            return True

    async def put(self, path: str, value: Any) -> int:
        """Create or overwrite `path` regardless of version (upsert); returns the version."""
        from helios.coordination.errors import NodeExists, NoNode

        for _ in range(10):
            try:
                return await self.set(path, value)
            except NoNode:
                pass
            try:
                await self.create(path, value)
                return 0
            except NodeExists:
                pass
        raise RuntimeError(f"put({path}) raced with create/delete 10 times")

    # -- watches --------------------------------------------------------------------

    @abstractmethod
    async def _arm_data(self, path: str, flag: WakeFlag) -> Entry | None:
        """Read `path` and arm a one-shot watch that sets `flag` when it changes or is
        created/deleted. Corrupt bytes come back as `Entry(corrupt=...)`."""

    @abstractmethod
    async def _arm_children(self, path: str, flag: WakeFlag) -> list[str]:
        """Read `path`'s children and arm a one-shot watch that sets `flag` on change
        (including `path` itself appearing or vanishing)."""

    @abstractmethod
    def _track_flag(self, flag: WakeFlag) -> Callable[[], None]:
        """Register `flag` to be set on reconnect / new session (watches may be gone);
        return a function that unregisters it."""

    async def watch_data(self, path: str) -> AsyncGenerator[Entry | None, None]:
        """Yield the entry at `path` (None when absent) now, then after each change.

        Use as `async for entry in store.watch_data(p):`. Consecutive yields differ
        (version or existence), except that the current state is yielded again after each
        reconnect, so a level-triggered consumer re-checks what it could not do while
        disconnected. Survives reconnects and session loss; raises `StoreClosed` when the
        store closes."""
        flag = WakeFlag()
        untrack = self._track_flag(flag)
        last: Any = _UNSET
        connects = self._states.connects
        try:
            while True:
                flag.clear()
                try:
                    entry = await self._arm_data(path, flag)
                except Unavailable as e:
                    log.info("watch on %s waits for the store: %s", path, e)
                    await _wait_or_timeout(flag, _RETRY_INTERVAL)
                    self._check_open()
                    continue
                key = None if entry is None else entry.version
                if last is _UNSET or key != last or connects != self._states.connects:
                    last = key
                    connects = self._states.connects
                    yield entry
                await flag.wait()
                self._check_open()
        finally:
            untrack()

    async def watch_children(self, path: str) -> AsyncGenerator[list[str], None]:
        """Yield the sorted child names of `path` now ([] when absent), then after each
        change, and again after each reconnect (as `watch_data`)."""
        flag = WakeFlag()
        untrack = self._track_flag(flag)
        last: list[str] | None = None
        connects = self._states.connects
        try:
            while True:
                flag.clear()
                try:
                    names = await self._arm_children(path, flag)
                except Unavailable as e:
                    log.info("watch on %s/* waits for the store: %s", path, e)
                    await _wait_or_timeout(flag, _RETRY_INTERVAL)
                    self._check_open()
                    continue
                if names != last or connects != self._states.connects:
                    last = names
                    connects = self._states.connects
                    yield names
                await flag.wait()
                self._check_open()
        finally:
            untrack()

    # -- session --------------------------------------------------------------------

    _states: StateBroadcast

    @property
    @abstractmethod
    def state(self) -> ConnectionState:
        """The current connection state."""

    @abstractmethod
    def connection_events(self) -> AsyncGenerator[ConnectionState, None]:
        """Yield the current state, then every change (CONNECTED, SUSPENDED, LOST,
        CONNECTED again after a new session, CLOSED last)."""

    @property
    @abstractmethod
    def session_id(self) -> int:
        """Identifies the current session; changes after LOST."""

    @abstractmethod
    def _check_open(self) -> None:
        """Raise `StoreClosed` if the store was closed."""

    @abstractmethod
    async def aclose(self) -> None:
        """End the session (its ephemerals vanish) and release resources."""

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- helpers on top ---------------------------------------------------------------

    def leadership(self, candidate: str, **kwargs: Any) -> Any:
        """`async with store.leadership(name) as term:` — see `election.leadership`."""
        from helios.coordination.election import leadership

        return leadership(self, candidate, **kwargs)

    async def ensure(self, path: str) -> None:
        """Create `path` (and parents) empty if missing."""
        from helios.coordination.errors import NodeExists

        if await self.exists(path):
            return
        with contextlib.suppress(NodeExists):
            await self.create(path)


#: how long a watch waits before retrying after the store was unreachable
_RETRY_INTERVAL = 1.0


async def _wait_or_timeout(flag: WakeFlag, seconds: float) -> None:
    with trio.move_on_after(seconds):
        await flag.wait()


class _Unset:
    pass


_UNSET = _Unset()


class StateBroadcast:
    """Fan-out of connection states to any number of async-iterator subscribers.

    Lives in the trio thread; backends feed it through `trio_token.run_sync_soon`."""

    def __init__(self, initial: ConnectionState) -> None:
        self.state = initial
        #: how many times the state became CONNECTED (watches re-yield after each)
        self.connects = 0
        self._subscribers: set[trio.MemorySendChannel[ConnectionState]] = set()

    def publish(self, state: ConnectionState) -> None:
        if state == self.state and state != ConnectionState.LOST:
            return
        self.state = state
        if state == ConnectionState.CONNECTED:
            self.connects += 1
        for send in list(self._subscribers):
            try:
                send.send_nowait(state)
            except trio.WouldBlock:
                log.warning("connection-event subscriber is not reading; dropped %s", state)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.discard(send)

    async def subscribe(self) -> AsyncGenerator[ConnectionState, None]:
        send, recv = trio.open_memory_channel[ConnectionState](256)
        self._subscribers.add(send)
        try:
            yield self.state
            if self.state == ConnectionState.CLOSED:
                return
            async with recv:
                async for state in recv:
                    yield state
                    if state == ConnectionState.CLOSED:
                        return
        finally:
            self._subscribers.discard(send)


async def wait_connected(store: Store) -> None:
    """Return once `store` is CONNECTED (at once if it is); `StoreClosed` if it closes."""
    if store.state == ConnectionState.CONNECTED:
        return
    events = store.connection_events()
    try:
        async for state in events:
            if state == ConnectionState.CONNECTED:
                return
    finally:
        await events.aclose()
    store._check_open()
    from helios.coordination.errors import StoreClosed

    raise StoreClosed("store closed")


_CANONICAL = re.compile(r"^(/[A-Za-z0-9_\-][A-Za-z0-9_.\-]*)+$")


def full_path(root: str, path: str) -> str:
    """Absolute backend path of relative `path` under `root`."""
    rel = path if _CANONICAL.fullmatch(path) else paths.normalize(path)
    if rel == "/":
        return root or "/"
    return (root.rstrip("/") + rel) if root not in ("", "/") else rel


def relative_path(root: str, absolute: str) -> str:
    """Inverse of `full_path`."""
    if root in ("", "/"):
        return absolute
    return absolute[len(root.rstrip("/")):] or "/"
