"""Task events of a job under `/history/<job>/`: sequential entries, trimmed to a bound.

Sequential names give a total order per job without a counter to contend on; trimming
deletes the oldest beyond `keep`, so the history never grows without bound.
"""

from __future__ import annotations

import logging
from typing import Any

from helios.coordination import paths
from helios.coordination.errors import CorruptValue
from helios.coordination.store import Store

log = logging.getLogger(__name__)

DEFAULT_KEEP = 100


async def append_event(store: Store, job: str, event: dict[str, Any],
                       keep: int = DEFAULT_KEEP) -> str:
    """Record `event` for `job`, drop the oldest beyond `keep`; return its path."""
    created = await store.create(paths.history_event_prefix(job), event, sequential=True)
    names = sorted(await store.children(paths.history(job)), key=paths.sequence_of)
    for name in names[:max(0, len(names) - keep)]:
        await store.delete(f"{paths.history(job)}/{name}")
    return created


async def read_events(store: Store, job: str) -> list[dict[str, Any]]:
    """The job's events, oldest first; undecodable ones are logged and skipped."""
    out: list[dict[str, Any]] = []
    for name in sorted(await store.children(paths.history(job)), key=paths.sequence_of):
        try:
            entry = await store.get(f"{paths.history(job)}/{name}")
        except CorruptValue as e:
            log.warning("%s", e)
            continue
        if entry is not None:
            out.append(entry.value)
    return out
