"""What every peer module of the side-by-side benchmark shares: the workloads' names and
sizes, a clock, RSS, and starting/stopping helper processes by PID.

Each peer module defines `measure(scale) -> dict` and runs in a process of its own, so one
library's threads, event loop or daemons cannot slow down the next one's figures. A value
is a number, `(number, note)` when the figure was taken in a different mode than the
workload's name says, or a string starting with "n/a" saying why there is no figure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

#: (key, label, unit, higher_is_better); the table's rows, in order
WORKLOADS = [
    ("local_ask", "local ask, same process, 1 outstanding", "asks/s", True),
    ("ask_p50", "ask p50, 2 processes, 1 outstanding", "us", False),
    ("ask1", "asks/s, 2 processes, 1 outstanding", "asks/s", True),
    ("ask64", "asks/s, 2 processes, 64 outstanding", "asks/s", True),
    ("tell", "one-way tells, 2 processes", "msgs/s", True),
    ("fanout", "fan-out: ask 1,000 actors at once", "ms", False),
    ("mem", "memory per idle actor", "bytes", False),
    ("spawn", "spawn rate", "actors/s", True),
]

#: the workloads that cross a process boundary: `actors` is meant to lead on these
CROSS_PROCESS = ("ask_p50", "ask1", "ask64", "tell")

FANOUT = 1_000

Figure = float | tuple[float, str] | str


def sizes(scale: float) -> dict[str, int]:
    """Message counts per workload; `--quick` scales them down."""
    return {"local": int(50_000 * scale), "rtt": int(5_000 * scale),
            "conc": int(32_000 * scale), "tell": int(100_000 * scale),
            "idle": max(1_000, int(10_000 * scale)), "spawn": max(500, int(2_000 * scale))}


def rss(pid: int | str = "self") -> int:
    """Resident memory of a process, from /proc (no psutil needed)."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def timed(fn: Callable[[], Any]) -> float:
    """Seconds `fn()` takes."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def p50(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def start_process(args: list[str], ready_file: str, timeout: float = 30.0
                  ) -> tuple[subprocess.Popen[bytes], str]:
    """Start a helper process that writes `ready_file` (its address) once it serves."""
    proc = subprocess.Popen([sys.executable, *args], start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(ready_file) and os.path.getsize(ready_file):
            time.sleep(0.05)
            with open(ready_file) as f:
                return proc, f.read().strip()
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    stop_process(proc)
    raise RuntimeError(f"{args} did not become ready within {timeout}s")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Stop a helper by its PID (its whole session: it may have started children)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def against_server(kind: str, fn: Callable[..., Any], *args: Any) -> Any:
    """`trio.run(fn, address, *args)` against `bench/actors_bench.py --serve kind` (`raw`
    or `actors`), a process of its own stopped by PID afterwards. Imported late: the
    tractor peer runs where `actors` cannot be imported."""
    import trio

    from bench import actors_bench as ab

    with tempfile.TemporaryDirectory() as tmp:
        proc, address = ab.start_server(kind, tmp)
        try:
            return trio.run(fn, address, *args)
        finally:
            proc.kill()
            proc.wait()
