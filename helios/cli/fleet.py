"""The fleet commands of the CLI (docs/cli.md): `helios node drain`, `helios node
eligibility`, `helios rebalance`. Parsing and rendering only; the conductor decides.
"""

from __future__ import annotations

import time
from typing import Any

import trio
import typer

from helios.cli.common import (
    CLIError,
    ConductorOpt,
    JsonOpt,
    ZkOpt,
    app,
    node_app,
    node_group_where,
)
from helios.cli.render import console, print_json, table
from helios.client import Client, run_client

#: how often `helios node drain` (without --no-wait) asks where the drain is
POLL = 0.5
#: how long past the batch deadline `helios node drain` waits before giving up
WAIT_MARGIN = 120.0


def _waiting_lines(report: dict[str, Any]) -> list[str]:
    return [f"{r['task']} ({r['job']}, {r['state']}): waiting for {r['waiting_for']}"
            for r in report.get("remaining", [])]


@node_app.command("drain")
def node_drain(ctx: typer.Context,
               name: str = typer.Argument(..., help="The node to empty."),
               deadline: str | None = typer.Option(
                   None, "--deadline", metavar="DURATION",
                   help="How long batch tasks may run before they are stopped and "
                        "run elsewhere (default 1h; a drain in progress keeps its "
                        "own unless this is given)."),
               no_wait: bool = typer.Option(False, "--no-wait",
                                            help="Start the drain and return at once."),
               timeout: float | None = typer.Option(
                   None, "--timeout", metavar="S",
                   help="Bound of the wait (default: the deadline plus 2 minutes)."),
               as_json: bool = JsonOpt, zk: str | None = ZkOpt,
               conductor: str | None = ConductorOpt) -> None:
    """Stop placing on NAME and move its tasks away under each job's update rules.

    Service tasks are replaced elsewhere first (healthy and registered before the old
    one stops), `update.parallel` at a time; batch tasks get until the deadline. Waits
    until the node is empty and says what it still waits for; the node then stays
    ineligible until `helios node eligibility NAME --enable`."""
    from helios.units import UnitError, parse_duration

    try:
        seconds = parse_duration(deadline) if deadline is not None else None
    except (UnitError, ValueError) as e:
        raise CLIError(f"--deadline: {e}") from None

    async def body(client: Client) -> dict[str, Any]:
        report = await client.call("node_drain", name, seconds)
        if no_wait or report.get("complete"):
            return report
        err = console(stderr=True)
        left = max(0.0, (report.get("deadline") or time.time()) - time.time())
        bound = timeout if timeout is not None else left + WAIT_MARGIN
        end = time.monotonic() + bound
        shown: list[str] = []
        while not report.get("complete"):
            lines = _waiting_lines(report)
            if lines != shown and not as_json:
                err.print(f"node {name}: {len(lines)} task(s) left")
                for line in lines:
                    err.print(f"  {line}")
                shown = lines
            if time.monotonic() > end:
                raise CLIError(f"node {name} is still draining after {bound:g}s; waiting "
                               f"for: {'; '.join(lines) or 'its record to settle'}")
            await trio.sleep(POLL)
            report = await client.call("node_drain_status", name)
        return report

    report = run_client(*node_group_where(ctx, zk, conductor), body)
    if as_json:
        print_json(report)
        return
    if report.get("complete"):
        console().print(f"node {name} drained: nothing runs there; it stays ineligible "
                         f"until `helios node eligibility {name} --enable`")
        return
    lines = _waiting_lines(report)
    console().print(f"node {name} draining: {len(lines)} task(s) left")
    for line in lines:
        console().print(f"  {line}")


@node_app.command("eligibility")
def node_eligibility(ctx: typer.Context,
                     name: str = typer.Argument(..., help="The node."),
                     enable: bool = typer.Option(False, "--enable",
                                                 help="Allow new placements."),
                     disable: bool = typer.Option(False, "--disable",
                                                  help="Stop new placements."),
                     as_json: bool = JsonOpt, zk: str | None = ZkOpt,
                     conductor: str | None = ConductorOpt) -> None:
    """Allow or stop new placements on NAME, moving nothing (`--enable` also ends a
    drain in progress; what already moved stays where it is)."""
    if enable == disable:
        raise CLIError("give exactly one of --enable and --disable", 2)
    report = run_client(*node_group_where(ctx, zk, conductor),
                        lambda c: c.call("node_drain", name, None, False, enable))
    if as_json:
        print_json(report)
        return
    console().print(f"node {name} is {'eligible' if report['eligible'] else 'ineligible'}"
                     " for new placements")


@app.command("rebalance")
def rebalance(dry_run: bool = typer.Option(False, "--dry-run",
                                           help="Print the plan only."),
              as_json: bool = JsonOpt, zk: str | None = ZkOpt,
              conductor: str | None = ConductorOpt) -> None:
    """Plan, and unless --dry-run carry out, moves that free whole nodes (defragment),
    under rolling-update rules."""
    plan = run_client(zk, conductor, lambda c: c.call("rebalance", dry_run))
    if as_json:
        print_json(plan)
        return
    moves = plan.get("moves", [])
    if not moves:
        console().print("nothing to rebalance: no node can be freed")
        return
    table(None, ["TASK", "JOB", "FROM", "TO"],
           [[m["task"], m["job"], m["from"], m["to"]] for m in moves])
    verb = "would free" if dry_run else "freeing"
    console().print(f"{verb} {len(plan['frees'])} node(s): {', '.join(plan['frees'])} "
                     f"({plan.get('gain', '')})")
