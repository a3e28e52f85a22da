"""The daemons (docs/cli.md): `helios conductor`, `helios node` and `helios solo` run
until SIGINT/SIGTERM. This module checks their flags (one line for a bad one) and starts
them; `python -m helios.node` runs the same `helios node` command.
"""

from __future__ import annotations

import logging
import math
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
import typer

from helios import protocol
from helios.cli.common import CLIError, app, node_app
from helios.client import ENV_ZK
from helios.config import parse_labels, zk_store_url

log = logging.getLogger("helios.cli")


def _daemon(fn: Callable[..., Awaitable[None]], *,
            ready: Callable[[Any], None] | None = None, **kwargs: Any) -> None:
    """Run a daemon coroutine until SIGINT/SIGTERM, logging at INFO; `ready` is called
    with what the daemon passes to `task_status.started` once it serves."""
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

            async def daemon(task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
                             ) -> None:
                await fn(**kwargs, task_status=task_status)
                nursery.cancel_scope.cancel()

            nursery.start_soon(signals)
            started = await nursery.start(daemon)
            if ready is not None:
                ready(started)

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
    _daemon(run_conductor, store_url=zk_store_url(zk), listen=listen, name=name,
            failover_grace=failover_grace, session_timeout=session_timeout,
            advertise=advertise, gc=gc, http=http_bind,
            secret_key_file=str(secret_key_file) if secret_key_file else None)


def _check_positive(**values: float) -> None:
    for k, v in values.items():
        if not (v > 0 and math.isfinite(v)):
            raise CLIError(f"--{k.replace('_', '-')} must be a positive number of seconds")


def _labels(items: list[str] | None, flag: str = "--label") -> dict[str, str]:
    try:
        return parse_labels(items, flag)
    except ValueError as e:
        raise CLIError(str(e)) from None


def default_state_dir(what: str) -> Path:
    """Where a daemon keeps its state unless --state-dir says: $HELIOS_STATE_DIR/<what>,
    else ${XDG_STATE_HOME:-~/.local/state}/helios/<what>."""
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
             store: str | None = typer.Option(
                 None, "--store", metavar="URL", hidden=True,
                 help="Any store URL (zk://hosts/root, sqlite:///file.db) instead of --zk."),
             pin_conductor: str | None = typer.Option(
                 None, "--conductor", metavar="HOST:PORT", hidden=True,
                 help="Talk to this conductor instead of the elected leader (tests)."),
             print_ready: bool = typer.Option(
                 False, "--print-ready", hidden=True,
                 help="Print `helios node NAME ready at URL` on stdout once it serves."),
             ) -> None:
    """The node daemon of one machine (`helios node --zk HOSTS --name N`).

    `helios node rm NAME` forgets a machine that is gone for good."""
    from helios.node.daemon import run_node
    from helios.node.workload import WorkloadPolicy
    from helios.units import UnitError, parse_size

    if ctx.invoked_subcommand is not None:
        return  # `helios node rm ...`: a client command, not the daemon
    if not zk and not store and not pin_conductor:
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
    if pin_conductor:
        kwargs["conductor"] = pin_conductor
    ready = (lambda core: print(f"helios node {name} ready at {core.url}", flush=True)) \
        if print_ready else None
    _daemon(run_node, ready=ready, name=name,
            store_url=store or (zk_store_url(zk) if zk else None), listen=listen,
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
