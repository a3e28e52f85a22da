"""What `helios job run --wait` shows while it waits: the rollout moving.

Why two renderings: on a terminal a live display (a bar of slots updated, the tasks by
state) redraws in place; piped into a file or a CI log, redrawing would leave garbage, so
the same facts come as plain lines, one each time they change. Both read only the
`job status --json` document, so what they say is what `helios job status` says.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["WaitProgress", "summary"]


def _counts(doc: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in doc.get("tasks", []):
        counts[t["state"]] = counts.get(t["state"], 0) + 1
    return counts


def summary(doc: dict[str, Any], kind: str) -> tuple[str, int, int]:
    """(one line, slots done, slots in all) of a `job status` document: a rollout's
    updated/total for a service, finished tasks for a batch job."""
    counts = _counts(doc)
    tasks = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no tasks yet"
    healthy = sum(1 for t in doc.get("tasks", []) if t.get("healthy") is True)
    ro = doc.get("rollout")
    if ro:
        done, total = int(ro.get("updated", 0)), int(ro.get("total", 0))
        head = (f"rollout v{ro.get('version')} {ro.get('state')}: {done} of {total} "
                f"updated, {ro.get('old', 0)} old left")
    else:
        total = len(doc.get("tasks", []))
        done = counts.get("exited", 0) if kind == "batch" else counts.get("running", 0)
        head = f"{done} of {total} {'done' if kind == 'batch' else 'running'}"
    line = f"{doc.get('name')} v{doc.get('version')}: {head}; tasks: {tasks}"
    if healthy:
        line += f" ({healthy} healthy)"
    pending = doc.get("pending") or []
    if pending:
        line += f"; {len(pending)} pending: {pending[0].get('reason', '')}"
    return line, done, total


class WaitProgress:
    """A context manager fed each polled `job status` document. `quiet` shows nothing."""

    def __init__(self, console: Any, kind: str, quiet: bool = False) -> None:
        self.console = console
        self.kind = kind
        self.quiet = quiet
        self.live = not quiet and bool(getattr(console, "is_terminal", False))
        self._progress: Any = None
        self._task: Any = None
        self._last = ""
        self.line = ""

    def __enter__(self) -> WaitProgress:
        if self.live:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                      BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                      console=self.console, transient=False)
            self._progress.__enter__()
            self._task = self._progress.add_task("waiting", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def update(self, doc: dict[str, Any]) -> str:
        self.line, done, total = summary(doc, self.kind)
        if self.quiet:
            return self.line
        if self._progress is not None:
            self._progress.update(self._task, description=self.line, completed=done,
                                  total=total or None)
        elif self.line != self._last:
            stamp = time.strftime("%H:%M:%S")
            self.console.print(f"{stamp} {self.line}", markup=False, highlight=False,
                               soft_wrap=True)
        self._last = self.line
        return self.line
