"""`helios job ...`: create, inspect, follow and stop jobs (docs/cli.md). Parsing and
rendering only; the conductor decides.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import trio
import typer

from helios.cli.common import CLIError, ConductorOpt, JsonOpt, ZkOpt, call, job_app
from helios.cli.render import console, fmt_ports, fmt_when, print_json, short_id, table
from helios.client import Client, run_client
from helios.outcome import PLACEMENT_GRACE, judge, placement_warning


@job_app.command("run")
def job_run(file: Path = typer.Argument(..., help="Job file (YAML or JSON)."),
            wait: bool = typer.Option(False, "--wait", help="Return once it runs "
                                      "(service) or is done (batch)."),
            timeout: float = typer.Option(300.0, "--timeout", help="Bound for --wait, "
                                          "seconds."),
            as_json: bool = JsonOpt, zk: str | None = ZkOpt,
            conductor: str | None = ConductorOpt) -> None:
    """Create or update a job from FILE and deploy it. Warns on stderr at once when a
    task fits on no node (the job stays registered); with --wait, exits 2 unless the
    version runs healthy (service) or succeeded (batch)."""
    spec = _load_job_file(file)

    _submit(zk, conductor, "job_run", (spec.to_dict(),), spec.name, spec.kind, wait,
            timeout, as_json)


def _submit(zk: str | None, conductor: str | None, method: str, args: tuple[Any, ...],
            name: str, kind: str | None, wait: bool, timeout: float, as_json: bool) -> None:
    """Send a new version (`job run`, `job scale`, `job revert`), warn at once about
    tasks that fit nowhere, and with `wait` follow it to its outcome."""
    async def body(client: Client) -> dict[str, Any]:
        job_kind = kind or (await client.call("job_inspect", name))["spec"]["kind"]
        out = await client.call(method, *args)
        if not as_json:
            what = "updated to" if out["version"] > 1 and out["changed"] else \
                "created as" if out["changed"] else "unchanged at"
            console().print(f"job {out['name']} {what} version {out['version']}")
        warning = placement_warning(name, out.get("unplaced") or [],
                                    out.get("failures") or [])
        if warning is not None:  # the job stays registered, as in Nomad
            sys.stderr.write(f"warning: {warning}\n")
        if wait:
            out["status"] = await _wait(client, name, job_kind, out["version"], timeout,
                                        quiet=as_json)
        return out

    out = run_client(zk, conductor, body)
    if as_json:
        print_json(out)
    _raise_outcome(out)


WaitOpt = typer.Option(False, "--wait", help="Return once the version runs healthy "
                       "(service) or is done (batch); exit 2 if it failed.")
TimeoutOpt = typer.Option(300.0, "--timeout", help="Bound for --wait, seconds.")


@job_app.command("scale")
def job_scale(name: str, count: int = typer.Argument(..., min=0), wait: bool = WaitOpt,
              timeout: float = TimeoutOpt, as_json: bool = JsonOpt,
              zk: str | None = ZkOpt, conductor: str | None = ConductorOpt) -> None:
    """Set the job's count, as a new version (running tasks are kept)."""
    _submit(zk, conductor, "job_scale", (name, count), name, None, wait, timeout, as_json)


@job_app.command("revert")
def job_revert(name: str, version: int = typer.Argument(..., min=1), wait: bool = WaitOpt,
               timeout: float = TimeoutOpt, as_json: bool = JsonOpt,
               zk: str | None = ZkOpt, conductor: str | None = ConductorOpt) -> None:
    """Submit a kept version's spec again, as a new version rolled out like any update
    (see `helios job versions`)."""
    _submit(zk, conductor, "job_revert", (name, version), name, None, wait, timeout,
            as_json)


@job_app.command("versions")
def job_versions(name: str, as_json: bool = JsonOpt, zk: str | None = ZkOpt,
                 conductor: str | None = ConductorOpt) -> None:
    """The job's kept versions, newest first, and what each changed."""
    rows = call(zk, conductor, "job_versions", name)
    if as_json:
        print_json(rows)
        return
    table(None, ["VERSION", "SUBMITTED", "CURRENT", "STABLE", "CHANGES"],
           [[r["version"], fmt_when(r.get("submitted")), "yes" if r["current"] else "",
             "failed" if r.get("failed") else "yes" if r["stable"] else "",
             ", ".join(r["changes"])] for r in rows])


@job_app.command("inspect")
def job_inspect(name: str, as_json: bool = JsonOpt, zk: str | None = ZkOpt,
                conductor: str | None = ConductorOpt) -> None:
    """The job's stored spec (the current version, as Helios normalised it)."""
    out = call(zk, conductor, "job_inspect", name)
    if as_json:
        print_json(out)
        return
    import yaml

    sys.stdout.write(f"# job {out['name']}, version {out['version']}\n")
    sys.stdout.write(yaml.safe_dump(out["spec"], sort_keys=False))


def _load_job_file(file: Path) -> Any:
    """The validated job file, or a CLIError naming every problem."""
    from helios.spec import SpecError, load_file

    try:
        return load_file(str(file))
    except SpecError as e:
        n = len(e.problems)
        raise CLIError(f"{file}: refused, {n} problem{'s' if n != 1 else ''}: "
                       + "; ".join(str(p) for p in e.problems)) from None


#: exit status of `--wait` when the job was accepted but did not reach its goal (a
#: failed or rolled-back rollout, a task that fits nowhere or failed), as `nomad job run`
WAIT_FAILED = 2


def _raise_outcome(out: dict[str, Any]) -> None:
    """After the JSON (if any) is printed: a `--wait` that ended in failure exits
    WAIT_FAILED with its one-line reason."""
    error = out.get("status", {}).get("error")
    if error:
        raise CLIError(error, code=WAIT_FAILED)


async def _wait(client: Client, name: str, kind: str, version: int, timeout: float,
                quiet: bool = False) -> dict[str, Any]:
    """Poll `job_status` until version ``version`` runs (service) or finished (batch),
    or failed (`outcome.judge`); a failure's reason is the returned doc's `error`.
    A live display on a terminal, a plain line per change when stderr is piped."""
    from helios.progress import WaitProgress

    deadline = time.monotonic() + timeout
    doc: dict[str, Any] = {}
    unplaced_since: float | None = None
    with WaitProgress(console(stderr=True), kind, quiet=quiet) as progress:
        while True:
            doc = await client.call("job_status", name)
            line = progress.update(doc)
            verdict = judge(doc, kind, version)
            # a task that fits nowhere: given PLACEMENT_GRACE (nodes may be joining)
            unplaced_since = ((unplaced_since or time.monotonic()) if verdict.transient
                              else None)
            if verdict.error is not None:
                if (unplaced_since is None
                        or time.monotonic() - unplaced_since > PLACEMENT_GRACE):
                    return {**doc, "error": verdict.error}
            elif verdict.done:
                break
            if time.monotonic() > deadline:
                raise CLIError(f"timed out after {timeout:g}s waiting for {line}",
                               code=WAIT_FAILED)
            await trio.sleep(0.25)
    if not quiet:
        tasks = doc.get("tasks", [])
        ok = sum(1 for t in tasks if t["state"] in ("running", "exited"))
        console().print(f"{name}: {doc.get('status')} ({ok} of {len(tasks)} tasks "
                         f"{'done' if kind == 'batch' else 'running'})")
    return doc


@job_app.command("ls")
def job_ls(as_json: bool = JsonOpt, zk: str | None = ZkOpt,
           conductor: str | None = ConductorOpt) -> None:
    """Jobs with kind, count, running tasks."""
    jobs = call(zk, conductor, "job_ls")
    if as_json:
        print_json(jobs)
        return
    table(None, ["NAME", "KIND", "COUNT", "RUNNING", "VERSION", "STATUS"],
           [[j["name"], j["kind"], j["count"], j["running"], j.get("version"),
             j.get("status")] for j in jobs])


@job_app.command("status")
def job_status(name: str, as_json: bool = JsonOpt, zk: str | None = ZkOpt,
               conductor: str | None = ConductorOpt) -> None:
    """The job's tasks: id, node, state, ports, health."""
    doc = call(zk, conductor, "job_status", name)
    if as_json:
        print_json(doc)
        return
    console().print(f"[bold]{doc['name']}[/bold] ({doc['kind']}, version "
                     f"{doc['version']}): {doc.get('status', '')}")
    table(None, ["TASK", "NODE", "STATE", "HEALTHY", "PORTS", "CONTAINER"],
           [[t["id"], t["node"], t["state"],
             "-" if t.get("healthy") is None else ("yes" if t["healthy"] else "no"),
             fmt_ports(t.get("ports")), short_id(t.get("container"))]
            for t in doc["tasks"]])
    ro = doc.get("rollout")
    if ro:
        console().print(f"rollout v{ro['version']}: {ro['state']}, {ro['updated']} of "
                         f"{ro['total']} updated, {ro['old']} old task(s) left "
                         f"(parallel {ro['parallel']})")
        if ro.get("failed_version") is not None and ro.get("failure"):
            console().print(f"  rollout of v{ro['failed_version']} failed: {ro['failure']}",
                             markup=False)
        for st in ro.get("steps") or []:
            console().print(f"  slot {st['index']}: {st['action']} "
                             f"{st.get('old') or '-'} -> {st.get('new') or '-'}")
    if "runs" in doc:
        runs = doc["runs"]
        console().print(f"runs: {len(runs)}" + (", newest last:" if runs else ""))
        for r in runs[-10:]:
            console().print(f"  {r['name']}  {r['status']}  {fmt_when(r.get('created'))}",
                             markup=False)
    if doc.get("kind") == "cron":
        console().print(f"next launch: {doc.get('next_launch') or '-'} (UTC)")
    waits = doc.get("reschedule") or []
    for w in waits:
        console().print(f"slot {w['index']} waits: {w['reason']}", markup=False)
    waiting = {w["index"] for w in waits}
    for p in doc.get("pending") or []:
        if p.get("kind") != "reschedule" or p["index"] not in waiting:
            console().print(f"pending slot {p['index']}: {p['reason']}", markup=False)


@job_app.command("plan")
def job_plan(file: Path = typer.Argument(..., help="Job file (YAML or JSON)."),
             as_json: bool = JsonOpt, zk: str | None = ZkOpt,
             conductor: str | None = ConductorOpt) -> None:
    """What `job run FILE` would change and where it would place tasks; applies nothing.
    Exits 2 when a task would fit on no node (as `nomad job plan`)."""
    spec = _load_job_file(file)
    out = call(zk, conductor, "job_plan", spec.to_dict())
    if as_json:
        print_json(out)
    else:
        head = (f"job {out['name']}: would become version {out['version']}"
                if out.get("changed") else f"job {out['name']}: no changes")
        if out.get("changes"):
            head += f" (changes: {', '.join(out['changes'])})"
        console().print(head, markup=False)
        for line in out.get("plan") or []:
            if line != "no changes" and not line.startswith("job "):
                console().print(line, markup=False)
    if out.get("unplaced") or out.get("failures"):
        raise typer.Exit(WAIT_FAILED)


@job_app.command("stop")
def job_stop(name: str, as_json: bool = JsonOpt, zk: str | None = ZkOpt,
             conductor: str | None = ConductorOpt) -> None:
    """Stop all its tasks; the job stays defined."""
    out = call(zk, conductor, "job_stop", name)
    print_json(out) if as_json else console().print(f"job {name} stopping")


@job_app.command("rm")
def job_rm(name: str, as_json: bool = JsonOpt, zk: str | None = ZkOpt,
           conductor: str | None = ConductorOpt) -> None:
    """Stop and delete it."""
    out = call(zk, conductor, "job_rm", name)
    runs = out.get("runs") or []
    print_json(out) if as_json else console().print(
        f"job {name} removed" + (f"; its {len(runs)} run(s) stop and are removed once "
                                 "finished" if runs else ""))


@job_app.command("history")
def job_history(name: str, as_json: bool = JsonOpt, zk: str | None = ZkOpt,
                conductor: str | None = ConductorOpt) -> None:
    """Task events, newest last."""
    events = call(zk, conductor, "job_history", name)
    if as_json:
        print_json(events)
        return
    table(None, ["TIME", "TASK", "NODE", "EVENT", "REASON"],
           [[fmt_when(e.get("time")), e.get("task"), e.get("node"), e.get("state"),
             e.get("reason")] for e in events])


@job_app.command("logs")
def job_logs(name: str, task: str | None = typer.Option(None, "--task", metavar="ID"),
             follow: bool = typer.Option(False, "--follow", "-f"),
             tail: int | None = typer.Option(None, "--tail", metavar="N"),
             zk: str | None = ZkOpt, conductor: str | None = ConductorOpt) -> None:
    """Container output. Tasks whose logs cannot be read (node down, container gone)
    are named on stderr, and then the exit status is 1: a partial answer is never
    passed off as the whole."""
    warned: set[tuple[str, str]] = set()

    async def body(client: Client) -> str | None:
        cursor: Any = None
        first = True
        while True:
            out = await client.call("job_logs", name, task=task, since=cursor,
                                    tail=tail if first else None)
            first = False
            for line in out.get("lines") or []:
                sys.stdout.write(line if line.endswith("\n") else line + "\n")
            sys.stdout.flush()
            if out.get("cursor") is not None:
                cursor = out["cursor"]
            problem = logs_problem(name, out)
            if not follow:
                return problem
            for m in out.get("missing") or []:  # following: say it once per cause
                if (m["task"], m["reason"]) not in warned:
                    warned.add((m["task"], m["reason"]))
                    sys.stderr.write(f"warning: no logs from {m['task']}: {m['reason']}\n")
            await trio.sleep(1.0)

    problem = run_client(zk, conductor, body)
    if problem:
        raise CLIError(problem)


def logs_problem(name: str, out: dict[str, Any]) -> str | None:
    """Why a `job logs` answer is not the whole output, in one line, or None."""
    missing = out.get("missing") or []
    total = out.get("tasks")
    if missing:
        first = missing[0]
        return (f"logs of job {name} incomplete: {len(missing)} of {total or len(missing)} "
                f"task(s) left out ({first['task']}: {first['reason']})")
    if total == 0:
        return (f"job {name} has no tasks, so no logs (stopped or finished tasks are "
                "forgotten with their containers)")
    return None


@job_app.command("dispatch")
def job_dispatch(name: str,
                 payload: str | None = typer.Option(None, "--payload", metavar="JSON"),
                 key: str | None = typer.Option(None, "--idempotency-key", metavar="K"),
                 wait: bool = typer.Option(False, "--wait", help="Return once the run is "
                                           "done; exit 2 if it failed."),
                 timeout: float = typer.Option(300.0, "--timeout", help="Bound for --wait, "
                                               "seconds."),
                 as_json: bool = JsonOpt, zk: str | None = ZkOpt,
                 conductor: str | None = ConductorOpt) -> None:
    """Run a parameterised job once. The payload is text (JSON or not), passed as is."""

    async def body(client: Client) -> dict[str, Any]:
        out = await client.call("job_dispatch", name, payload=payload,
                                idempotency_key=key)
        if not as_json:
            what = "dispatched" if out.get("created") else "already dispatched"
            console().print(f"{what}: {out.get('run')}")
        if wait:
            out["status"] = await _wait(client, out["run"], "batch", 1, timeout,
                                        quiet=as_json)
        return out

    out = run_client(zk, conductor, body)
    if as_json:
        print_json(out)
    _raise_outcome(out)
