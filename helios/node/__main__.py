"""`python -m helios.node`: the node daemon, as `helios node` (docs/cli.md).

    python -m helios.node --zk 127.0.0.1:2181/helios --name n1 --state-dir /var/lib/helios

The flags are those of `helios node`, defined once in `helios.cli.daemons`; this entry
adds `--print-ready` (a `helios node NAME ready at URL` line on stdout once it serves,
which the tests and benchmarks wait for). `helios node` also takes, hidden from its help,
`--store URL` (any store URL), `--conductor HOST:PORT` (pin the conductor) and
`--container-label k=v` (extra labels on every container). SIGTERM and SIGINT stop it
cleanly; containers keep running.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Run `helios node --print-ready ARGV` (errors: one line, as the CLI's)."""
    from helios.cli import main as cli_main

    cli_main(["node", "--print-ready", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
