"""The embedded backend of `Store`: one SQLite file, for `helios solo` on one machine.

It keeps ZooKeeper's semantics so the same contract tests pass on both backends:

- each `EmbeddedStore` opened on a file is its own *session*; several may be open on the
  same file in one process (they share one connection and one set of watches) and behave
  like separate ZooKeeper clients: ephemerals belong to the session that created them and
  vanish when it closes;
- a session row records its process (pid and start time); at open, rows of processes that
  no longer run are removed with their ephemerals, so a crash leaves nothing behind;
- versions, sequential names (10 digits of the count of children ever created under
  the parent, as in ZooKeeper), compare-and-set,
  all-or-nothing transactions and one-shot watches re-armed by `Store.watch_*`.

SQLite calls run inline on the trio thread: in WAL mode with `synchronous=NORMAL` each is
tens of microseconds, cheaper than a thread hop. Watches are in-process only; the file is
meant for one process at a time (anything spanning processes or machines uses ZooKeeper).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import AsyncGenerator, Callable, Sequence
from pathlib import Path
from typing import Any

import trio

import helios.coordination.codec as codec
import helios.coordination.paths as paths
from helios.coordination.errors import (
    CoordinationError,
    CorruptValue,
    NodeExists,
    NoNode,
    NotEmpty,
    StoreClosed,
    TransactionFailed,
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

_SCHEMA = """
CREATE TABLE IF NOT EXISTS znodes (
    path    TEXT PRIMARY KEY,
    parent  TEXT NOT NULL,
    data    BLOB NOT NULL,
    version INTEGER NOT NULL,
    owner   INTEGER,            -- session id for ephemerals, NULL for persistent
    seq     INTEGER NOT NULL DEFAULT 0   -- children ever created (ZooKeeper's counter)
);
CREATE INDEX IF NOT EXISTS znodes_parent ON znodes(parent);
CREATE INDEX IF NOT EXISTS znodes_owner ON znodes(owner);
CREATE TABLE IF NOT EXISTS sessions (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    pid     INTEGER NOT NULL,
    started TEXT NOT NULL
);
"""


def _process_start(pid: int) -> str:
    """A token that changes when a PID is reused: the start time in /proc, if any."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _process_alive(pid: int, started: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not started or _process_start(pid) == started


class _Hub:
    """What all sessions on one file share in this process: the connection, the live
    sessions and the armed watches."""

    hubs: dict[str, _Hub] = {}
    hubs_lock = threading.Lock()

    def __init__(self, file: str) -> None:
        self.file = file
        if not os.path.exists(file):  # the store holds every job's env: owner only
            os.close(os.open(file, os.O_WRONLY | os.O_CREAT, 0o600))
        self.db = sqlite3.connect(file, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        # FULL: what the store acknowledged survives a power loss (with NORMAL a WAL
        # commit may be lost, and with it, say, a dispatch's idempotency key)
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(_SCHEMA)
        self.lock = threading.RLock()
        self.refs = 0
        self.data_watches: dict[str, set[WakeFlag]] = {}
        self.child_watches: dict[str, set[WakeFlag]] = {}
        self._clean_dead_sessions()

    @classmethod
    def acquire(cls, file: str) -> _Hub:
        key = os.path.realpath(file)
        with cls.hubs_lock:
            hub = cls.hubs.get(key)
            if hub is None:
                hub = cls.hubs[key] = _Hub(key)
            hub.refs += 1
            return hub

    def release(self) -> None:
        with self.hubs_lock:
            self.refs -= 1
            if self.refs == 0:
                del self.hubs[self.file]
                self.db.close()

    def _clean_dead_sessions(self) -> None:
        me = os.getpid()
        rows = self.db.execute("SELECT id, pid, started FROM sessions").fetchall()
        dead = [sid for sid, pid, started in rows
                if pid != me and not _process_alive(pid, started)]
        if dead:
            with self.write():
                for sid in dead:
                    self._drop_session(sid)
            log.info("removed %d session(s) of crashed processes from %s", len(dead), self.file)

    @contextlib.contextmanager
    def write(self) -> Any:
        """One atomic write: all of it or none, and notifications only after commit."""
        with self.lock:
            changed: list[tuple[str, str]] = []
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield changed
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        self._notify(changed)

    def _notify(self, changed: list[tuple[str, str]]) -> None:
        """Fire the one-shot watches of what changed: ("data"|"child", path)."""
        for kind, path in changed:
            table = self.data_watches if kind == "data" else self.child_watches
            for flag in table.pop(path, ()):
                flag.set()

    def _drop_session(self, sid: int) -> list[tuple[str, str]]:
        rows = self.db.execute("SELECT path, parent FROM znodes WHERE owner=?", (sid,)).fetchall()
        self.db.execute("DELETE FROM znodes WHERE owner=?", (sid,))
        self.db.execute("DELETE FROM sessions WHERE id=?", (sid,))
        out: list[tuple[str, str]] = []
        for path, parent in rows:
            out += [("data", path), ("child", parent)]
        return out

    def new_session(self) -> int:
        with self.write():
            cur = self.db.execute("INSERT INTO sessions(pid, started) VALUES (?, ?)",
                                  (os.getpid(), _process_start(os.getpid())))
            return int(cur.lastrowid or 0)

    def end_session(self, sid: int) -> None:
        with self.write() as changed:
            changed += self._drop_session(sid)

    # -- single-row helpers (inside `write()` or reads) ---------------------------

    def bump_cversion(self, parent: str) -> None:
        """Count a child created, so sequential names follow ZooKeeper's (which counts
        creates only: a create, a delete and a sequential create yields ...0001)."""
        if parent != "/":
            self.db.execute("UPDATE znodes SET seq=seq+1 WHERE path=?", (parent,))

    def row(self, path: str) -> tuple[bytes, int, int | None, int] | None:
        if path == "/":
            return (b"", 0, None, 0)
        return self.db.execute("SELECT data, version, owner, seq FROM znodes WHERE path=?",
                               (path,)).fetchone()

    def child_names(self, path: str) -> list[str]:
        rows = self.db.execute("SELECT path FROM znodes WHERE parent=?", (path,)).fetchall()
        return sorted(paths.basename(p) for (p,) in rows)


class EmbeddedStore(Store):
    """A `Store` in a SQLite file. Open with `await open_embedded(file, root)`."""

    def __init__(self, file: str | os.PathLike[str], root: str = DEFAULT_ROOT) -> None:
        self.file = str(file)
        self.root = paths.normalize(root)
        self._hub = _Hub.acquire(self.file)
        self._sid = self._hub.new_session()
        self._states = StateBroadcast(ConnectionState.CONNECTED)
        self._flags: set[WakeFlag] = set()
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._hub.end_session(self._sid)
        finally:
            self._hub.release()
        self._states.publish(ConnectionState.CLOSED)
        for flag in list(self._flags):
            flag.set()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("store closed")

    async def simulate_session_loss(self) -> None:
        """End this session as if it expired (ephemerals vanish, LOST is reported), then
        start a new one (CONNECTED). For tests and chaos drills."""
        self._check_open()
        self._states.publish(ConnectionState.SUSPENDED)
        self._hub.end_session(self._sid)
        self._states.publish(ConnectionState.LOST)
        await trio.sleep(0)
        self._sid = self._hub.new_session()
        self._states.publish(ConnectionState.CONNECTED)
        for flag in list(self._flags):
            flag.set()

    @property
    def state(self) -> ConnectionState:
        return self._states.state

    def connection_events(self) -> AsyncGenerator[ConnectionState, None]:
        return self._states.subscribe()

    @property
    def session_id(self) -> int:
        return self._sid

    def _track_flag(self, flag: WakeFlag) -> Callable[[], None]:
        self._flags.add(flag)

        def untrack() -> None:
            # a watch that ends un-fired must not stay armed in the hub forever
            self._flags.discard(flag)
            for table in (self._hub.data_watches, self._hub.child_watches):
                for key in [k for k, flags in table.items() if flag in flags]:
                    table[key].discard(flag)
                    if not table[key]:
                        del table[key]

        return untrack

    def _abs(self, path: str) -> str:
        return full_path(self.root, path)

    # -- data -----------------------------------------------------------------------

    async def get(self, path: str) -> Entry | None:
        self._check_open()
        await trio.lowlevel.checkpoint()
        row = self._hub.row(self._abs(path))
        if row is None:
            return None
        return Entry(codec.decode(path, row[0]), row[1])

    async def children(self, path: str) -> list[str]:
        self._check_open()
        await trio.lowlevel.checkpoint()
        return self._hub.child_names(self._abs(path))

    async def create(self, path: str, value: Any = None, *, ephemeral: bool = False,
                     sequential: bool = False, makepath: bool = True) -> str:
        self._check_open()
        path = paths.normalize(path)
        data = codec.encode(path, value)
        await trio.lowlevel.checkpoint()
        with self._hub.write() as changed:
            if makepath:
                self._make_parents(self._abs(path), changed)
            created = self._create(self._abs(path), data, ephemeral, sequential, changed, path)
        return relative_path(self.root, created)

    def _make_parents(self, full: str, changed: list[tuple[str, str]]) -> None:
        missing: list[str] = []
        p = paths.parent(full)
        while p != "/" and self._hub.row(p) is None:
            missing.append(p)
            p = paths.parent(p)
        for m in reversed(missing):
            self._create(m, b"", False, False, changed, m)

    def _create(self, full: str, data: bytes, ephemeral: bool, sequential: bool,
                changed: list[tuple[str, str]], rel: str) -> str:
        parent = paths.parent(full)
        prow = self._hub.row(parent)
        if prow is None:
            raise NoNode(paths.parent(rel))
        if prow[2] is not None:
            raise CoordinationError(f"ephemeral {paths.parent(rel)} cannot have children")
        if sequential:
            full = f"{full}{prow[3]:010d}"   # as ZooKeeper: children created so far
        if self._hub.row(full) is not None:
            raise NodeExists(relative_path(self.root, full))
        self._hub.db.execute(
            "INSERT INTO znodes(path, parent, data, version, owner) VALUES (?, ?, ?, 0, ?)",
            (full, parent, data, self._sid if ephemeral else None))
        self._hub.bump_cversion(parent)
        changed += [("data", full), ("child", parent)]
        return full

    async def set(self, path: str, value: Any, version: int = -1) -> int:
        self._check_open()
        data = codec.encode(path, value)
        await trio.lowlevel.checkpoint()
        with self._hub.write() as changed:
            return self._set(self._abs(path), data, version, changed, path)

    def _set(self, full: str, data: bytes, version: int, changed: list[tuple[str, str]],
             rel: str) -> int:
        row = self._hub.row(full)
        if row is None or full == "/":
            raise NoNode(rel)
        if version >= 0 and row[1] != version:
            raise VersionConflict(rel, version)
        self._hub.db.execute("UPDATE znodes SET data=?, version=version+1 WHERE path=?",
                             (data, full))
        changed.append(("data", full))
        return row[1] + 1

    async def delete(self, path: str, version: int = -1, recursive: bool = False) -> None:
        self._check_open()
        await trio.lowlevel.checkpoint()
        full = self._abs(path)
        with self._hub.write() as changed:
            row = self._hub.row(full)
            if row is None:
                return
            if version >= 0 and row[1] != version:
                raise VersionConflict(path, version)
            if recursive:
                self._delete_subtree(full, changed)
            self._delete(full, -1, changed, path)

    def _delete_subtree(self, full: str, changed: list[tuple[str, str]]) -> None:
        for name in self._hub.child_names(full):
            child = f"{full}/{name}"
            self._delete_subtree(child, changed)
            self._delete(child, -1, changed, child)

    def _delete(self, full: str, version: int, changed: list[tuple[str, str]],
                rel: str) -> None:
        row = self._hub.row(full)
        if row is None or full == "/":
            raise NoNode(rel)
        if version >= 0 and row[1] != version:
            raise VersionConflict(rel, version)
        if self._hub.db.execute("SELECT 1 FROM znodes WHERE parent=? LIMIT 1",
                                (full,)).fetchone():
            raise NotEmpty(rel)
        self._hub.db.execute("DELETE FROM znodes WHERE path=?", (full,))
        changed += [("data", full), ("child", paths.parent(full)), ("child", full)]

    async def transaction(self, ops: Sequence[Op]) -> list[Any]:
        self._check_open()
        encoded: list[bytes | None] = []
        for op in ops:
            if isinstance(op, (Create, Set)):
                encoded.append(codec.encode(op.path, op.value))
            elif isinstance(op, (Delete, Check)):
                encoded.append(None)
            else:
                raise TypeError(f"not a transaction op: {op!r}")
        total = sum(len(d) for d in encoded if d)
        if total > codec.MAX_VALUE_BYTES:
            raise ValueTooLarge("transaction", total, codec.MAX_VALUE_BYTES)
        await trio.lowlevel.checkpoint()
        out: list[Any] = []
        with self._hub.write() as changed:
            for i, (op, data) in enumerate(zip(ops, encoded, strict=True)):
                full = self._abs(op.path)
                try:
                    if isinstance(op, Create):
                        created = self._create(full, data or b"", op.ephemeral, op.sequential,
                                               changed, op.path)
                        out.append(relative_path(self.root, created))
                    elif isinstance(op, Set):
                        out.append(self._set(full, data or b"", op.version, changed, op.path))
                    elif isinstance(op, Delete):
                        self._delete(full, op.version, changed, op.path)
                        out.append(None)
                    else:
                        row = self._hub.row(full)
                        if row is None:
                            raise NoNode(op.path)
                        if op.version >= 0 and row[1] != op.version:
                            raise VersionConflict(op.path, op.version)
                        out.append(None)
                except (NoNode, NodeExists, VersionConflict, NotEmpty) as cause:
                    raise TransactionFailed(i, op, cause) from None
        return out

    # -- watches --------------------------------------------------------------------

    async def _arm_data(self, path: str, flag: WakeFlag) -> Entry | None:
        self._check_open()
        await trio.lowlevel.checkpoint()
        full = self._abs(path)
        self._hub.data_watches.setdefault(full, set()).add(flag)
        row = self._hub.row(full)
        if row is None:
            return None
        try:
            return Entry(codec.decode(path, row[0]), row[1])
        except CorruptValue as e:
            log.warning("%s", e)
            return Entry(None, row[1], corrupt=e)

    async def _arm_children(self, path: str, flag: WakeFlag) -> list[str]:
        self._check_open()
        await trio.lowlevel.checkpoint()
        full = self._abs(path)
        self._hub.child_watches.setdefault(full, set()).add(flag)
        return self._hub.child_names(full)

    # -- test and repair helpers ----------------------------------------------------

    def write_raw(self, path: str, data: bytes) -> None:
        """Store raw bytes at `path` (creating it), bypassing the codec. For tests of
        corrupt values only."""
        full = self._abs(path)
        with self._hub.write() as changed:
            self._make_parents(full, changed)
            if self._hub.row(full) is None:
                self._create(full, data, False, False, changed, path)
            else:
                self._set(full, data, -1, changed, path)


async def open_embedded(file: str | os.PathLike[str], root: str = DEFAULT_ROOT) -> EmbeddedStore:
    """Open a session on the SQLite store in `file` (created if missing)."""
    await trio.lowlevel.checkpoint()
    return EmbeddedStore(file, root)
