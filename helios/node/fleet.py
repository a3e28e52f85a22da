"""Many simulated node daemons in one process, for scale tests and `bench/fleet_bench.py`.

Each node is a complete `run_node`: its own actor system on its own loopback port, its
own ZooKeeper session (membership, desired state, statuses), its own state directory,
and the `sim` runtime (no container, no process). Only the machine is simulated, so the
conductor and ZooKeeper see exactly the traffic of that many real machines.

    python -m helios.node.fleet --zk 127.0.0.1:2181/helios --count 200 --prefix sim-a \\
        --state-dir /tmp/fleet-a --cpus 4 --memory 8G

Why a process per a few hundred nodes rather than one for all: each ZooKeeper session
brings kazoo's three threads, and one trio loop shares one core; the benchmark spreads
nodes over a few processes. Nodes start a few at a time (`--start-rate` per second) so a
thousand sessions do not open at the same instant.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from helios.config import parse_labels, zk_store_url
from helios.node.daemon import run_node

log = logging.getLogger(__name__)

__all__ = ["main", "run_fleet"]


async def run_fleet(*, store_url: str, count: int, prefix: str, state_dir: str | os.PathLike[str],
                    cpus: float = 4.0, memory: str = "8G", labels: dict[str, str] | None = None,
                    session_timeout: float = 10.0, start_rate: float = 50.0,
                    first: int = 0,
                    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
                    ) -> None:
    """Run `count` sim nodes named `<prefix>-<i>` (i from `first`) until cancelled.
    `task_status.started()` receives their names once every daemon has started."""
    root = Path(state_dir)
    names = [f"{prefix}-{i:04d}" for i in range(first, first + count)]
    async with trio.open_nursery() as nursery:
        for i, name in enumerate(names):
            await nursery.start(functools.partial(
                run_node, name=name, state_dir=str(root / name), store_url=store_url,
                cpus=cpus, memory=memory, labels=dict(labels or {}), runtime="sim",
                session_timeout=session_timeout))
            if start_rate > 0 and i + 1 < len(names):
                await trio.sleep(1.0 / start_rate)
        log.info("fleet %s: %d sim nodes started", prefix, len(names))
        task_status.started(names)


async def _until_signalled(fn: Callable[[], Awaitable[None]]) -> None:
    """Run `fn` until SIGTERM or SIGINT, then cancel it: every node leaves cleanly (its
    presence removed at once instead of after the session timeout)."""
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            nursery.start_soon(fn)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m helios.node.fleet",
                                description="Run many sim node daemons in one process.")
    p.add_argument("--zk", required=True, help="ZooKeeper hosts[/root]")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--state-dir", required=True)
    p.add_argument("--cpus", type=float, default=4.0)
    p.add_argument("--memory", default="8G")
    p.add_argument("--label", action="append", default=[], metavar="k=v")
    p.add_argument("--session-timeout", type=float, default=10.0)
    p.add_argument("--start-rate", type=float, default=50.0)
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    try:
        labels = parse_labels(args.label)
    except ValueError as e:
        p.error(str(e))
    try:
        trio.run(_until_signalled, lambda: run_fleet(
            store_url=zk_store_url(args.zk), count=args.count, prefix=args.prefix,
            first=args.first, state_dir=args.state_dir, cpus=args.cpus, memory=args.memory,
            labels=labels, session_timeout=args.session_timeout,
            start_rate=args.start_rate))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
