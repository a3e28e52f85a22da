"""How long the first errors a user meets take to appear, against the issue's 2 s target,
next to a baseline: the same `helios --help` start-up (Python imports), which every
command pays before it can say anything.

    python bench/errors_bench.py [--rounds 3]

Measured as a user sees them, each a `helios` subprocess: `--conductor notanaddress`, a
refused `--conductor`, a node's address given as `--conductor` (a `helios node` whose
ZooKeeper is down, so it also shows the daemon's "ZooKeeper unreachable" line), a busy
`--listen` port for `helios solo`, the time from a conductor's start to its
"ZooKeeper unreachable at" line, and SIGTERM to exit of a conductor waiting for ZooKeeper.
Prints the median per error, and its ratio to the start-up baseline.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HELIOS = [sys.executable, "-m", "helios.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(*args: str) -> tuple[float, str]:
    t = time.perf_counter()
    r = subprocess.run(HELIOS + list(args), capture_output=True, text=True, timeout=60)
    return time.perf_counter() - t, r.stderr.strip().splitlines()[-1] if r.stderr else ""


def wait_for_line(proc: subprocess.Popen[bytes], text: str, started: float,
                  limit: float = 30) -> float:
    """Seconds from `started` until `text` appears in the daemon's output."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    buf = b""
    while time.perf_counter() - started < limit:
        try:
            buf += os.read(fd, 65536)
        except BlockingIOError:
            pass
        if text.encode() in buf:
            return time.perf_counter() - started
        time.sleep(0.02)
    raise RuntimeError(f"no {text!r} within {limit}s: {buf[-500:]!r}")


def daemon(*args: str) -> tuple[subprocess.Popen[bytes], float]:
    started = time.perf_counter()
    return subprocess.Popen(HELIOS + list(args), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT), started


def stop(proc: subprocess.Popen[bytes]) -> float:
    t = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return time.perf_counter() - t


def one_round(tmp: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    out["baseline: helios --help"] = timed("--help")[0]
    out["--conductor notanaddress"] = timed("job", "ls", "--conductor", "notanaddress")[0]
    out["--conductor refused"] = timed("job", "ls", "--conductor",
                                       f"127.0.0.1:{free_port()}")[0]
    zk = f"127.0.0.1:{free_port()}"
    node_addr = f"127.0.0.1:{free_port()}"
    node, node_t = daemon("node", "--zk", zk, "--name", f"bench{os.getpid()}", "--runtime",
                          "process", "--listen", node_addr,
                          "--state-dir", str(tmp / f"n{time.time_ns()}"))
    conductor, cond_t = daemon("conductor", "--zk", zk, "--listen",
                               f"127.0.0.1:{free_port()}")
    try:
        out["conductor start: 'ZooKeeper unreachable' line"] = wait_for_line(
            conductor, "ZooKeeper unreachable at", cond_t)
        out["node start: 'ZooKeeper unreachable' line"] = wait_for_line(
            node, "ZooKeeper unreachable at", node_t)
        out["--conductor <a node's address>"] = timed("job", "ls", "--conductor",
                                                      node_addr)[0]
    finally:
        out["SIGTERM of a conductor waiting for ZooKeeper"] = stop(conductor)
        stop(node)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        out["solo --listen <busy port>"] = timed(
            "solo", "--runtime", "process", "--listen", f"127.0.0.1:{s.getsockname()[1]}",
            "--state-dir", str(tmp / "busy"))[0]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rounds = []
    with tempfile.TemporaryDirectory() as d:
        for _ in range(args.rounds):
            rounds.append(one_round(Path(d)))
    base = statistics.median(r["baseline: helios --help"] for r in rounds)
    print(f"{'what':<50} {'median s':>9} {'x start-up':>11}  (target: 2 s)")
    for key in rounds[0]:
        med = statistics.median(r[key] for r in rounds)
        print(f"{key:<50} {med:>9.2f} {med / base:>11.1f}")


if __name__ == "__main__":
    main()
