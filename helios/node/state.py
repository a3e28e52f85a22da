"""The node daemon's state directory: one lock, and small JSON files written atomically.

Why it exists: a node must keep running its tasks after a restart while no conductor and no
ZooKeeper can be reached, so its last known desired state lives on local disk. Two files:

    <state_dir>/lock              fcntl lock held for the daemon's whole life
    <state_dir>/assignments.json  {"epoch", "generation", "assignments": [...], "cluster_id"}
    <state_dir>/tasks.json        per task: restarts so far, and its final outcome if any
    <state_dir>/process/          the process runtime's records (when that runtime is used)

Every write goes to a temporary file that is fsync'ed and then renamed over the old one
(`os.replace`, atomic on POSIX), and the directory is fsync'ed, so a crash or power loss
at any instant leaves either the old or the new file, never half of one. The lock stops a
second daemon from sharing the directory: two daemons adopting the same containers would
fight over them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any

ASSIGNMENTS_FILE = "assignments.json"
TASKS_FILE = "tasks.json"
LOCK_FILE = "lock"


class StateDirLocked(RuntimeError):
    """Another node daemon holds this state directory."""


def write_atomic(path: Path, data: Any) -> None:
    """Write `data` as JSON to `path` so that readers see the old or the new file, whole."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    payload = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(payload)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def read_json(path: Path, default: Any) -> Any:
    """The JSON in `path`, or `default` when it is missing or unreadable (logged by caller)."""
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return default


class StateDir:
    """The locked state directory of one node daemon. Use as a context manager."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None

    def __enter__(self) -> StateDir:
        self.lock()
        return self

    def __exit__(self, *exc: object) -> None:
        self.unlock()

    def lock(self) -> None:
        """Take the directory's lock, or raise `StateDirLocked` naming the holder's pid."""
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StateDirLocked(
                f"state directory {self.path} is in use by another node daemon "
                f"(pid {holder}); give each node daemon its own --state-dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @property
    def process_dir(self) -> Path:
        """Where the process runtime keeps its records."""
        return self.path / "process"

    # -- desired state ----------------------------------------------------------------

    def load_assignments(self) -> dict[str, Any]:
        """{"epoch", "generation", "assignments", "cluster_id"}; zeros when never written."""
        data = read_json(self.path / ASSIGNMENTS_FILE, {})
        if not isinstance(data, dict):
            data = {}
        return {"epoch": int(data.get("epoch", 0)), "generation": int(data.get("generation", 0)),
                "assignments": list(data.get("assignments") or []),
                "cluster_id": data.get("cluster_id")}

    def save_assignments(self, epoch: int, generation: int, assignments: list[dict[str, Any]],
                         cluster_id: str | None) -> None:
        write_atomic(self.path / ASSIGNMENTS_FILE,
                     {"epoch": epoch, "generation": generation, "assignments": assignments,
                      "cluster_id": cluster_id})

    # -- task outcomes ----------------------------------------------------------------

    def load_tasks(self) -> dict[str, dict[str, Any]]:
        """Per task id: {"restarts": n, "final": {...TaskStatus fields...} | None}."""
        data = read_json(self.path / TASKS_FILE, {})
        return data if isinstance(data, dict) else {}

    def save_tasks(self, tasks: dict[str, dict[str, Any]]) -> None:
        write_atomic(self.path / TASKS_FILE, tasks)
