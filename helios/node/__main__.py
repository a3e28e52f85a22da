"""`python -m helios.node`: the node daemon without the typer CLI (tests, debugging).

    python -m helios.node --zk 127.0.0.1:2181/helios --name n1 --state-dir /var/lib/helios

Flags mirror `helios node` (docs/cli.md), plus `--store URL` (any store URL),
`--port-range A-B` and `--container-label k=v` (extra labels on every container).
SIGTERM and SIGINT stop it cleanly; containers keep running.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

import trio

from helios.node.daemon import parse_labels, run_node, store_url_for
from helios.node.state import StateDirLocked


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m helios.node", description=__doc__.split("\n")[0])
    p.add_argument("--zk", help="ZooKeeper hosts, optionally with a root: h1:2181,h2:2181/helios")
    p.add_argument("--store", help="a store URL (zk://hosts/root or sqlite:///file.db)")
    p.add_argument("--name", required=True)
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--advertise", default=None)
    p.add_argument("--cpus", type=float, default=None)
    p.add_argument("--memory", default=None, help="bytes or a size such as 4G")
    p.add_argument("--label", action="append", default=[], help="k=v (repeatable)")
    p.add_argument("--runtime", default="docker", choices=("docker", "process", "auto"))
    p.add_argument("--state-dir", required=True)
    p.add_argument("--session-timeout", type=float, default=10.0)
    p.add_argument("--port-range", default="21000-21999")
    p.add_argument("--container-label", action="append", default=[])
    p.add_argument("--conductor", default=None, help="pin the conductor's host:port")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


async def amain(args: argparse.Namespace) -> None:
    lo, _, hi = args.port_range.partition("-")
    url = args.store or (store_url_for(args.zk) if args.zk else None)
    async with trio.open_nursery() as nursery:
        async def stop_on_signal() -> None:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    return

        nursery.start_soon(stop_on_signal)
        core = await nursery.start(lambda task_status: run_node(
            name=args.name, state_dir=args.state_dir, store_url=url, listen=args.listen,
            advertise=args.advertise, cpus=args.cpus, memory=args.memory,
            labels=parse_labels(args.label), runtime=args.runtime,
            session_timeout=args.session_timeout, port_range=(int(lo), int(hi or lo)),
            conductor=args.conductor, container_labels=parse_labels(args.container_label),
            task_status=task_status))
        print(f"helios node {args.name} ready at {core.url}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        trio.run(amain, args)
    except StateDirLocked as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
