"""Errors of the coordination layer.

Every backend raises these, never kazoo's or sqlite3's own exceptions, so callers (the
conductor, the node) handle one set of names whatever store they run on.
"""

from __future__ import annotations

from typing import Any


class CoordinationError(Exception):
    """Base of every error the coordination layer raises."""


class NoNode(CoordinationError):
    """The path does not exist."""

    def __init__(self, path: str) -> None:
        super().__init__(f"no such path: {path}")
        self.path = path


class NodeExists(CoordinationError):
    """The path already exists (create of an existing path)."""

    def __init__(self, path: str) -> None:
        super().__init__(f"path already exists: {path}")
        self.path = path


class NotEmpty(CoordinationError):
    """A non-recursive delete of a path that still has children."""

    def __init__(self, path: str) -> None:
        super().__init__(f"path has children: {path}")
        self.path = path


class VersionConflict(CoordinationError):
    """Compare-and-set failed: the path's version is not the one the caller expected.

    The caller read a value, someone else changed it since; re-read and decide again.
    """

    def __init__(self, path: str, expected: int) -> None:
        super().__init__(f"version conflict on {path}: expected version {expected}")
        self.path = path
        self.expected = expected


class TransactionFailed(CoordinationError):
    """A transaction was rejected as a whole; nothing of it was applied.

    `index` and `op` name the operation that failed, `cause` is its own error
    (`VersionConflict`, `NoNode`, `NodeExists`, `NotEmpty`).
    """

    def __init__(self, index: int, op: Any, cause: CoordinationError) -> None:
        super().__init__(f"transaction rejected at op {index} ({op!r}): {cause}")
        self.index = index
        self.op = op
        self.cause = cause


class StaleEpoch(CoordinationError):
    """A fenced write carried an epoch older than the current one: the writer was deposed."""

    def __init__(self, epoch: int) -> None:
        super().__init__(f"leadership epoch {epoch} is stale: another conductor leads now")
        self.epoch = epoch


class CorruptValue(CoordinationError):
    """A stored value does not decode (corrupt, or written by something other than Helios)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"value at {path} does not decode: {reason}")
        self.path = path
        self.reason = reason


class ValueTooLarge(CoordinationError):
    """A value (or a whole transaction) is over the store's size limit; nothing was sent."""

    def __init__(self, path: str, size: int, limit: int) -> None:
        super().__init__(f"value for {path} is {size} bytes, over the limit of {limit} bytes")
        self.path = path
        self.size = size
        self.limit = limit


class Unavailable(CoordinationError):
    """The store cannot be reached (no quorum, connection lost, session expired).

    For a write, the outcome is unknown: it may or may not have been applied. Re-read
    before retrying anything that is not idempotent.
    """


class NotAuthorized(CoordinationError):
    """The store refused the operation under the configured credential (ACL)."""

    def __init__(self, path: str, what: str = "operation") -> None:
        super().__init__(f"not authorized: {what} on {path}")
        self.path = path


class ClusterIdMismatch(CoordinationError):
    """The root holds no cluster id, or another one than expected (wiped or wrong store)."""

    def __init__(self, root: str, expected: str | None, found: str | None) -> None:
        super().__init__(
            f"cluster id at {root} is {found!r}, expected {expected!r}: "
            "wrong or wiped ZooKeeper, not syncing from it"
        )
        self.root = root
        self.expected = expected
        self.found = found


class StoreClosed(CoordinationError):
    """The store was closed by its owner."""
