"""`helios solo`: a conductor and one node in one process, on the embedded store.

Why one process and one actor system: on one machine there is nothing to fail over to, so
the cheapest correct cluster is the conductor and the node daemon sharing one event loop,
one SQLite-backed store (which keeps jobs across restarts) and one listening address
(127.0.0.1:7070 by default, where the CLI looks first). Docker runs the tasks when its
daemon answers; otherwise the process runtime does (like Nomad's raw_exec).
"""

from __future__ import annotations

import logging
import secrets
import socket
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import trio

import actors
from helios import protocol
from helios.conductor.conductor import Conductor
from helios.conductor.daemon import run_conductor
from helios.conductor.gc import GCPolicy
from helios.coordination import Store, open_embedded
from helios.security import ConductorSecurity

if TYPE_CHECKING:
    from helios.node.node import NodeCore

log = logging.getLogger(__name__)

__all__ = ["run_solo", "solo_node_name"]


async def run_solo(*, listen: str = protocol.DEFAULT_CONDUCTOR, state_dir: str,
                   runtime: str = "auto", name: str | None = None,
                   failover_grace: float = 2.0, gc: GCPolicy | None = None,
                   http: str | None = None,
                   task_status: trio.TaskStatus[actors.ActorSystem] = trio.TASK_STATUS_IGNORED
                   ) -> None:
    """Run solo mode until cancelled; `task_status.started(system)` once both halves run.
    `gc` is the conductor's collection policy (`helios.conductor.gc.GCPolicy`); `http`
    where the HTTP API listens (None: nowhere), its `/metrics` showing the node's too."""
    base = Path(state_dir).expanduser()
    base.mkdir(parents=True, exist_ok=True)
    node_name = name or solo_node_name(base)
    store = await open_embedded(base / "helios.db")
    security = ConductorSecurity.over(store, "solo")
    try:
        async with actors.open_system(name="helios-solo", listen=listen,
                                      **protocol.network_options(
                                          role="conductor", name="solo",
                                          tokens=security.tokens, audit=security.audit)
                                      ) as system, \
                trio.open_nursery() as nursery:
            conductor = await nursery.start(_run_conductor, store, system, failover_grace,
                                            gc, security)
            core = await nursery.start(_run_node, store, system, node_name,
                                       str(base / "node"), runtime)
            if http:
                from helios.http import serve_http
                from helios.metrics import node_metrics

                await nursery.start(partial(serve_http, conductor, http, extra=[
                    node_metrics(core, actors=False).registry]))
            log.info("helios solo ready at %s (node %s, state in %s)", system.url,
                     node_name, base)
            task_status.started(system)
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()


async def _run_conductor(store: Store, system: actors.ActorSystem, grace: float,
                         gc: GCPolicy | None, security: ConductorSecurity,
                         task_status: trio.TaskStatus[Conductor] = trio.TASK_STATUS_IGNORED
                         ) -> None:
    await run_conductor(store=store, system=system, name="solo", failover_grace=grace,
                        gc=gc, security=security, task_status=task_status)


async def _run_node(store: Store, system: actors.ActorSystem, name: str, state_dir: str,
                    runtime: str,
                    task_status: trio.TaskStatus[NodeCore] = trio.TASK_STATUS_IGNORED
                    ) -> None:
    # imported here: the node daemon (and its runtimes) load only when solo runs
    from helios.node.daemon import run_node

    await run_node(name=name, store=store, system=system, runtime=runtime,
                   state_dir=state_dir, task_status=task_status)


def _host_name() -> str:
    """The machine's host name as a valid node name."""
    raw = socket.gethostname().split(".")[0].lower()
    cleaned = "".join(c if c.isalnum() or c in "-" else "-" for c in raw).strip("-")
    return cleaned[:40] or "solo"


NAME_FILE = "node-name"


def solo_node_name(state_dir: Path) -> str:
    """This state directory's own node name, `<host>-<6 hex>`, made on first use and kept
    in `<state dir>/node-name`. Why not the host name alone: two `helios solo` on one
    Docker host (two state directories) would then share a node name, and each would take
    the other's containers for its own orphans and remove them."""
    from helios.node.identity import kept_value

    return kept_value(state_dir / NAME_FILE, lambda: f"{_host_name()}-{secrets.token_hex(3)}")
