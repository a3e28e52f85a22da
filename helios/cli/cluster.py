"""The cluster views of the CLI (docs/cli.md): `helios nodes`, `node rm`, `endpoints`,
`leader`, `events`, `audit`. Parsing and rendering only.
"""

from __future__ import annotations

import json
import sys
import time

import trio
import typer

from helios.cli.common import (
    CLIError,
    ConductorOpt,
    JsonOpt,
    ZkOpt,
    app,
    call,
    node_app,
    node_group_where,
)
from helios.cli.render import console, event_line, fmt_date, fmt_ports, fmt_size, print_json, table
from helios.client import Client, run_client


@app.command("nodes")
def nodes(as_json: bool = JsonOpt, zk: str | None = ZkOpt,
          conductor: str | None = ConductorOpt) -> None:
    """Nodes: name, up/down, address, resources free/total, labels, task count."""
    rows = call(zk, conductor, "nodes")
    if as_json:
        print_json(rows)
        return
    table(None, ["NAME", "STATUS", "ADDRESS", "CPUS FREE/TOTAL", "MEMORY FREE/TOTAL",
                  "LABELS", "TASKS"],
           [[n["name"], n["status"] + (" (draining)" if n.get("draining") else
                                       " (ineligible)" if n.get("eligible") is False else ""),
             n["address"], f"{n['cpus_free']:g}/{n['cpus']:g}",
             f"{fmt_size(n['memory_free'])}/{fmt_size(n['memory'])}",
             ",".join(f"{k}={v}" for k, v in sorted(n["labels"].items())), n["tasks"]]
            for n in rows])


@node_app.command("rm")
def node_rm(ctx: typer.Context,
            name: str = typer.Argument(..., help="The node to forget."),
            force: bool = typer.Option(False, "--force",
                                       help="Remove it even though its session is alive."),
            as_json: bool = JsonOpt, zk: str | None = ZkOpt,
            conductor: str | None = ConductorOpt) -> None:
    """Forget a machine that is gone for good.

    Deletes its record, assignments and statuses; its tasks are placed elsewhere.
    Refused while the node is up (its session is alive), unless --force; a daemon that
    still runs then stops its tasks and registers again, empty."""
    zk, conductor = node_group_where(ctx, zk, conductor)
    out = call(zk, conductor, "node_rm", name, force=force)
    if as_json:
        print_json(out)
        return
    moved = out.get("tasks", 0) - len(out.get("kept") or [])
    extra = f"; {moved} task(s) to place elsewhere" if moved else ""
    if out.get("kept"):
        extra += f"; {len(out['kept'])} finished batch task record(s) kept with their job"
    console().print(f"node {name} removed{' (it was up)' if out.get('was_up') else ''}"
                     f"{extra}")


@app.command("endpoints")
def endpoints(name: str, as_json: bool = JsonOpt, zk: str | None = ZkOpt,
              conductor: str | None = ConductorOpt) -> None:
    """The healthy endpoints of a service job."""
    rows = call(zk, conductor, "endpoints", name)
    if as_json:
        print_json(rows)
        return
    table(None, ["TASK", "NODE", "HOST", "PORTS"],
           [[e["task"], e["node"], e["host"], fmt_ports(e["ports"])] for e in rows])


@app.command("leader")
def leader(as_json: bool = JsonOpt, zk: str | None = ZkOpt,
           conductor: str | None = ConductorOpt) -> None:
    """Which conductor leads, and its epoch."""
    info = call(zk, conductor, "leader")
    if as_json:
        print_json(info)
    elif info.get("leader"):
        console().print(f"{info['name']} leads at {info['url']} (epoch {info['epoch']})")
    else:
        console().print(f"standby; leader: {info.get('url') or 'unknown'}")


@app.command("events")
def events_cmd(follow: bool = typer.Option(False, "--follow", "-f",
                                           help="Keep printing new events."),
               job: str | None = typer.Option(None, "--job", metavar="NAME",
                                              help="Only this job's events."),
               since: int | None = typer.Option(None, "--since", metavar="INDEX",
                                                help="Only events after INDEX (the last "
                                                     "index seen: resume there)."),
               as_json: bool = typer.Option(False, "--json",
                                            help="One JSON object per line."),
               zk: str | None = ZkOpt, conductor: str | None = ConductorOpt) -> None:
    """The cluster's events: tasks, nodes, rollouts, leadership; oldest first."""
    async def body(client: Client) -> None:
        after = since if since is not None else -1
        warned = False
        while True:
            out = await client.call("events", after=after, job=job, limit=1000)
            if out.get("truncated") and not warned:
                warned = True
                sys.stderr.write(f"warning: events after {after} were already trimmed "
                                 "from the log; showing what remains\n")
            for ev in out.get("events") or []:
                sys.stdout.write(json.dumps(ev) + "\n" if as_json else event_line(ev))
            sys.stdout.flush()
            moved = out.get("index", after) > after
            after = max(after, out.get("index", after))
            if not moved:
                if not follow:
                    return
                await trio.sleep(0.5)

    run_client(zk, conductor, body)


@app.command("audit")
def audit_cmd(since: str | None = typer.Option(None, "--since", metavar="DURATION",
                                               help="Only the last DURATION (1h, 30m)."),
              as_json: bool = JsonOpt, zk: str | None = ZkOpt,
              conductor: str | None = ConductorOpt) -> None:
    """Operator actions and refusals: who, what, when, allowed or refused."""
    from helios.units import UnitError, parse_duration

    after = None
    if since is not None:
        try:
            after = time.time() - parse_duration(since)
        except (UnitError, ValueError) as e:
            raise CLIError(f"--since: {e}") from None
    rows = call(zk, conductor, "audit", since=after)
    if as_json:
        print_json(rows)
        return
    for r in rows:  # one line each, whatever the terminal's width
        what = f"{r.get('action')} {r.get('target') or ''}".strip()
        why = f": {r.get('reason')}" if r.get("reason") else ""
        verdict = "allowed" if r.get("allowed") else "REFUSED"
        sys.stdout.write(f"{fmt_date(r.get('time'))}  {verdict}"
                         f"  {r.get('who')} ({r.get('role')}, {r.get('via')})  {what}{why}\n")
