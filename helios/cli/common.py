"""What every command group of the CLI shares: the typer apps, the common options
(`--zk`, `--conductor`, `--json`), the options any command takes anywhere on its line
(`--tls-cert`, `--tls-key`, `--tls-ca`, `--token-file`), logging, and `call`.

The command modules (`jobs`, `cluster`, `fleet`, `access`, `daemons`) add their commands
to these apps when `helios.cli` imports them.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import typer

from helios import protocol
from helios.client import ENV_CONDUCTOR, ENV_ZK, ClientError, run_client

#: the CLI's one error type: a failure printed as one line on stderr, `code` the exit
#: status (the client's own error, so a client failure and a refused flag read alike)
CLIError = ClientError

app = typer.Typer(name="helios", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False,
                  help="Run containers and jobs across a fleet of machines.")
job_app = typer.Typer(no_args_is_help=True, help="Create, inspect and stop jobs.")
app.add_typer(job_app, name="job")
# `helios node --zk HOSTS --name N ...` runs the daemon (the group's own callback, as
# before it was a group); `helios node rm NAME` is a client command.
node_app = typer.Typer(help="The node daemon of one machine; `helios node rm NAME` forgets "
                            "a machine that is gone for good.")
app.add_typer(node_app, name="node")

ZkOpt = typer.Option(None, "--zk", envvar=ENV_ZK, metavar="HOSTS",
                     help="ZooKeeper hosts\\[/root]: finds the leader conductor.")
ConductorOpt = typer.Option(None, "--conductor", envvar=ENV_CONDUCTOR, metavar="HOST:PORT",
                            help="A conductor's address (default 127.0.0.1:7070).")
JsonOpt = typer.Option(False, "--json", help="Print one JSON document.")


#: options every command takes, anywhere on its command line (docs/security.md);
#: `main` moves them to the environment variables they stand for
GLOBAL_OPTIONS = {"--tls-cert": protocol.ENV_TLS_CERT, "--tls-key": protocol.ENV_TLS_KEY,
                  "--tls-ca": protocol.ENV_TLS_CA, "--token-file": "HELIOS_TOKEN_FILE"}


def take_global_options(argv: list[str], environ: Any) -> list[str]:
    """Remove `--tls-cert F`, `--tls-key F`, `--tls-ca F` and `--token-file F` (or
    `--opt=F`) from `argv` and set the variables they stand for; `--token-file` wins
    over HELIOS_TOKEN."""
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        key, eq, value = arg.partition("=")
        if key in GLOBAL_OPTIONS and (eq or i + 1 < len(argv)):
            if not eq:
                value = argv[i + 1]
                i += 1
            if not value:
                raise CLIError(f"{key} needs a file", 2)
            environ[GLOBAL_OPTIONS[key]] = value
            if key == "--token-file":
                environ.pop("HELIOS_TOKEN", None)
        else:
            rest.append(arg)
        i += 1
    return rest


@app.callback()
def _root(verbose: bool = typer.Option(False, "-v", "--verbose",
                                       help="Log details to stderr."),
          tls_cert: Path | None = typer.Option(
              None, "--tls-cert", metavar="F",
              help="This process's certificate (or HELIOS_TLS_CERT); any command."),
          tls_key: Path | None = typer.Option(
              None, "--tls-key", metavar="F", help="Its key (or HELIOS_TLS_KEY)."),
          tls_ca: Path | None = typer.Option(
              None, "--tls-ca", metavar="F",
              help="The cluster's CA certificate (or HELIOS_TLS_CA)."),
          token_file: Path | None = typer.Option(
              None, "--token-file", metavar="F",
              help="A file holding the ACL token to send (or HELIOS_TOKEN); any "
                   "client command.")) -> None:
    # A client command says what went wrong in its own one-line error; the libraries'
    # log lines (a refused handshake, a retry) are details for -v. Daemons raise the level
    # to INFO when they start (see _daemon).
    setup_logging(logging.DEBUG if verbose or os.environ.get("HELIOS_DEBUG")
                   else logging.CRITICAL)


class _LogHandler(logging.StreamHandler):
    """The CLI's own stderr handler, told apart so that it is added once."""


def setup_logging(level: int) -> None:
    """Log to stderr at `level` (once per process, however often it is called)."""
    root = logging.getLogger()
    if not any(isinstance(h, _LogHandler) for h in root.handlers):
        handler = _LogHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(
            "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        root.addHandler(handler)
    root.setLevel(level)
    if level > logging.DEBUG:
        logging.getLogger("kazoo").setLevel(logging.ERROR)


def call(zk: str | None, conductor: str | None, method: str, *args: Any,
         **kwargs: Any) -> Any:
    """Ask the leader one thing (`Client.call`) from synchronous code."""
    return run_client(zk, conductor, lambda c: c.call(method, *args, **kwargs))


def node_group_where(ctx: typer.Context, zk: str | None,
                     conductor: str | None) -> tuple[str | None, str | None]:
    """Where a `helios node SUBCOMMAND` client finds the cluster: `--zk` or `--conductor`
    given before the subcommand (`helios node --zk H rm N`) are the group's options."""
    parent = ctx.parent.params if ctx.parent is not None else {}
    return zk or parent.get("zk"), conductor or parent.get("pin_conductor")
