"""`helios`: the command line (docs/cli.md). A package that only parses and renders:
talking to the cluster is `helios.client`, and the conductor decides.

- `common`: the typer apps, the common options, logging, `call`;
- `render`: tables, JSON, formatting;
- `jobs`: `helios job ...`;
- `cluster`: `nodes`, `node rm`, `endpoints`, `leader`, `events`, `audit`;
- `access`: `tls ...`, `acl ...`;
- `daemons`: `conductor`, `node`, `solo`;
- `fleet`: `node drain`, `node eligibility`, `rebalance`;
- `secrets`: `secret set/ls/rm/keygen/rewrap`;
- `entry`: `main`, which turns every failure into one line.

Output: rich tables for people; with `--json`, exactly one JSON document in the shapes of
docs/json.md. Errors: one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

# importing a command module adds its commands to `app`, in the order `--help` lists them
from helios.cli import access, cluster, daemons, fleet, jobs, secrets  # noqa: F401
from helios.cli.common import CLIError, app
from helios.cli.entry import describe_error, main
from helios.cli.jobs import logs_problem
from helios.client import Client, split_zk

__all__ = ["CLIError", "Client", "app", "describe_error", "logs_problem", "main", "split_zk"]
