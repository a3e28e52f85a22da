"""Reads answered from the store when no leader answers (a failover): what a new leader
would start from, marked stale by the API (`X-Helios-Stale: true`)."""

from __future__ import annotations

from typing import Any

from helios.http.messages import ApiError

__all__ = ["store_read"]


async def store_read(store: Any, method: str, *args: Any) -> Any:
    """The document `method` answers, computed from a snapshot of the store (what a new
    leader would start from): jobs, statuses as last written, nodes up or down by their
    presence. No pending slots nor rollout steps (only a leader plans)."""
    from helios.conductor import views
    from helios.conductor.history import read_history
    from helios.conductor.snapshot import load_snapshot

    if method == "job_history":
        events = await read_history(store, args[0])
        if not events:
            raise ApiError(404, f"no job named {args[0]!r}")
        return events
    state = (await load_snapshot(store)).state
    if method == "job_ls":
        return views.job_ls(state)
    if method == "nodes":
        return views.nodes(state)
    record = state.jobs.get(args[0])
    if record is None:
        raise ApiError(404, f"no job named {args[0]!r}")
    if method == "job_status":
        return views.job_status(state, record)
    return views.endpoints(state, record)
