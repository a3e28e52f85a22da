"""Chaos soak: kill anything, at any time, and lose nothing (issue 18).

    python bench/chaos_soak.py --seed N --minutes M [--faults kill-node,stop-leader,...]
                               [--no-netns] [--keep DIR]
    python bench/chaos_soak.py --check HISTORY.jsonl     # judge a saved history again

Starts its own cluster (tests/chaos/cluster.py: a 3-server ZooKeeper ensemble on loopback
ports, 2 `helios conductor`, 3 `helios node` on a Docker daemon of the soak's own, each
node in a network namespace of its own), runs services with clients counting failed requests,
batch jobs, a per-second cron job and keyed dispatches, and injects seeded faults for M
minutes (tests/chaos/soak.py). At the end it prints faults by kind, recovery time p50/p99
per kind, failed requests per service, and the four figures whose target is 0: lost
tasks, duplicates after convergence, double cron fires, lost acknowledged writes. A
failing run prints its seed, every violated invariant and the fault history, and exits 1.
The history is saved as JSON lines (the path is printed) for `--check`.

Every fault kind is on by default, restarts of the Docker daemon and drains included: the
daemon restarted is the soak's own (a second `dockerd`, started and stopped by the soak),
never the machine's shared one. Needs root (network namespaces, iptables inside them, a
second dockerd); `--no-netns` runs without partitions.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.chaos.soak import (  # noqa: E402
    DEFAULT_FAULTS,
    FAULT_KINDS,
    NETNS_FAULTS,
    Soak,
    SoakConfig,
    load,
    report,
    save,
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--faults", default=",".join(DEFAULT_FAULTS),
                   help=f"comma-separated, of: {', '.join(FAULT_KINDS)}")
    p.add_argument("--no-netns", action="store_true",
                   help="no network namespaces (and so no partitions)")
    p.add_argument("--keep", type=Path, default=None,
                   help="work directory to keep (logs, history); default: a temp dir")
    p.add_argument("--check", type=Path, default=None,
                   help="judge a saved history instead of running a soak")
    args = p.parse_args(argv)

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kazoo").setLevel(logging.ERROR)  # reconnects are the point here
    if args.check:
        ok, text = report(load(args.check))
        print(text)
        return 0 if ok else 1

    faults = tuple(f for f in args.faults.split(",") if f)
    unknown = [f for f in faults if f not in FAULT_KINDS]
    if unknown:
        p.error(f"unknown faults: {unknown}")
    if args.no_netns:
        faults = tuple(f for f in faults if f not in NETNS_FAULTS)
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="helios-soak-"))
    cfg = SoakConfig(seed=args.seed, minutes=args.minutes, workdir=workdir, faults=faults,
                     netns=not args.no_netns)
    soak = Soak(cfg)
    path = workdir / "history.jsonl"
    try:
        history = soak.run()
    finally:
        save(soak.history, path)  # also when interrupted: judge it with --check
    ok, text = report(history)
    print(text)
    print(f"history: {path}" + ("" if ok or args.keep else " (logs kept in that directory)"))
    if ok and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
        print("(work directory removed; --keep DIR keeps it)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
