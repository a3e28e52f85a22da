"""The conductor: contends for leadership, and while it leads, closes the gap between the
jobs and the cluster.

This module is the leadership part: `Conductor.run()` contends forever
(`coordination.lead`); on winning a term it checks the cluster id, writes `LEADER_PATH`
(fenced by the term's epoch), loads a snapshot (`snapshot.load_snapshot`) and starts the
term's workers, which all share the term's `Leadership` (term.py):

- `NodeSync` (node_sync.py) follows the nodes, pushes each its assignment set
  (`assign(epoch, generation, ...)`) and merges their task reports;
- `ReconcileLoop` (reconcile_loop.py): `reconcile()` (pure) -> `plan.apply` on the cache
  -> `store_writer.Writer.flush` (fenced, batched) -> push; after each pass it calls its
  `Collector` (collector.py, garbage collection).

The moment the term is lost, `lead()` cancels all of it; a new term starts from the
store alone. Nothing here trusts memory across terms. The client commands are in
commands.py and the actors that answer them in front.py.

Task reports are also re-read from the nodes (`statuses()`) at takeover, when a node
comes back and periodically, so a report lost on the way is repaired.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

import actors
from helios import protocol
from helios.conductor.cron_runner import CronRunner
from helios.conductor.errors import NotLeader
from helios.conductor.gc import GCPolicy
from helios.conductor.history import History
from helios.conductor.node_sync import NodeSync
from helios.conductor.reconcile_loop import ReconcileLoop
from helios.conductor.snapshot import load_snapshot
from helios.conductor.store_writer import Persisted, Writer
from helios.conductor.term import Leadership
from helios.coordination.election import Term, lead
from helios.coordination.errors import (
    ClusterIdMismatch,
    CoordinationError,
    CorruptValue,
    StaleEpoch,
    Unavailable,
)
from helios.coordination.guard import init_cluster
from helios.coordination.store import Create, Set, Store
from helios.events import cluster_event
from helios.metrics import conductor_metrics
from helios.secrets.resolve import ConductorSecrets
from helios.security import ConductorSecurity

log = logging.getLogger(__name__)

__all__ = ["Conductor", "Leader"]

#: how long a CLI request waits for a fresh leader to finish loading its snapshot
READY_WAIT = 10.0


@dataclass
class Leader:
    """One term as the client commands use it: its state and its two workers."""

    lead: Leadership
    nodes: NodeSync
    loop: ReconcileLoop


class Conductor:
    """Contention and the current term; see the module docstring. One per conductor
    process."""

    def __init__(self, store: Store, system: actors.ActorSystem, *, name: str,
                 failover_grace: float = 2.0, session_timeout: float = 10.0,
                 clock: Callable[[], float] = time.time, gc: GCPolicy | None = None,
                 security: ConductorSecurity | None = None) -> None:
        self.store = store
        #: the token cache and audit log (run by `run_conductor`; idle in bare tests)
        self.security = security or ConductorSecurity.over(store, name)
        self.system = system
        self.name = name
        self.failover_grace = float(failover_grace)
        self.session_timeout = float(session_timeout)
        self.clock = clock
        self.gc = gc if gc is not None else GCPolicy()
        self.cluster_id: str | None = None
        self.leader_info: dict[str, Any] | None = None
        #: the current term while this conductor leads
        self.term: Leader | None = None
        #: where the HTTP API of this conductor listens (helios.http), when it does
        self.http_url: str | None = None
        #: the secret key file (set by `run_conductor`); values are read per push
        self.secrets = ConductorSecrets()

    @property
    def url(self) -> str:
        return f"{self.system.url}/{protocol.CONDUCTOR_ACTOR}"

    @property
    def lead(self) -> Leadership | None:
        """The current term's state while this conductor leads (metrics, tests)."""
        return self.term.lead if self.term is not None else None

    # ------------------------------------------------------------------ contending
    async def run(self) -> None:
        """Contend for leadership forever; lead whenever elected."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_leader)
            while True:
                if self.cluster_id is None:
                    # before contending: the election itself writes under the root
                    try:
                        self.cluster_id = await init_cluster(self.store)
                    except (ClusterIdMismatch, Unavailable) as e:
                        log.error("%s; retrying in 5s", e)
                        await trio.sleep(5)
                        continue
                await lead(self.store, self.name, self._lead)
                await trio.sleep(0.2)

    async def _watch_leader(self) -> None:
        """Know the leader (for standbys' NotLeader answers)."""
        while True:
            try:
                async for entry in self.store.watch_data(protocol.LEADER_PATH):
                    value = entry.value if entry is not None else None
                    self.leader_info = value if isinstance(value, dict) else None
            except CorruptValue as e:
                log.warning("%s", e)
                await trio.sleep(1)
            except CoordinationError as e:
                log.info("leader watch paused: %s", e)
                await trio.sleep(1)

    async def _lead(self, term: Term) -> None:
        """One term: set up, then reconcile until cancelled (term lost)."""
        try:
            self.cluster_id = await init_cluster(self.store, self.cluster_id)
            info = {"name": self.name, "url": self.url, "epoch": term.epoch}
            op = (Set(protocol.LEADER_PATH, info)
                  if await self.store.exists(protocol.LEADER_PATH)
                  else Create(protocol.LEADER_PATH, info))
            await term.transaction([op])
            self.leader_info = info
            started = time.monotonic()
            snap = await load_snapshot(self.store, self.clock())
            history = History(self.store)
            L = Leadership(term=term, state=snap.state,
                           writer=Writer(term, Persisted(snap.state.copy(), set(snap.dirs))),
                           history=history, records=dict(snap.records),
                           cron=CronRunner(term, clock=self.clock, events=history.log))
            log.info("%s leads (epoch %d): %d jobs, %d nodes, %d tasks loaded in %.0f ms",
                     self.name, term.epoch, len(snap.state.jobs), len(snap.state.nodes),
                     len(snap.state.assignments), (time.monotonic() - started) * 1000)
            L.history.exists = lambda job: job in L.state.jobs
            L.history.add(cluster_event("leader", "elected", node=None,
                                        detail=f"{self.name} leads (epoch {term.epoch})"))
            nodes = NodeSync(L, self.store, self.system, self.clock, self.secrets)
            loop = ReconcileLoop(L, self.store, nodes, clock=self.clock,
                                 failover_grace=self.failover_grace, gc=self.gc,
                                 metrics=conductor_metrics(self))
            self.term = Leader(L, nodes, loop)
            async with trio.open_nursery() as nursery:
                L.nursery = nursery
                nursery.start_soon(nodes.watch_nodes)
                nursery.start_soon(loop.run)
                nursery.start_soon(nodes.refresh_statuses_loop)
                nursery.start_soon(loop.collector.key_gc_loop)
                for name, node in L.state.nodes.items():
                    if node.up:
                        nodes.sync_node(name)
                L.ready.set()
                L.poke()
                await trio.sleep_forever()
        except StaleEpoch:
            log.warning("%s: a newer leader exists (epoch %d is stale); standing down",
                        self.name, term.epoch)
        except ClusterIdMismatch as e:
            log.error("%s; refusing to lead here, retrying in 5s", e)
            await trio.sleep(5)
        finally:
            self.term = None

    # ------------------------------------------------------------------ who leads
    async def leading(self) -> Leader:
        """This conductor's term, or NotLeader naming the leader."""
        T = self.term
        if T is not None and not T.lead.ready.is_set():
            with trio.move_on_after(READY_WAIT):
                await T.lead.ready.wait()
            T = self.term
        if T is None or T.lead.term.lost.is_set() or not T.lead.ready.is_set():
            raise NotLeader(self.leader_url())
        return T

    def leader_url(self) -> str:
        """The leader's URL as last seen, or "" when unknown or when it is this one."""
        url = (self.leader_info or {}).get("url") or ""
        return "" if url == self.url else url

    def leader(self) -> dict[str, Any]:
        """Who leads: this conductor, or the one it last saw in `LEADER_PATH`."""
        L = self.lead
        if L is not None and not L.term.lost.is_set():
            return {"leader": True, "name": self.name, "url": self.url, "epoch": L.epoch}
        info = self.leader_info or {}
        url = self.leader_url()
        return {"leader": False, "name": info.get("name") if url else None,
                "url": url or None, "epoch": info.get("epoch") if url else None}
