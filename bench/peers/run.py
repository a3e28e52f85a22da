"""`actors` side by side with the actor libraries a Python user would pick instead.

    python bench/peers/run.py            # every peer that imports, one table
    python bench/peers/run.py --quick    # fewer messages (smoke test)
    python bench/peers/run.py --only actors,raw,pykka

Install the peers with `pip install -e '.[peers]'` (pykka, thespian, ray). The same
workloads run on each: local ask, cross-process ask at 1 and 64 outstanding, one-way tells,
fan-out to 1,000 actors, memory per idle actor, spawn rate; a raw trio socket (and bare
trio tasks) is the floor. Each peer runs in a process of its own, bounded by `--timeout`,
and is stopped by its PID (with everything it started) when it overruns. Ratios are
`actors` against each peer, oriented so that > 1 means `actors` is ahead.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from bench.peers._common import CROSS_PROCESS, WORKLOADS  # noqa: E402

PEERS = ["actors", "raw", "pykka", "thespian", "ray", "tractor"]


def run_peer(name: str, scale: float, timeout: float, python: str) -> dict[str, object]:
    """One peer in a process of its own; everything it started dies with its session."""
    proc = subprocess.Popen([python, os.path.abspath(__file__), "--peer", name,
                             "--scale", str(scale)], stdout=subprocess.PIPE,
                            start_new_session=True, cwd=ROOT,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})  # tractor on old trio
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return {"error": f"n/a: did not finish within {timeout:.0f}s"}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    lines = out.decode(errors="replace").strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": f"n/a: exited with {proc.returncode}"}
    return json.loads(lines[-1])


def show(value: object) -> str:
    if isinstance(value, list):
        value = value[0]
    if isinstance(value, str):
        return "n/a"
    assert isinstance(value, float | int)
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def number(value: object) -> float | None:
    if isinstance(value, list):
        value = value[0]
    return float(value) if isinstance(value, float | int) else None


def table(results: dict[str, dict[str, object]]) -> None:
    names = list(results)
    print(f"{'workload':44} {'unit':>8} " + " ".join(f"{n:>13}" for n in names))
    notes: list[str] = []
    for key, label, unit, _higher in WORKLOADS:
        cells = []
        for name in names:
            res = results[name]
            value = res.get(key, res.get("error", "n/a"))
            text = show(value)
            if isinstance(value, list) and len(value) > 1:
                notes.append(f"[{len(notes) + 1}] {name}, {label}: {value[1]}")
                text += f"[{len(notes)}]"
            elif isinstance(value, str):
                note = f"{name}: {value}"  # one line per reason, not per row
                if note not in notes:
                    notes.append(note)
            cells.append(f"{text:>13}")
        print(f"{label:44} {unit:>8} " + " ".join(cells))
    print()
    mine = results.get("actors", {})
    print("actors ahead by (> 1: actors better; * = cross-process):")
    for key, label, _unit, higher in WORKLOADS:
        a = number(mine.get(key))
        ratios = []
        for name in names:
            if name == "actors":
                continue
            b = number(results[name].get(key))
            if a is None or b is None or not a or not b:
                ratios.append(f"{name} n/a")
            else:
                ratios.append(f"{name} {a / b if higher else b / a:.2f}x")
        star = "*" if key in CROSS_PROCESS else " "
        print(f"  {star}{label:43} " + ", ".join(ratios))
    if notes:
        print()
        for line in notes:
            print(" ", line)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default=",".join(PEERS))
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per peer")
    ap.add_argument("--python", action="append", default=[], metavar="PEER=PYTHON",
                    help="run a peer under another interpreter (a venv where it installs)")
    ap.add_argument("--peer")
    ap.add_argument("--scale", type=float, default=1.0)
    args = ap.parse_args()
    if args.peer:  # inside the peer's own process
        module = importlib.import_module(f"bench.peers.{args.peer}_peer")
        print(json.dumps(module.measure(args.scale)))
        return
    pythons = dict(item.split("=", 1) for item in args.python)
    scale = 0.1 if args.quick else 1.0
    load = os.getloadavg()
    print(f"peers benchmark ({'quick' if args.quick else 'full'}), python "
          f"{sys.version.split()[0]}, {os.cpu_count()} cpus, load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start", flush=True)
    results: dict[str, dict[str, object]] = {}
    for name in args.only.split(","):
        t0 = time.monotonic()
        results[name] = run_peer(name, scale, args.timeout, pythons.get(name, sys.executable))
        print(f"  {name}: {time.monotonic() - t0:.0f}s", file=sys.stderr, flush=True)
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at end\n")
    table(results)


if __name__ == "__main__":
    main()
