"""`run_conductor`: one conductor process (or the conductor half of `helios solo`).

Why a function of its own: the CLI, solo mode and tests all start a conductor the same
way, with either a store they already hold (solo: shared with the node) or a URL, and
either their own actor system or one they share.
"""

from __future__ import annotations

import logging
import os
import socket
from contextlib import AsyncExitStack

import trio

import actors
from helios import protocol
from helios.conductor.conductor import Conductor
from helios.conductor.front import conductor_tree
from helios.conductor.gc import GCPolicy
from helios.config import split_zk
from helios.coordination import open_store, open_zookeeper
from helios.coordination.acl import load_credential
from helios.coordination.reach import open_when_reachable, zk_hosts
from helios.coordination.store import Store
from helios.secrets.resolve import ConductorSecrets
from helios.security import ConductorSecurity

log = logging.getLogger(__name__)

__all__ = ["run_conductor"]


async def _open(url: str, session_timeout: float, name: str) -> Store:
    """Open the store, waiting for ZooKeeper as long as it takes (a conductor may boot
    before its ensemble, like a node); `reach.py` says so once. With a ZooKeeper
    credential configured (HELIOS_ZK_CREDENTIAL_FILE or HELIOS_ZK_CREDENTIAL,
    `conductor:<cluster secret>`), the conductor authenticates with it and every znode it
    creates gets digest ACLs (`helios.coordination.acl`)."""
    credential = load_credential()
    if credential is not None and credential.role != "conductor":
        raise ValueError(f"the ZooKeeper credential is a {credential.role}'s; a conductor "
                         "needs `conductor:<cluster secret>`")
    if not url.startswith("zk://"):
        return await open_store(url, session_timeout=session_timeout, credential=credential)
    hosts, root = split_zk(url)
    return await open_when_reachable(
        lambda timeout: open_zookeeper(hosts, root,
                                       session_timeout=session_timeout,
                                       connect_timeout=timeout, credential=credential),
        zk_hosts(url), f"conductor {name}")



async def run_conductor(*, store: Store | None = None, store_url: str | None = None,
                        system: actors.ActorSystem | None = None,
                        listen: str = protocol.DEFAULT_CONDUCTOR, name: str | None = None,
                        failover_grace: float = 2.0, session_timeout: float = 10.0,
                        advertise: str | None = None, gc: GCPolicy | None = None,
                        http: str | None = None, security: ConductorSecurity | None = None,
                        secret_key_file: str | None = None,
                        task_status: trio.TaskStatus[Conductor] = trio.TASK_STATUS_IGNORED
                        ) -> None:
    """Run a conductor until cancelled. `task_status.started(conductor)` once its actors
    run (it may still be a standby: `conductor.lead` is set while it leads).

    `advertise` is the host others reach this conductor at (what LEADER_PATH names) when
    `listen` is a wildcard such as 0.0.0.0. `gc` is the collection policy of finished
    cron and dispatch runs and of idempotency keys (`helios.conductor.gc`). `http` is
    where the HTTP API listens (`helios.http`; None: nowhere). `security`: the token
    cache and audit log the caller's `system` authorizes with (solo); made here, over
    the store, when this function opens the system itself."""
    if store is None and store_url is None:
        raise ValueError("run_conductor needs a store or a store_url")
    name = name or f"{socket.gethostname()}-{os.getpid()}"
    async with AsyncExitStack() as stack:
        if store is None:
            assert store_url is not None
            store = await _open(store_url, session_timeout, name)
            stack.push_async_callback(store.aclose)
        if system is None:
            security = ConductorSecurity.over(store, name)
            system = await stack.enter_async_context(
                actors.open_system(name=f"conductor-{name}", listen=listen,
                                   advertise=advertise, **protocol.network_options(
                                       role="conductor", name=name, tokens=security.tokens,
                                       audit=security.audit)))
        conductor = Conductor(store, system, name=name, failover_grace=failover_grace,
                              session_timeout=session_timeout, gc=gc, security=security)
        conductor.secrets = ConductorSecrets(secret_key_file)  # (docs/security.md)
        sup = await system.spawn(actors.Supervisor, strategy="one_for_one",
                                 max_restarts=1000, within=1.0,
                                 children=conductor_tree(conductor), name="conductor-sup")
        log.info("conductor %s listening at %s", name, conductor.url)
        monitor = await system.monitor(sup)
        try:
            async with trio.open_nursery() as nursery:
                if security is not None:
                    nursery.start_soon(security.run)
                    with trio.move_on_after(10):  # people are refused until it is read
                        await security.tokens.loaded.wait()
                if http:
                    from helios.http import serve_http

                    await nursery.start(serve_http, conductor, http)
                task_status.started(conductor)
                down = await monitor.wait()
                raise RuntimeError(f"the conductor's supervisor ended: {down.reason} "
                                   f"{down.detail}".strip())
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                try:
                    await sup.stop()
                except actors.ActorError:
                    pass
