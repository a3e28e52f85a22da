"""Hostile input against a live `helios solo`: what each attack costs everyone else.

    python bench/hostile_bench.py [--seconds 8] [--connections 1000]

A `helios solo --runtime process` (no cluster secret: the worst case, where anyone who
reaches the port completes the handshake) runs as a subprocess with three jobs. A probe
thread asks the conductor `job_ls` over the actor protocol in a loop, as another client
would, and records every latency. First a quiet phase gives the baseline; then each
attack runs for `--seconds` while the probe keeps asking. Printed per attack:

- `p50` / `p99`: the probe's `job_ls` latency during the attack, and `p99/base`, the
  ratio to the quiet baseline of the same run (target <= 2x);
- `rss+`: the daemon's peak resident memory during the attack over its level before it
  (target <= 64 MiB, with `--connections` hostile connections in the connection attacks);
- `alive`: the daemon still runs (target: always); `probe errors`: failed `job_ls` asks.

Every connection is made to 127.0.0.1 and closed; the daemon is stopped by its PID.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import actors  # noqa: E402
from bench.failover_bench import free_port  # noqa: E402
from tests.hostile import attacks  # noqa: E402

HELIOS = [sys.executable, "-m", "helios.cli"]


class Probe:
    """Asks `job_ls` in a loop on its own thread (its own trio run), recording latency."""

    def __init__(self, address: str) -> None:
        self.url = f"tcp://{address}/conductor"
        self.samples: list[tuple[float, float]] = []  # (when, seconds)
        self.errors: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: trio.run(self._run), daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    async def _run(self) -> None:
        async with actors.open_system("probe") as system:
            ref = system.ref(self.url)
            while not self._stop.is_set():
                t0 = time.monotonic()
                try:
                    await ref.ask("job_ls", timeout=10)
                    self.samples.append((t0, time.monotonic() - t0))
                except actors.ActorError as e:
                    self.errors.append((t0, str(e)[:200]))
                    await trio.sleep(0.05)
                await trio.sleep(0.005)

    def between(self, start: float, end: float) -> tuple[list[float], int]:
        lat = [s for t, s in self.samples if start <= t < end]
        errs = sum(1 for t, _ in self.errors if start <= t < end)
        return lat, errs


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


# ------------------------------------------------------------------------------ attacks
def repeat(seconds: float, fn: Callable[[], None]) -> int:
    """Run `fn` over and over for `seconds` (bounded by the clock); returns the count."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        with contextlib.suppress(OSError, ConnectionError, TimeoutError):
            fn()
        n += 1
    return n


def nested_frames(address: str, seconds: float, _: int) -> str:
    def once() -> None:
        with attacks.connect(address) as s:
            s.sendall(attacks.nested_tell(100_000, before_hello=True))
            attacks.closed_by_peer(s, 2)
        with attacks.handshake(address) as s:
            s.sendall(attacks.nested_tell(100_000))
            attacks.closed_by_peer(s, 2)
    return f"{repeat(seconds, once)} rounds of 2 frames nested 100,000 deep"


def big_stranger_frames(address: str, seconds: float, _: int) -> str:
    chunk = attacks.empty_lists_frame()[:256 * 1024]

    def once() -> None:
        with attacks.connect(address) as s:
            with contextlib.suppress(OSError):
                s.sendall(chunk)
            attacks.closed_by_peer(s, 2)
    return f"{repeat(seconds, once)} strangers sending 4 MiB frames of empty lists"


def system_methods(address: str, seconds: float, _: int) -> str:
    def once() -> None:
        with attacks.handshake(address) as s:
            for m in ("$call", "$stop", "", "leading"):
                s.sendall(attacks.frame({"k": "t", "to": "conductor", "m": m, "a": [None]}))
            s.sendall(attacks.frame({"k": "s", "id": 1, "to": "conductor-sup", "kill": True}))
            attacks.read_frames(s, 1, 2)
    return f"{repeat(seconds, once)} rounds of $-methods and a wire kill"


def reply_flood(address: str, seconds: float, _: int) -> str:
    total = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with contextlib.suppress(OSError, ConnectionError), attacks.handshake(address) as s:
            total += attacks.lookup_flood(s, 1_000_000)
    return f"{total:,} lookups sent, no reply read"


def drip(address: str, seconds: float, connections: int) -> str:
    socks: list[socket.socket] = []
    refused = 0
    for _ in range(connections):
        try:
            socks.append(attacks.drip_connection(address, prefill=200_000))
        except (OSError, ConnectionError):
            refused += 1
    end = time.monotonic() + seconds
    while time.monotonic() < end and socks:
        socks = [s for s in socks if attacks.drip(s) or s.close()]
        time.sleep(0.5)
    left = len(socks)
    for s in socks:
        s.close()
    return (f"{connections} connections holding partial 3.9 MB frames, a byte every "
            f"0.5 s: {refused} refused at once, {left} still open at the end")


def idle_strangers(address: str, seconds: float, connections: int) -> str:
    socks: list[socket.socket] = []
    refused = 0
    for _ in range(connections):
        try:
            s = attacks.connect(address)
            s.sendall(attacks.frame(attacks.hello())[:10])
            socks.append(s)
        except OSError:
            refused += 1
    time.sleep(seconds)
    closed = sum(1 for s in socks if attacks.closed_by_peer(s, 0.01) is not None)
    for s in socks:
        s.close()
    return f"{connections} half-Hellos: {refused} refused, {closed} closed by the daemon"


def oversized_events(address: str, seconds: float, _: int) -> str:
    huge = [{"id": "nope-1", "node": "ghost", "job": "ghost", "state": "failed",
             "reason": "x" * 600_000, "updated": time.time()}] * 2

    def once() -> None:
        with attacks.handshake(address) as s:
            attacks.ask(s, "conductor", "task_events", "ghost", huge)
    return f"{repeat(seconds, once)} task_events of 1.2 MB"


def forged_epochs(address: str, seconds: float, _: int) -> str:
    def once() -> None:
        with attacks.handshake(address) as s:
            attacks.ask(s, "node", "assign", 2**63 - 1, 0, [])
    return f"{repeat(seconds, once)} assigns with epoch 2^63-1"


ATTACKS: dict[str, Callable[[str, float, int], str]] = {
    "nested frames": nested_frames,
    "4 MiB strangers": big_stranger_frames,
    "$-methods, kill": system_methods,
    "reply flood": reply_flood,
    "drip (N conns)": drip,
    "idle (N conns)": idle_strangers,
    "1.2 MB events": oversized_events,
    "forged epoch": forged_epochs,
}


# ------------------------------------------------------------------------------ main
def start_solo(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    address = f"127.0.0.1:{free_port()}"
    log = open(tmp / "solo.log", "ab")  # noqa: SIM115 - kept open for the child's life
    env = dict(os.environ, PYTHONUNBUFFERED="1", HELIOS_HTTP="off")
    env.pop("HELIOS_CLUSTER_SECRET", None)
    proc = subprocess.Popen([*HELIOS, "solo", "--listen", address, "--state-dir",
                             str(tmp / "state"), "--runtime", "process"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = subprocess.run([*HELIOS, "job", "ls", "--conductor", address, "--json"],
                           capture_output=True, text=True, timeout=30)
        if r.returncode == 0:
            return proc, address
        time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"solo did not start; see {tmp / 'solo.log'}")


def deploy(address: str, tmp: Path) -> None:
    for i in range(3):
        f = tmp / f"job{i}.json"
        f.write_text(json.dumps({"name": f"bench-{i}", "command": ["sleep", "600"],
                                 "grace": 0, "resources": {"cpus": 0.01}}))
        subprocess.run([*HELIOS, "job", "run", str(f), "--conductor", address],
                       check=True, capture_output=True, timeout=60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--only", action="append", help="run only these attacks")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hostile-bench-") as d:
        tmp = Path(d)
        proc, address = start_solo(tmp)
        try:
            deploy(address, tmp)
            probe = Probe(address)
            probe.start()
            time.sleep(1.0)  # warm up
            t0 = time.monotonic()
            time.sleep(args.seconds)
            base, base_err = probe.between(t0, time.monotonic())
            base_p99 = pct(base, 99)
            print(f"helios solo at {address} (pid {proc.pid}), no cluster secret, "
                  f"{args.connections} connections in the connection attacks")
            print(f"quiet baseline: {len(base)} job_ls asks, p50 {pct(base, 50) * 1e3:.2f} ms,"
                  f" p99 {base_p99 * 1e3:.2f} ms, {base_err} errors\n")
            print(f"{'attack':<17} {'p50 ms':>8} {'p99 ms':>8} {'p99/base':>9} "
                  f"{'rss+ MiB':>9} {'alive':>6} {'errors':>7}  what")
            for name, attack in ATTACKS.items():
                if args.only and name not in args.only:
                    continue
                rss0 = attacks.rss_bytes(proc.pid)
                peak = rss0
                done = threading.Event()
                what: list[str] = []

                def run(attack: Any = attack, what: list[str] = what,
                        done: threading.Event = done) -> None:
                    try:
                        what.append(attack(address, args.seconds, args.connections))
                    except Exception as e:  # the attack's own failure is a figure too
                        what.append(f"attack failed: {type(e).__name__}: {e}")
                    finally:
                        done.set()

                start = time.monotonic()
                threading.Thread(target=run, daemon=True).start()
                while not done.wait(0.1):
                    with contextlib.suppress(LookupError, OSError):
                        peak = max(peak, attacks.rss_bytes(proc.pid))
                lat, errs = probe.between(start, time.monotonic())
                alive = proc.poll() is None
                p99 = pct(lat, 99)
                print(f"{name:<17} {pct(lat, 50) * 1e3:8.2f} {p99 * 1e3:8.2f} "
                      f"{p99 / base_p99:8.2f}x {(peak - rss0) / 2**20:9.1f} "
                      f"{'yes' if alive else 'NO':>6} {errs:7d}  {what[0] if what else ''}")
                if not alive:
                    break
                time.sleep(1.0)  # let the daemon settle between attacks
            probe.stop()
            print(f"\ndaemon RSS at the end: {attacks.rss_bytes(proc.pid) / 2**20:.1f} MiB"
                  if proc.poll() is None else "\ndaemon DIED")
            print("baseline = the same run's quiet phase: the same probe, no attack")
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    main()
