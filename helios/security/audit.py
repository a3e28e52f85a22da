"""The audit log: every operator action, with the identity that made it, and every
refusal (`helios audit`, docs/security.md).

The authorization policy (`authz.HeliosPolicy`) records each decision worth keeping: an
allowed change (a job run, stopped, removed or dispatched, a node removed, a token made
or revoked...) and any refusal. Records are buffered in memory (the policy runs inside the
connection's reader and must not wait) and written by `AuditLog.run` every
`FLUSH_INTERVAL` as one sequential entry `/audit/b-<seq>` holding a batch, by whichever
conductor made the decision: a standby's refusals are recorded too, so these writes are
not fenced by the leader's epoch. The log keeps the newest `KEEP_BATCHES` entries.

A record: {"time": float, "who": str, "role": str, "token": str, "via": str,
"action": "conductor.job_run", "target": "web", "allowed": bool, "reason": str}. It holds
names (the job, the node, the token), never arguments such as a secret's value or a
token's secret.

Refusals are many when someone hammers the door: at most `MAX_BUFFER` records wait for a
flush, and what goes beyond is counted and recorded as one summary record.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import trio

from helios.coordination import paths
from helios.coordination.codec import split_by_size
from helios.coordination.errors import CoordinationError, CorruptValue
from helios.coordination.store import Store
from helios.security.authz import Subject

log = logging.getLogger(__name__)

__all__ = ["AuditLog", "read_audit"]

FLUSH_INTERVAL = 0.5
MAX_BUFFER = 1000
MAX_ENTRY_BYTES = 128 * 1024
PER_ENTRY = 500
KEEP_BATCHES = 2000


class AuditLog:
    """Buffers decisions (`record`, never blocks) and writes them (`run`)."""

    def __init__(self, store: Store, *, origin: str = "") -> None:
        self.store = store
        self.origin = origin  # which conductor recorded it
        self._buffer: list[dict[str, Any]] = []
        self._dropped = 0
        self._wake = trio.Event()
        self.written = 0
        self._last_warn = -1e9
        self._held = 0

    def record(self, subject: Subject, action: str, target: str, allowed: bool,
               reason: str) -> None:
        if len(self._buffer) >= MAX_BUFFER:
            self._dropped += 1
            return
        who = subject.token or subject.name or subject.role
        self._buffer.append({
            "time": time.time(), "who": who, "role": subject.role, "token": subject.token,
            "via": subject.via[:200], "action": action[:100], "target": target[:200],
            "allowed": bool(allowed), "reason": reason[:500], "by": self.origin})
        self._wake.set()
        if not allowed:
            self._warn(f"refused {action} {target} from {subject}: {reason}")

    def _warn(self, line: str) -> None:
        """A refusal in the daemon's log, at most one a second (a flood of refusals
        must not fill the log; the audit records keep every one up to MAX_BUFFER)."""
        now = time.monotonic()
        if now - self._last_warn < 1.0:
            self._held += 1
            return
        held, self._held, self._last_warn = self._held, 0, now
        log.warning("%s%s", line, f" ({held} more refusals not logged)" if held else "")

    async def run(self) -> None:
        """Write what was recorded, until cancelled; then once more (shielded)."""
        try:
            while True:
                await self._wake.wait()
                await trio.sleep(FLUSH_INTERVAL)  # one entry for a burst
                self._wake = trio.Event()
                await self.flush()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await self.flush()

    async def flush(self) -> None:
        batch, self._buffer = self._buffer, []
        if self._dropped:
            batch.append({"time": time.time(), "who": "-", "role": "-", "token": "",
                          "via": "", "action": "audit.dropped", "target": "",
                          "allowed": False, "by": self.origin,
                          "reason": f"{self._dropped} more refusals in a burst, not "
                                    "recorded one by one"})
            self._dropped = 0
        if not batch:
            return
        chunks, _ = split_by_size(batch, MAX_ENTRY_BYTES, PER_ENTRY)
        try:
            for chunk in chunks:
                await self.store.create(paths.audit_prefix(), chunk, sequential=True)
                self.written += len(chunk)
            await self._trim()
        except CoordinationError as e:
            log.warning("audit records not written yet (%s); keeping them", e)
            self._buffer[:0] = batch[: MAX_BUFFER - len(self._buffer)]
            self._wake.set()

    async def _trim(self) -> None:
        names = sorted(await self.store.children(paths.AUDIT), key=paths.sequence_of)
        for name in names[:max(0, len(names) - KEEP_BATCHES)]:
            await self.store.delete(f"{paths.AUDIT}/{name}")


async def read_audit(store: Store, since: float | None = None,
                     limit: int = 10_000) -> list[dict[str, Any]]:
    """Records newer than `since` (a time), oldest first, at most `limit` (the newest).
    Reads from the newest entry back, and stops at the first entry wholly older."""
    batches: list[list[dict[str, Any]]] = []
    count = 0
    for name in sorted(await store.children(paths.AUDIT), key=paths.sequence_of,
                       reverse=True):
        try:
            entry = await store.get(f"{paths.AUDIT}/{name}")
        except CorruptValue as e:
            log.warning("%s", e)
            continue
        if entry is None or not isinstance(entry.value, list):
            continue
        records = [r for r in entry.value if isinstance(r, dict)]
        fresh = [r for r in records if since is None or r.get("time", 0) >= since]
        batches.append(fresh)
        count += len(fresh)
        if count >= limit or (records and not fresh):
            break
    out = [r for batch in reversed(batches) for r in batch]
    return out[-limit:]
