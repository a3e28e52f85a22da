"""`helios`: the command line (docs/cli.md).

Client commands talk to the leader conductor as an actor client: an actor system that does
not listen, a `lookup`-free `ask` on `tcp://HOST:PORT/conductor`. Where the cluster is:
`--zk HOSTS[/root]` (the leader's URL is read from ZooKeeper), `--conductor HOST:PORT`,
`HELIOS_ZK` / `HELIOS_CONDUCTOR`, else 127.0.0.1:7070 (`helios solo`). A standby answers
`NotLeader` with the leader's URL and the client asks there.

Output: rich tables for people; with `--json`, exactly one JSON document in the shapes of
docs/cli.md. Errors: one line on stderr and a non-zero exit, never a traceback (`main`
catches everything; `HELIOS_DEBUG=1` or `-v` logs the details).

Daemons: `helios conductor`, `helios node` and `helios solo` run until SIGINT/SIGTERM.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio
import typer

import actors
from helios import protocol
from helios.outcome import PLACEMENT_GRACE, judge, placement_warning

log = logging.getLogger("helios.cli")

ENV_ZK = "HELIOS_ZK"
ENV_CONDUCTOR = "HELIOS_CONDUCTOR"
#: how long a client keeps trying to find a leader (a failover takes a few seconds)
LEADER_WAIT = 20.0
#: how long a client retries a refused connection to a fixed address (a conductor or
#: `helios solo` that is still starting)
CONNECT_WAIT = float(os.environ.get("HELIOS_CONNECT_WAIT", "1.0"))


class CLIError(Exception):
    """A failure to report as one line on stderr; `code` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def one_line(text: str) -> str:
    """Collapse a multi-line message (e.g. a SpecError's problem list) to one line."""
    parts = [p.strip() for p in str(text).splitlines() if p.strip()]
    if len(parts) <= 1:
        return parts[0] if parts else ""
    head, rest = parts[0], parts[1:]
    return f"{head} " + "; ".join(rest) if head.endswith(":") else "; ".join(parts)


# ---------------------------------------------------------------------------- client


def split_zk(hosts: str) -> tuple[str, str]:
    """`h1:2181,h2:2181/root` -> (`h1:2181,h2:2181`, `/root`); root defaults to /helios."""
    hosts = hosts.removeprefix("zk://")
    h, sep, root = hosts.partition("/")
    return h, ("/" + root.strip("/")) if sep and root.strip("/") else "/helios"


class Client:
    """An actor client of the leader conductor; follows NotLeader and failovers."""

    def __init__(self, zk: str | None, conductor: str | None, timeout: float = 30.0,
                 token: str | None = None) -> None:
        """`token`: the ACL token to send (default: `--token-file`, HELIOS_TOKEN or
        HELIOS_TOKEN_FILE); TLS comes from HELIOS_TLS_CERT/KEY/CA."""
        self.zk = zk
        self.conductor = conductor
        self.timeout = timeout
        self.token = token
        self.system: actors.ActorSystem | None = None
        self.url: str | None = None
        self._stack = AsyncExitStack()
        self._store: Any = None

    async def __aenter__(self) -> Client:
        from helios.security.tokens import AclError, load_token

        try:
            options = protocol.network_options(
                role="cli", token=load_token() if self.token is None else self.token)
        except (ValueError, AclError) as e:
            raise CLIError(str(e), 2) from None
        self.system = await self._stack.enter_async_context(
            actors.open_system(name=f"helios-cli-{os.getpid()}", **options))
        self._verified: set[str] = set()
        return self

    async def _check_conductor(self, url: str) -> None:
        """With TLS, talk (and send a token) only to a process whose certificate says it
        is a conductor, whatever address it answers at."""
        assert self.system is not None
        if self.system.config.tls is None or url in self._verified:
            return
        peer = await self.system.peer(url)
        if peer.role != "conductor":
            raise CLIError(f"forbidden: {_addr(url)} is answered by {peer}, not by a "
                           "conductor; nothing was sent to it")
        self._verified.add(url)

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    @property
    def where(self) -> str:
        if self.zk:
            return f"ZooKeeper {self.zk}"
        return self.conductor or protocol.DEFAULT_CONDUCTOR

    async def _leader_from_zk(self) -> str | None:
        from helios.coordination import CorruptValue, Unavailable, open_zookeeper

        assert self.zk is not None
        if self._store is None:
            hosts, root = split_zk(self.zk)
            try:
                self._store = await open_zookeeper(hosts, root, session_timeout=10.0,
                                                   connect_timeout=5.0)
            except Unavailable as e:
                raise CLIError(f"cannot reach ZooKeeper at {self.zk}: {e}") from None
            self._stack.push_async_callback(self._store.aclose)
        try:
            entry = await self._store.get(protocol.LEADER_PATH)
        except (Unavailable, CorruptValue) as e:
            raise CLIError(f"cannot read the leader from ZooKeeper at {self.zk}: {e}") \
                from None
        if entry is None or not isinstance(entry.value, dict):
            return None
        url = entry.value.get("url")
        return url if isinstance(url, str) and url else None

    async def _resolve(self) -> str | None:
        if self.zk:
            return await self._leader_from_zk()
        address = self.conductor or protocol.DEFAULT_CONDUCTOR
        check_address(address, "--conductor")
        return protocol.conductor_url(address)

    async def call(self, method: str, *args: Any, timeout: float | None = None,
                   **kwargs: Any) -> Any:
        """Ask the leader; retry through NotLeader, restarts and failovers (bounded)."""
        assert self.system is not None
        start = time.monotonic()
        deadline = start + LEADER_WAIT
        last = ""
        delay = 0.1
        while True:
            if self.url is None:
                self.url = await self._resolve()
            url = self.url
            if url is not None:
                try:
                    await self._check_conductor(url)
                    return await self.system.ref(url).ask(
                        method, *args, timeout=timeout or self.timeout, **kwargs)
                except actors.RemoteError as e:
                    if e.type_name != "NotLeader":
                        raise CLIError(one_line(e.message or e.type_name)) from None
                    if e.message:
                        self.url = protocol.conductor_url(e.message)
                        last = f"{url} is a standby; the leader is {e.message}"
                        continue
                    last = f"{url} knows no leader yet"
                    self.url = None if self.zk else url
                except actors.ActorNotFound:
                    # restarting its front, or not a conductor at all (a node's address)
                    last = (f"no conductor at {_addr(url)} (something else listens there, "
                            "e.g. a node; give a conductor's --listen address)")
                    if not self.zk and time.monotonic() - start > CONNECT_WAIT:
                        raise CLIError(last) from None
                    self.url = None if self.zk else url
                except actors.ConnectionLost as e:
                    last = f"cannot reach the conductor at {_addr(url)}: {_reason(e)}"
                    if not self.zk and time.monotonic() - start > CONNECT_WAIT:
                        raise CLIError(last) from None
                    self.url = None if self.zk else url
                except actors.AskTimeout:
                    last = (f"the conductor at {_addr(url)} did not answer {method} "
                            f"within {timeout or self.timeout:g}s")
                    if self.zk and await self._leader_from_zk() not in (None, url):
                        self.url = None  # a new leader took over from a hung one
                        continue
                    raise CLIError(last) from None
            else:
                last = f"no leader registered in {self.where}"
            if time.monotonic() + delay > deadline:
                raise CLIError(last or f"no conductor answers at {self.where}")
            await trio.sleep(delay)
            delay = min(1.0, delay * 2)


def check_address(address: str, flag: str) -> None:
    """Refuse an address that is not HOST:PORT (or a tcp:// URL) in one line naming the
    flag and the fix, before anything tries to parse its port."""
    rest = address.split("://", 1)[-1].split("/", 1)[0]
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CLIError(f"{flag} {address!r} is not HOST:PORT (e.g. 127.0.0.1:7070)")


def _addr(url: str) -> str:
    return url.split("://", 1)[-1].rsplit("/", 1)[0]


def _reason(e: BaseException) -> str:
    text = str(e)
    if "Connection refused" in text or "Errno 111" in text or "all attempts" in text:
        return "connection refused (is `helios solo` or a conductor running there?)"
    if "during the handshake" in text and not os.environ.get(protocol.ENV_TLS_CERT):
        return (f"{text.split(': ', 1)[-1]} (does it require TLS? give --tls-cert, "
                "--tls-key and --tls-ca)")
    return text.split(": ", 1)[-1] if text.startswith("cannot connect") else text


def run_client(zk: str | None, conductor: str | None,
               body: Callable[[Client], Awaitable[Any]]) -> Any:
    """Run `body(client)` in trio and return its result."""
    async def main() -> Any:
        async with Client(zk, conductor) as client:
            return await body(client)

    return trio.run(main)


# ---------------------------------------------------------------------------- output


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def _table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.table import Table

    table = Table(title=title, box=None, header_style="bold", pad_edge=False)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*["" if v is None else str(v) for v in r])
    _console().print(table)


def _size(n: Any) -> str:
    from helios.units import format_size

    try:
        return format_size(int(n))
    except (TypeError, ValueError):
        return str(n)


def _ports(ports: Any) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((ports or {}).items()))


def _short_id(cid: Any) -> str:
    """Docker ids shortened as `docker ps` does; other names (process runtime) kept."""
    text = str(cid or "")
    return text[:12] if len(text) == 64 and all(c in "0123456789abcdef" for c in text) \
        else text


def _when(t: Any) -> str:
    try:
        return datetime.fromtimestamp(float(t), tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    except (TypeError, ValueError, OverflowError):
        return ""


# ---------------------------------------------------------------------------- app

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
    _setup_logging(logging.DEBUG if verbose or os.environ.get("HELIOS_DEBUG")
                   else logging.CRITICAL)


def _setup_logging(level: int) -> None:
    root = logging.getLogger()
    if not any(getattr(h, "_helios", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(
            "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        handler._helios = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    if level > logging.DEBUG:
        logging.getLogger("kazoo").setLevel(logging.ERROR)


def _call(zk: str | None, conductor: str | None, method: str, *args: Any,
          **kwargs: Any) -> Any:
    return run_client(zk, conductor, lambda c: c.call(method, *args, **kwargs))


# -- jobs ---------------------------------------------------------------------------


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
            _console().print(f"job {out['name']} {what} version {out['version']}")
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
    rows = _call(zk, conductor, "job_versions", name)
    if as_json:
        print_json(rows)
        return
    _table(None, ["VERSION", "SUBMITTED", "CURRENT", "STABLE", "CHANGES"],
           [[r["version"], _when(r.get("submitted")), "yes" if r["current"] else "",
             "failed" if r.get("failed") else "yes" if r["stable"] else "",
             ", ".join(r["changes"])] for r in rows])


@job_app.command("inspect")
def job_inspect(name: str, as_json: bool = JsonOpt, zk: str | None = ZkOpt,
                conductor: str | None = ConductorOpt) -> None:
    """The job's stored spec (the current version, as Helios normalised it)."""
    out = _call(zk, conductor, "job_inspect", name)
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
    with WaitProgress(_console(stderr=True), kind, quiet=quiet) as progress:
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
        _console().print(f"{name}: {doc.get('status')} ({ok} of {len(tasks)} tasks "
                         f"{'done' if kind == 'batch' else 'running'})")
    return doc


@job_app.command("ls")
def job_ls(as_json: bool = JsonOpt, zk: str | None = ZkOpt,
           conductor: str | None = ConductorOpt) -> None:
    """Jobs with kind, count, running tasks."""
    jobs = _call(zk, conductor, "job_ls")
    if as_json:
        print_json(jobs)
        return
    _table(None, ["NAME", "KIND", "COUNT", "RUNNING", "VERSION", "STATUS"],
           [[j["name"], j["kind"], j["count"], j["running"], j.get("version"),
             j.get("status")] for j in jobs])


@job_app.command("status")
def job_status(name: str, as_json: bool = JsonOpt, zk: str | None = ZkOpt,
               conductor: str | None = ConductorOpt) -> None:
    """The job's tasks: id, node, state, ports, health."""
    doc = _call(zk, conductor, "job_status", name)
    if as_json:
        print_json(doc)
        return
    _console().print(f"[bold]{doc['name']}[/bold] ({doc['kind']}, version "
                     f"{doc['version']}): {doc.get('status', '')}")
    _table(None, ["TASK", "NODE", "STATE", "HEALTHY", "PORTS", "CONTAINER"],
           [[t["id"], t["node"], t["state"],
             "-" if t.get("healthy") is None else ("yes" if t["healthy"] else "no"),
             _ports(t.get("ports")), _short_id(t.get("container"))]
            for t in doc["tasks"]])
    ro = doc.get("rollout")
    if ro:
        _console().print(f"rollout v{ro['version']}: {ro['state']}, {ro['updated']} of "
                         f"{ro['total']} updated, {ro['old']} old task(s) left "
                         f"(parallel {ro['parallel']})")
        if ro.get("failed_version") is not None and ro.get("failure"):
            _console().print(f"  rollout of v{ro['failed_version']} failed: {ro['failure']}",
                             markup=False)
        for st in ro.get("steps") or []:
            _console().print(f"  slot {st['index']}: {st['action']} "
                             f"{st.get('old') or '-'} -> {st.get('new') or '-'}")
    if "runs" in doc:
        runs = doc["runs"]
        _console().print(f"runs: {len(runs)}" + (", newest last:" if runs else ""))
        for r in runs[-10:]:
            _console().print(f"  {r['name']}  {r['status']}  {_when(r.get('created'))}",
                             markup=False)
    if doc.get("kind") == "cron":
        _console().print(f"next launch: {doc.get('next_launch') or '-'} (UTC)")
    waits = doc.get("reschedule") or []
    for w in waits:
        _console().print(f"slot {w['index']} waits: {w['reason']}", markup=False)
    waiting = {w["index"] for w in waits}
    for p in doc.get("pending") or []:
        if p.get("kind") != "reschedule" or p["index"] not in waiting:
            _console().print(f"pending slot {p['index']}: {p['reason']}", markup=False)


@job_app.command("plan")
def job_plan(file: Path = typer.Argument(..., help="Job file (YAML or JSON)."),
             as_json: bool = JsonOpt, zk: str | None = ZkOpt,
             conductor: str | None = ConductorOpt) -> None:
    """What `job run FILE` would change and where it would place tasks; applies nothing.
    Exits 2 when a task would fit on no node (as `nomad job plan`)."""
    spec = _load_job_file(file)
    out = _call(zk, conductor, "job_plan", spec.to_dict())
    if as_json:
        print_json(out)
    else:
        head = (f"job {out['name']}: would become version {out['version']}"
                if out.get("changed") else f"job {out['name']}: no changes")
        if out.get("changes"):
            head += f" (changes: {', '.join(out['changes'])})"
        _console().print(head, markup=False)
        for line in out.get("plan") or []:
            if line != "no changes" and not line.startswith("job "):
                _console().print(line, markup=False)
    if out.get("unplaced") or out.get("failures"):
        raise typer.Exit(WAIT_FAILED)


@job_app.command("stop")
def job_stop(name: str, as_json: bool = JsonOpt, zk: str | None = ZkOpt,
             conductor: str | None = ConductorOpt) -> None:
    """Stop all its tasks; the job stays defined."""
    out = _call(zk, conductor, "job_stop", name)
    print_json(out) if as_json else _console().print(f"job {name} stopping")


@job_app.command("rm")
def job_rm(name: str, as_json: bool = JsonOpt, zk: str | None = ZkOpt,
           conductor: str | None = ConductorOpt) -> None:
    """Stop and delete it."""
    out = _call(zk, conductor, "job_rm", name)
    runs = out.get("runs") or []
    print_json(out) if as_json else _console().print(
        f"job {name} removed" + (f"; its {len(runs)} run(s) stop and are removed once "
                                 "finished" if runs else ""))


@job_app.command("history")
def job_history(name: str, as_json: bool = JsonOpt, zk: str | None = ZkOpt,
                conductor: str | None = ConductorOpt) -> None:
    """Task events, newest last."""
    events = _call(zk, conductor, "job_history", name)
    if as_json:
        print_json(events)
        return
    _table(None, ["TIME", "TASK", "NODE", "EVENT", "REASON"],
           [[_when(e.get("time")), e.get("task"), e.get("node"), e.get("state"),
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
            _console().print(f"{what}: {out.get('run')}")
        if wait:
            out["status"] = await _wait(client, out["run"], "batch", 1, timeout,
                                        quiet=as_json)
        return out

    out = run_client(zk, conductor, body)
    if as_json:
        print_json(out)
    _raise_outcome(out)


# -- cluster ------------------------------------------------------------------------


@app.command("nodes")
def nodes(as_json: bool = JsonOpt, zk: str | None = ZkOpt,
          conductor: str | None = ConductorOpt) -> None:
    """Nodes: name, up/down, address, resources free/total, labels, task count."""
    rows = _call(zk, conductor, "nodes")
    if as_json:
        print_json(rows)
        return
    _table(None, ["NAME", "STATUS", "ADDRESS", "CPUS FREE/TOTAL", "MEMORY FREE/TOTAL",
                  "LABELS", "TASKS"],
           [[n["name"], n["status"] + (" (draining)" if n.get("draining") else
                                       " (ineligible)" if n.get("eligible") is False else ""),
             n["address"], f"{n['cpus_free']:g}/{n['cpus']:g}",
             f"{_size(n['memory_free'])}/{_size(n['memory'])}",
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
    parent = ctx.parent.params if ctx.parent is not None else {}
    zk = zk or parent.get("zk")
    out = _call(zk, conductor, "node_rm", name, force=force)
    if as_json:
        print_json(out)
        return
    moved = out.get("tasks", 0) - len(out.get("kept") or [])
    extra = f"; {moved} task(s) to place elsewhere" if moved else ""
    if out.get("kept"):
        extra += f"; {len(out['kept'])} finished batch task record(s) kept with their job"
    _console().print(f"node {name} removed{' (it was up)' if out.get('was_up') else ''}"
                     f"{extra}")


@app.command("endpoints")
def endpoints(name: str, as_json: bool = JsonOpt, zk: str | None = ZkOpt,
              conductor: str | None = ConductorOpt) -> None:
    """The healthy endpoints of a service job."""
    rows = _call(zk, conductor, "endpoints", name)
    if as_json:
        print_json(rows)
        return
    _table(None, ["TASK", "NODE", "HOST", "PORTS"],
           [[e["task"], e["node"], e["host"], _ports(e["ports"])] for e in rows])


@app.command("leader")
def leader(as_json: bool = JsonOpt, zk: str | None = ZkOpt,
           conductor: str | None = ConductorOpt) -> None:
    """Which conductor leads, and its epoch."""
    info = _call(zk, conductor, "leader")
    if as_json:
        print_json(info)
    elif info.get("leader"):
        _console().print(f"{info['name']} leads at {info['url']} (epoch {info['epoch']})")
    else:
        _console().print(f"standby; leader: {info.get('url') or 'unknown'}")


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
                sys.stdout.write(json.dumps(ev) + "\n" if as_json else _event_line(ev))
            sys.stdout.flush()
            moved = out.get("index", after) > after
            after = max(after, out.get("index", after))
            if not moved:
                if not follow:
                    return
                await trio.sleep(0.5)

    run_client(zk, conductor, body)


def _event_line(ev: dict[str, Any]) -> str:
    parts = [str(ev.get("index")), str(ev.get("time", ""))[11:23], str(ev.get("topic")),
             str(ev.get("type")), *(f"{k}={ev[k]}" for k in ("job", "task", "node")
                                    if ev.get(k))]
    detail = f": {ev['detail']}" if ev.get("detail") else ""
    return " ".join(parts) + detail + "\n"


# -- identity and access (docs/security.md) -------------------------------------------

tls_app = typer.Typer(no_args_is_help=True, help="The cluster's CA and certificates.")
tls_ca_app = typer.Typer(no_args_is_help=True, help="The cluster's certificate authority.")
tls_cert_app = typer.Typer(no_args_is_help=True, help="Certificates for daemons and people.")
tls_app.add_typer(tls_ca_app, name="ca")
tls_app.add_typer(tls_cert_app, name="cert")
app.add_typer(tls_app, name="tls")
acl_app = typer.Typer(no_args_is_help=True, help="ACL tokens for people and scripts.")
acl_token_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke tokens.")
acl_app.add_typer(acl_token_app, name="token")
app.add_typer(acl_app, name="acl")


@tls_ca_app.command("create")
def tls_ca_create(directory: Path = typer.Option(Path("."), "--dir", metavar="D",
                                                 help="Where to write the CA."),
                  days: int = typer.Option(5 * 365, "--days", metavar="N",
                                           help="Validity in days.")) -> None:
    """A cluster CA: D/helios-ca.pem and D/helios-ca-key.pem (0600)."""
    from helios.security.tls import TLSError, create_ca

    try:
        cert, key = create_ca(directory, days)
    except (TLSError, OSError) as e:
        raise CLIError(str(e)) from None
    print(f"==> CA certificate: {cert}\n==> CA key: {key} (0600; keep it offline: it "
          "makes every identity of the cluster)")


@tls_cert_app.command("create")
def tls_cert_create(role: str = typer.Option(..., "--role",
                                             help="conductor | node | cli"),
                    name: str = typer.Option(..., "--name", metavar="N",
                                             help="The name it proves (a node's --name)."),
                    ca_dir: Path = typer.Option(Path("."), "--ca-dir", metavar="D"),
                    out_dir: Path = typer.Option(Path("."), "--out-dir", metavar="O"),
                    host: list[str] | None = typer.Option(
                        None, "--host", metavar="H",
                        help="A host name or address it is reached at (repeatable)."),
                    days: int = typer.Option(365, "--days", metavar="N")) -> None:
    """O/<role>-<N>.pem and O/<role>-<N>-key.pem, signed by the CA in --ca-dir."""
    from helios.security.tls import TLSError, create_cert

    try:
        cert, key = create_cert(role, name, ca_dir=ca_dir, out_dir=out_dir,
                                hosts=list(host or []), days=days)
    except (TLSError, OSError) as e:
        raise CLIError(str(e)) from None
    print(f"==> {role} {name}: certificate {cert}, key {key}")


@acl_app.command("bootstrap")
def acl_bootstrap(as_json: bool = JsonOpt, zk: str | None = ZkOpt,
                  conductor: str | None = ConductorOpt) -> None:
    """Turn ACLs on (once per cluster) and print the first management token's secret."""
    out = _call(zk, conductor, "acl_bootstrap")
    if as_json:
        print_json(out)
        return
    print(f"ACLs are on. Management token {out['name']!r}:\nsecret: {out['secret']}\n"
          "It is shown once: keep it in a file only you can read, and pass --token-file "
          "FILE (or set HELIOS_TOKEN).")


@acl_token_app.command("create")
def acl_token_create(name: str = typer.Option(..., "--name", metavar="N"),
                     role: str = typer.Option(..., "--role",
                                              help="management | operator | reader"),
                     as_json: bool = JsonOpt, zk: str | None = ZkOpt,
                     conductor: str | None = ConductorOpt) -> None:
    """A token; its secret is printed once, only its hash is stored."""
    out = _call(zk, conductor, "acl_token_create", name, role)
    if as_json:
        print_json(out)
        return
    print(f"token {out['name']!r} ({out['role']}):\nsecret: {out['secret']}\n"
          "It is shown once.")


@acl_token_app.command("ls")
def acl_token_ls(as_json: bool = JsonOpt, zk: str | None = ZkOpt,
                 conductor: str | None = ConductorOpt) -> None:
    """Tokens: name, role, creation time (never their secrets)."""
    rows = _call(zk, conductor, "acl_token_ls")
    if as_json:
        print_json(rows)
        return
    _table(None, ["NAME", "ROLE", "CREATED"],
           [[t["name"], t["role"], _date(t.get("created"))] for t in rows])


@acl_token_app.command("rm")
def acl_token_rm(name: str = typer.Argument(..., help="The token to revoke."),
                 as_json: bool = JsonOpt, zk: str | None = ZkOpt,
                 conductor: str | None = ConductorOpt) -> None:
    """Revoke a token at once."""
    out = _call(zk, conductor, "acl_token_rm", name)
    print_json(out) if as_json else _console().print(f"token {name} revoked")


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
    rows = _call(zk, conductor, "audit", since=after)
    if as_json:
        print_json(rows)
        return
    for r in rows:  # one line each, whatever the terminal's width
        what = f"{r.get('action')} {r.get('target') or ''}".strip()
        why = f": {r.get('reason')}" if r.get("reason") else ""
        sys.stdout.write(f"{_date(r.get('time'))}  {'allowed' if r.get('allowed') else 'REFUSED'}"
                         f"  {r.get('who')} ({r.get('role')}, {r.get('via')})  {what}{why}\n")


def _date(t: Any) -> str:
    try:
        return datetime.fromtimestamp(float(t), tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError):
        return ""


# -- daemons ------------------------------------------------------------------------


def _daemon(fn: Callable[..., Awaitable[None]], **kwargs: Any) -> None:
    """Run a daemon coroutine until SIGINT/SIGTERM, logging at INFO."""
    if logging.getLogger().level > logging.INFO:
        logging.getLogger().setLevel(logging.INFO)
    # kazoo warns once per failed connect attempt; `coordination/reach.py` says it once
    # ("ZooKeeper unreachable at ..."), so its lines are for -v only
    logging.getLogger("kazoo").setLevel(
        logging.DEBUG if logging.getLogger().level <= logging.DEBUG else logging.ERROR)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            async def signals() -> None:
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as sigs:
                    async for sig in sigs:
                        log.info("received %s; stopping", signal.Signals(sig).name)
                        nursery.cancel_scope.cancel()
                        return

            nursery.start_soon(signals)
            await fn(**kwargs)
            nursery.cancel_scope.cancel()

    trio.run(main)


def _listen_opt(default: str) -> Any:
    return typer.Option(default, "--listen", metavar="H:P", help="Where to listen.")


def _gc_policy(keep_runs: int, run_retention: str, key_ttl: str) -> Any:
    from helios.conductor.gc import GCPolicy
    from helios.units import UnitError, parse_duration

    if keep_runs < 0:
        raise CLIError("--gc-keep-runs must be >= 0")
    durations = {}
    for flag, text in (("--gc-run-retention", run_retention), ("--gc-key-ttl", key_ttl)):
        try:
            durations[flag] = parse_duration(text)
        except (UnitError, ValueError) as e:
            raise CLIError(f"{flag}: {e}") from None
    return GCPolicy(keep_runs=keep_runs, run_retention=durations["--gc-run-retention"],
                    key_ttl=durations["--gc-key-ttl"])


KeepRunsOpt = typer.Option(10, "--gc-keep-runs", metavar="N",
                           help="Finished runs kept per cron or parameterized job (newest).")
RunRetentionOpt = typer.Option("24h", "--gc-run-retention", metavar="DURATION",
                               help="Finished runs older than this are removed.")
KeyTtlOpt = typer.Option("24h", "--gc-key-ttl", metavar="DURATION",
                         help="Dispatch idempotency keys are kept this long, and as long "
                              "as their run exists; a retry after both starts a new run.")


HttpOpt = typer.Option("127.0.0.1:7071", "--http", envvar="HELIOS_HTTP", metavar="H:P",
                       help="Where the HTTP API, /metrics and the dashboard listen, or off.")
InsecureOpt = typer.Option(False, "--insecure",
                           help="Allow listening (--listen, --http, --metrics) on a "
                                "non-loopback address without TLS: only on a network you "
                                "trust entirely.")


def _tls_configured() -> bool:
    return bool(os.environ.get(protocol.ENV_TLS_CERT))


def _bind(text: str | None, insecure: bool, flag: str) -> str | None:
    from helios.http import check_bind

    try:
        return check_bind(text, insecure, flag, tls=_tls_configured())
    except ValueError as e:
        raise CLIError(str(e), 2) from None


def _check_network(role: str, name: str | None = None) -> None:
    """The TLS files and cluster secret, checked before a daemon starts (one line)."""
    try:
        protocol.network_options(role=role, name=name)
    except ValueError as e:
        raise CLIError(str(e), 2) from None


def _check_listen(listen: str | None, insecure: bool) -> None:
    """docs/security.md: no plaintext actor listener beyond loopback without
    --insecure (anyone who reaches it could act as a daemon)."""
    from helios.http import is_loopback

    if not listen or _tls_configured() or insecure:
        return
    if not is_loopback(listen if listen.rpartition(":")[0] else f"127.0.0.1{listen}"):
        raise CLIError(f"--listen {listen}: refusing to listen beyond this machine without "
                       "TLS (anyone who reaches the port could act as a daemon); configure "
                       "TLS (--tls-cert/--tls-key/--tls-ca, see `helios tls`), use a "
                       "loopback address, or give --insecure on a network you trust", 2)


@app.command("conductor")
def conductor_cmd(zk: str = typer.Option(..., "--zk", envvar=ENV_ZK, metavar="HOSTS"),
                  listen: str = _listen_opt(protocol.DEFAULT_CONDUCTOR),
                  name: str | None = typer.Option(None, "--name"),
                  session_timeout: float = typer.Option(10.0, "--session-timeout",
                                                        metavar="S"),
                  failover_grace: float = typer.Option(2.0, "--failover-grace",
                                                       metavar="S"),
                  advertise: str | None = typer.Option(
                      None, "--advertise", metavar="HOST",
                      help="Host clients and nodes reach this conductor at."),
                  gc_keep_runs: int = KeepRunsOpt, gc_run_retention: str = RunRetentionOpt,
                  gc_key_ttl: str = KeyTtlOpt, http: str = HttpOpt,
                  insecure: bool = InsecureOpt,
                  secret_key_file: Path | None = typer.Option(
                      None, "--secret-key-file", envvar="HELIOS_SECRET_KEY_FILE",
                      metavar="FILE", help="The secret keyring (`helios secret keygen`); "
                                           "the same file on every conductor.")) -> None:
    """A conductor; several may run, one leads."""
    from helios.conductor.daemon import run_conductor

    _check_network("conductor")
    _check_listen(listen, insecure)
    http_bind = _bind(http, insecure, "--http")

    _check_positive(session_timeout=session_timeout)
    if failover_grace < 0:
        raise CLIError("--failover-grace must be >= 0")
    gc = _gc_policy(gc_keep_runs, gc_run_retention, gc_key_ttl)
    if secret_key_file is not None:  # a bad key file is said now, not at first use
        from helios.secrets.keyring import Keyring, KeyringError

        try:
            Keyring.load(secret_key_file)
        except KeyringError as e:
            raise CLIError(str(e)) from None
    hosts, root = split_zk(zk)
    _daemon(run_conductor, store_url=f"zk://{hosts}{root}", listen=listen, name=name,
            failover_grace=failover_grace, session_timeout=session_timeout,
            advertise=advertise, gc=gc, http=http_bind,
            secret_key_file=str(secret_key_file) if secret_key_file else None)


def _check_positive(**values: float) -> None:
    for k, v in values.items():
        if not (v > 0 and math.isfinite(v)):
            raise CLIError(f"--{k.replace('_', '-')} must be a positive number of seconds")


def _labels(items: list[str] | None, flag: str = "--label") -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise CLIError(f"{flag} {item!r}: expected key=value")
        out[k] = v
    return out


def default_state_dir(what: str) -> Path:
    base = os.environ.get("HELIOS_STATE_DIR") or os.environ.get("XDG_STATE_HOME") \
        or str(Path.home() / ".local" / "state")
    return Path(base) / "helios" / what if not os.environ.get("HELIOS_STATE_DIR") \
        else Path(base) / what


@node_app.callback(invoke_without_command=True)
def node_cmd(ctx: typer.Context,
             zk: str | None = typer.Option(None, "--zk", envvar=ENV_ZK, metavar="HOSTS",
                                           help="ZooKeeper hosts\\[/root]. Required."),
             name: str | None = typer.Option(None, "--name", help="This node's name. "
                                             "Required."),
             listen: str = _listen_opt("127.0.0.1:0"),
             cpus: float | None = typer.Option(None, "--cpus", metavar="C"),
             memory: str | None = typer.Option(None, "--memory", metavar="M"),
             label: list[str] | None = typer.Option(None, "--label", metavar="k=v"),
             runtime: str = typer.Option("docker", "--runtime",
                                         help="docker | process (unsandboxed, said "
                                              "explicitly) | sim"),
             state_dir: Path | None = typer.Option(None, "--state-dir", metavar="D"),
             session_timeout: float = typer.Option(10.0, "--session-timeout", metavar="S"),
             container_label: list[str] | None = typer.Option(
                 None, "--container-label", metavar="k=v", hidden=True),
             port_range: str = typer.Option("21000-21999", "--port-range", metavar="LO-HI",
                                            help="Host ports the node picks task ports "
                                                 "from."),
             advertise: str | None = typer.Option(
                 None, "--advertise", metavar="HOST",
                 help="Host the conductor reaches this node at."),
             publish_address: str | None = typer.Option(
                 None, "--publish-address", metavar="HOST",
                 help="Host task ports are published on and endpoints registered with "
                      "(default: the --advertise host, else the --listen host, else "
                      "127.0.0.1)."),
             metrics: str | None = typer.Option(
                 None, "--metrics", envvar="HELIOS_NODE_METRICS", metavar="H:P",
                 help="Serve Prometheus metrics at http://H:P/metrics (default off)."),
             insecure: bool = InsecureOpt,
             allow_cap: list[str] | None = typer.Option(
                 None, "--allow-cap", metavar="CAP",
                 help="Give containers this capability too (beyond the minimal set)."),
             pids_limit: int = typer.Option(1024, "--pids-limit", metavar="N",
                                            help="Processes per container (0: no limit)."),
             allow_privilege_escalation: bool = typer.Option(
                 False, "--allow-privilege-escalation",
                 help="Do not set no-new-privileges on containers."),
             refuse_root: bool = typer.Option(
                 False, "--refuse-root", help="Refuse tasks that would run as root."),
             allow_log_driver: list[str] | None = typer.Option(
                 None, "--allow-log-driver", metavar="NAME",
                 help="Allow this Docker log driver too."),
             allow_log_address: list[str] | None = typer.Option(
                 None, "--allow-log-address", metavar="HOST[:PORT]",
                 help="Allow log drivers to send here (loopback only by default)."),
             process_user: str | None = typer.Option(
                 None, "--process-user", metavar="NAME",
                 help="With --runtime process and a root daemon: run tasks as NAME "
                      "(default nobody)."),
             process_allow_root: bool = typer.Option(
                 False, "--process-allow-root",
                 help="Let --process-user be root (process tasks are not sandboxed)."),
             ) -> None:
    """The node daemon of one machine (`helios node --zk HOSTS --name N`).

    `helios node rm NAME` forgets a machine that is gone for good."""
    from helios.node.daemon import run_node
    from helios.node.workload import WorkloadPolicy
    from helios.units import UnitError, parse_size

    if ctx.invoked_subcommand is not None:
        return  # `helios node rm ...`: a client command, not the daemon
    if not zk:
        raise CLIError(f"Missing option '--zk' (env var: '{ENV_ZK}').", 2)
    if not name:
        raise CLIError("Missing option '--name'.", 2)
    _check_positive(session_timeout=session_timeout)
    if runtime == "auto":  # never a silent fall back to unsandboxed host processes
        raise CLIError("--runtime auto is for `helios solo`; a node says --runtime docker "
                       "or --runtime process (unsandboxed host processes, docs/security.md)")
    if runtime not in ("docker", "process", "sim"):
        raise CLIError(f"--runtime must be docker, process or sim, not {runtime!r}")
    if runtime == "process":
        from helios.node.runtime.process_user import ProcessUserError, task_user

        try:
            task_user(process_user, process_allow_root)
        except ProcessUserError as e:
            raise CLIError(str(e)) from None
    if memory is not None:
        try:
            parse_size(memory)
        except (UnitError, ValueError) as e:
            raise CLIError(f"--memory: {e}") from None
    lo, _, hi = port_range.partition("-")
    try:
        ports = (int(lo), int(hi))
    except ValueError:
        raise CLIError("--port-range must be LOW-HIGH") from None
    hosts, root = split_zk(zk)
    kwargs: dict[str, Any] = {}
    _check_network("node", name)
    _check_listen(listen, insecure)
    metrics_bind = _bind(metrics, insecure, "--metrics")
    if metrics_bind:
        kwargs["metrics"] = metrics_bind
    if container_label:
        kwargs["container_labels"] = _labels(container_label, "--container-label")
    if pids_limit < 0:
        raise CLIError("--pids-limit must be 0 (no limit) or more")
    kwargs["workload"] = WorkloadPolicy.from_flags(
        allow_caps=allow_cap or (), pids_limit=pids_limit,
        allow_privilege_escalation=allow_privilege_escalation, refuse_root=refuse_root,
        allow_log_drivers=allow_log_driver or (), allow_log_addresses=allow_log_address or (),
        process_user=process_user, process_allow_root=process_allow_root)
    _daemon(run_node, name=name, store_url=f"zk://{hosts}{root}", listen=listen,
            cpus=cpus, memory=memory, labels=_labels(label), runtime=runtime,
            state_dir=str(state_dir or default_state_dir(f"node-{name}")),
            session_timeout=session_timeout, port_range=ports, advertise=advertise,
            publish_address=publish_address, **kwargs)


@app.command("solo")
def solo_cmd(listen: str = _listen_opt(protocol.DEFAULT_CONDUCTOR),
             state_dir: Path | None = typer.Option(
                 None, "--state-dir", metavar="D",
                 help="Default: $HELIOS_STATE_DIR/solo, else "
                      "${XDG_STATE_HOME:-~/.local/state}/helios/solo."),
             runtime: str = typer.Option("auto", "--runtime",
                                         help="auto | docker | process"),
             name: str | None = typer.Option(
                 None, "--name", help="The node's name (default: <host>-<6 hex>, made once "
                                      "per state directory and kept there)."),
             gc_keep_runs: int = KeepRunsOpt, gc_run_retention: str = RunRetentionOpt,
             gc_key_ttl: str = KeyTtlOpt, http: str = HttpOpt,
             insecure: bool = InsecureOpt) -> None:
    """A conductor and one node in one process, on the embedded store."""
    from helios.solo import run_solo

    _check_network("conductor")
    _check_listen(listen, insecure)
    http_bind = _bind(http, insecure, "--http")

    if runtime not in ("docker", "process", "auto"):
        raise CLIError(f"--runtime must be auto, docker or process, not {runtime!r}")
    gc = _gc_policy(gc_keep_runs, gc_run_retention, gc_key_ttl)
    _daemon(run_solo, listen=listen, state_dir=str(state_dir or default_state_dir("solo")),
            runtime=runtime, name=name, gc=gc, http=http_bind)


from helios.cli_fleet import register as _register_fleet  # noqa: E402
from helios.cli_secrets import register as _register_secrets  # noqa: E402

_register_fleet(sys.modules[__name__])  # node drain, node eligibility, rebalance
_register_secrets(sys.modules[__name__])  # secret set/ls/rm/keygen/rewrap


# ---------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `helios` script: run the app; errors become one line."""
    command = typer.main.get_command(app)
    try:
        argv = take_global_options(list(sys.argv[1:] if argv is None else argv), os.environ)
        code = command.main(args=argv, prog_name="helios", standalone_mode=False)
    except CLIError as e:
        _fail(str(e), e.code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        _fail("aborted", 130)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except BaseExceptionGroup as eg:
        inner = _first(eg)
        if isinstance(inner, CLIError):
            _fail(str(inner), inner.code)
        log.debug("unexpected error", exc_info=eg)
        _fail(describe_error(inner), 1)
    except Exception as e:
        if hasattr(e, "format_message") and hasattr(e, "exit_code"):  # a usage error
            if type(e).__name__ == "NoArgsIsHelpError":
                command.main(args=[*(argv or sys.argv[1:]), "--help"], prog_name="helios",
                             standalone_mode=False)
                sys.exit(0)
            _fail(one_line(e.format_message()), int(e.exit_code) or 2)
        log.debug("unexpected error", exc_info=True)
        _fail(describe_error(e), 1)
    sys.exit(code if isinstance(code, int) else 0)


#: errors whose message is written for the user already: shown without a type name
_PLAIN_ERRORS = ("NodeNameTaken", "StateDirLocked", "ZooKeeperUnreachable")


def describe_error(e: BaseException) -> str:
    """One line for an error that reached the top: the message alone where it was
    written for the user (an OSError's reason names its address), else `Type: message`."""
    if isinstance(e, OSError) and e.strerror:
        return one_line(e.strerror)
    if type(e).__name__ in _PLAIN_ERRORS:
        return one_line(str(e))
    return f"{type(e).__name__}: {one_line(str(e))}"


def _first(eg: BaseExceptionGroup) -> BaseException:
    e: BaseException = eg
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    return e


def _fail(message: str, code: int) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    sys.exit(code or 1)


if __name__ == "__main__":
    main()
