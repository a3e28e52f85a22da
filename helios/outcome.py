"""Whether a submitted job version reached its goal, from `job status --json` alone.

`helios job run --wait` and `helios job dispatch --wait` poll the status and ask
:func:`judge` after every read: the version is done (a service healthy in every slot, a
batch run finished with every task exited 0), failed (its rollout failed or rolled back,
a task fits on no node, a task failed for good and waits to be rescheduled, a batch task
failed), or still under way. Pure, so every exit code is unit-tested on documents.
A task that fits on no node is a failure marked ``transient``: the CLI gives it
PLACEMENT_GRACE to resolve (nodes of a cluster that was just started may still be
registering) before it exits with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["PLACEMENT_GRACE", "Outcome", "judge", "placement_warning"]

#: seconds a task may fit nowhere during `--wait` before that is the outcome
PLACEMENT_GRACE = 10.0


@dataclass(frozen=True)
class Outcome:
    """``done`` with ``error`` None is success; ``error`` is the one-line reason."""

    done: bool
    error: str | None = None
    transient: bool = False  # a task fits nowhere now: nodes may still be joining


def _unplaced(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in doc.get("pending") or [] if p.get("kind", "placement") == "placement"]


def placement_warning(name: str, unplaced: list[dict[str, Any]],
                      failures: list[str]) -> str | None:
    """The line `job run` prints when the new version cannot be placed (as Nomad's
    "Placement Failure"); None when everything fits."""
    if failures:
        return f"job {name}: {failures[0]}"
    if unplaced:
        n = len(unplaced)
        return (f"job {name}: {n} task{'s' if n != 1 else ''} cannot be placed: "
                f"{unplaced[0].get('reason', '')}")
    return None


def judge(doc: dict[str, Any], kind: str, version: int) -> Outcome:
    """Where version ``version`` of the job in ``doc`` stands."""
    name = doc.get("name", "?")
    ro = doc.get("rollout") or {}
    failed = ro.get("failed_version")
    if failed is not None and failed >= version:
        text = f"job {name}: rollout of v{failed} failed: {ro.get('failure') or 'unknown'}"
        if ro.get("state") in ("rolled back", "rolling back"):
            text += f"; rolled back (now v{doc.get('version')})"
        return Outcome(True, text)
    if doc.get("version", 0) < version:
        return Outcome(False)
    if doc.get("version", 0) == version:
        warning = placement_warning(name, _unplaced(doc), [])
        if warning is not None:
            return Outcome(True, warning, transient=True)
        waits = doc.get("reschedule") or []
        if waits and kind == "service":  # (a batch run's retry is part of its run)
            return Outcome(True, f"job {name}: slot {waits[0]['index']} "
                                 f"{waits[0]['reason']}")
    status = doc.get("status")
    if kind == "batch":
        if status == "complete":
            return Outcome(True)
        if status == "failed":
            bad = [t for t in doc.get("tasks", []) if t.get("state") == "failed"]
            return Outcome(True, f"job {name} failed: {len(bad)} task(s) failed (see "
                                 f"`helios job history {name}`)")
        return Outcome(False)
    return Outcome(status == "running")
