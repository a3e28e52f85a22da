"""The conductor: contends for leadership, and while it leads, closes the gap between the
jobs and the cluster.

Pieces, each with one job:

- `Conductor` holds the logic. Its `run()` contends forever (`coordination.lead`); on
  winning a term it checks the cluster id, writes `LEADER_PATH` (fenced), loads a snapshot
  (`state.load_snapshot`) and then reconciles on every relevant change and on a timer:
  `reconcile()` (pure) -> `plan.apply` on the cache -> `apply.Writer.flush` (fenced,
  batched) -> push each affected node its complete set (`assign(epoch, generation, ...)`).
  The moment the term is lost, `lead()` cancels all of it; a new term starts from the
  store alone. Nothing here trusts memory across terms.
- `Collector` (collector.py), a mixin of `Conductor`, collects finished runs, expired
  idempotency keys and removed nodes' directories; `plan_events.py` turns each applied
  plan into history events and the set of nodes to push.
- `CoreActor` runs `Conductor.run` as its background task (`Actor.start_soon`).
- `ConductorActor` (registered as `protocol.CONDUCTOR_ACTOR`) answers nodes and the CLI.
  It holds no state: error answers (`NotLeader`, `JobNotFound`, a bad spec) are
  `actors.Refusal`s that leave it running, and if it ever crashes its supervisor restarts
  it at once while the core and its term live on in `CoreActor`.

Level-triggered: every trigger only wakes the reconcile loop, which looks at the whole
state; a missed or repeated trigger changes nothing. Task reports are also re-read from the
nodes (`statuses()`) at takeover, when a node comes back and periodically, so a report
lost on the way is repaired.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import trio

import actors
from helios import protocol
from helios.conductor import views
from helios.conductor.apply import Persisted, Writer
from helios.conductor.collector import Collector
from helios.conductor.cron_runner import CronRunner, running_templates
from helios.conductor.dispatch import dispatch
from helios.conductor.drain import drain_report, finish_drains, set_drain, with_drains
from helios.conductor.errors import (
    EXPECTED,
    JobNotFound,
    NodeNotFound,
    NodeUnreachable,
    NodeUp,
    NotLeader,
    TaskNotFound,
    VersionNotFound,
)
from helios.conductor.gc import (
    GCPolicy,
    KeyRecord,
    node_leftovers,
)
from helios.conductor.history import History, event, read_history
from helios.conductor.plan import ClusterState, Pending, Plan, RolloutStep
from helios.conductor.plan import apply as apply_plan
from helios.conductor.plan_events import plan_events, rollout_events, touched_nodes
from helios.conductor.preview import candidate_record, placement_problems, preview
from helios.conductor.rebalance import plan_rebalance
from helios.conductor.reconcile import reconcile
from helios.conductor.reschedule import reschedule_due
from helios.conductor.state import load_snapshot, node_from_record, node_url
from helios.coordination import paths
from helios.coordination.election import Term, current_epoch, lead
from helios.coordination.errors import (
    ClusterIdMismatch,
    CoordinationError,
    CorruptValue,
    StaleEpoch,
    StoreClosed,
    Unavailable,
)
from helios.coordination.guard import init_cluster
from helios.coordination.store import Create, Delete, Set, Store
from helios.events import cluster_event, read_events
from helios.metrics import conductor_metrics
from helios.model import JobRecord, TaskStatus
from helios.secrets.resolve import ConductorSecrets, uses
from helios.secrets.store import SecretAdmin
from helios.security import ConductorSecurity
from helios.security.audit import read_audit
from helios.security.tokens import TokenAdmin
from helios.spec import JobSpec, validate

log = logging.getLogger(__name__)

__all__ = ["Conductor", "ConductorActor", "CoreActor", "conductor_tree"]

#: how long a CLI request waits for a fresh leader to finish loading its snapshot
READY_WAIT = 10.0
#: longest pause between two reconciliations when nothing happens
RECONCILE_INTERVAL = 2.0
#: bounded wait for a node's answer to `assign` / `statuses`
NODE_TIMEOUT = 10.0
#: re-read every node's task reports this often (repairs reports lost on the way)
STATUS_REFRESH = 15.0


@dataclass
class Leadership:
    """Everything one leadership term owns; dropped whole when the term ends."""

    term: Term
    state: ClusterState
    writer: Writer
    history: History
    lock: trio.Lock = field(default_factory=trio.Lock)
    wake: trio.Event = field(default_factory=trio.Event)
    ready: trio.Event = field(default_factory=trio.Event)
    pending: list[Pending] = field(default_factory=list)
    steps: list[RolloutStep] = field(default_factory=list)  # last plan's rollout slots
    generation: itertools.count = field(default_factory=lambda: itertools.count(1))
    push_flags: dict[str, trio.Event] = field(default_factory=dict)
    want_statuses: set[str] = field(default_factory=set)
    unpushed: set[str] = field(default_factory=set)
    records: dict[str, Any] = field(default_factory=dict)
    presence: dict[str, Any] = field(default_factory=dict)
    nursery: trio.Nursery | None = None
    reconciles: int = 0
    cron: Any = None  # CronRunner of this term
    #: service job -> tasks with a registered endpoint, for jobs being rolled out
    registered: dict[str, set[str]] = field(default_factory=dict)
    #: garbage collection (gc.py): when the next pass may run, passes and key sweeps
    #: done, idempotency keys read so far (path -> record; keys never change), and
    #: collected runs whose history is still to be deleted
    gc_next: float = 0.0
    gc_passes: int = 0
    key_sweeps: int = 0
    keys: dict[str, KeyRecord] = field(default_factory=dict)
    drop_history: set[str] = field(default_factory=set)
    #: histories without a job: name -> when this term first saw them so (gc.py)
    history_absent: dict[str, float] = field(default_factory=dict)

    @property
    def epoch(self) -> int:
        return self.term.epoch

    def poke(self) -> None:
        self.wake.set()


class Conductor(Collector):
    """The conductor's logic; see the module docstring. One per conductor process."""

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
        self.lead: Leadership | None = None
        self.terms = 0
        #: where the HTTP API of this conductor listens (helios.http), when it does
        self.http_url: str | None = None
        #: the secret key file (set by `run_conductor`); values are read per push
        self.secrets = ConductorSecrets()

    @property
    def url(self) -> str:
        return f"{self.system.url}/{protocol.CONDUCTOR_ACTOR}"

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
        self.terms += 1
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
            L = Leadership(term=term, state=snap.state,
                           writer=Writer(term, Persisted(snap.state.copy(), set(snap.dirs))),
                           history=History(self.store), records=dict(snap.records),
                           cron=CronRunner(term, clock=self.clock))
            log.info("%s leads (epoch %d): %d jobs, %d nodes, %d tasks loaded in %.0f ms",
                     self.name, term.epoch, len(snap.state.jobs), len(snap.state.nodes),
                     len(snap.state.assignments), (time.monotonic() - started) * 1000)
            L.history.exists = lambda job: job in L.state.jobs
            L.history.add(cluster_event("leader", "elected", node=None,
                                        detail=f"{self.name} leads (epoch {term.epoch})"))
            self.lead = L
            async with trio.open_nursery() as nursery:
                L.nursery = nursery
                nursery.start_soon(self._watch_nodes, L)
                nursery.start_soon(self._reconcile_loop, L)
                nursery.start_soon(self._status_refresh_loop, L)
                nursery.start_soon(self._key_gc_loop, L)
                for name, node in L.state.nodes.items():
                    if node.up:
                        self._sync_node(L, name)
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
            self.lead = None

    # ------------------------------------------------------------------ nodes
    async def _watch_nodes(self, L: Leadership) -> None:
        """Follow every node's record and presence; a change wakes the reconciler."""
        async with trio.open_nursery() as nursery:
            watched: dict[str, trio.CancelScope] = {}
            async for names in self.store.watch_children(paths.NODES):
                for name in names:
                    if name not in watched:
                        scope = trio.CancelScope()
                        watched[name] = scope
                        nursery.start_soon(self._watch_node, L, name, scope)
                for name in set(watched) - set(names):
                    watched.pop(name).cancel()
                    if L.state.nodes.pop(name, None) is not None:
                        L.poke()

    async def _watch_node(self, L: Leadership, name: str, scope: trio.CancelScope) -> None:
        async def record() -> None:
            async for entry in self.store.watch_data(paths.node(name)):
                L.records[name] = entry.value if entry is not None else None
                self._node_changed(L, name, record_changed=True)

        async def up() -> None:
            async for entry in self.store.watch_data(paths.node_up(name)):
                L.presence[name] = entry.value if entry is not None else None
                self._node_changed(L, name, record_changed=False)

        with scope:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(record)
                    nursery.start_soon(up)
            except CorruptValue as e:
                log.warning("node %s: %s", name, e)

    def _node_changed(self, L: Leadership, name: str, *, record_changed: bool) -> None:
        old = L.state.nodes.get(name)
        if name in L.presence:
            is_up = L.presence[name] is not None
        else:  # presence not watched yet: keep what the snapshot said
            is_up = old.up if old is not None else False
        record = L.records.get(name, old.to_dict() if old is not None else None)
        if record is None:
            return
        now = self.clock()
        down_since = None
        if not is_up:
            down_since = old.down_since if (old is not None and not old.up
                                            and old.down_since is not None) else now
        try:
            node = node_from_record(name, record, is_up, down_since)
        except Exception as e:
            log.warning("node %s has a bad record: %s", name, e)
            return
        L.state.nodes[name] = node
        if old is None or old.up != node.up or old.address != node.address \
                or old.cpus != node.cpus or old.memory != node.memory \
                or dict(old.labels) != dict(node.labels):
            log.info("node %s is %s%s", name, node.status,
                     f" ({node.address})" if node.up else "")
            # an event once presence is known (before, "down" is only a guess), for a
            # node that changed, or a new one that came up
            if name in L.presence and (node.up if old is None else old.up != node.up):
                L.history.add(cluster_event("node", node.status, node=name,
                                            detail=node.address or "", at=now))
            L.poke()
        if node.up and (old is None or not old.up or record_changed
                        or old.address != node.address):
            self._sync_node(L, name)

    def _sync_node(self, L: Leadership, name: str) -> None:
        """Push the node its set and re-read its reports (it is new, back, or restarted)."""
        L.want_statuses.add(name)
        self._push(L, name)

    def _push(self, L: Leadership, name: str) -> None:
        flag = L.push_flags.get(name)
        if flag is None:
            flag = L.push_flags[name] = trio.Event()
            assert L.nursery is not None
            L.nursery.start_soon(self._push_loop, L, name)
        flag.set()

    async def _push_loop(self, L: Leadership, name: str) -> None:
        """Send `name` its complete assignment set whenever it changed; retry while the
        node is up but unreachable (it also reads the store itself when it starts)."""
        backoff = 0.2
        while True:
            await L.push_flags[name].wait()
            L.push_flags[name] = trio.Event()
            node = L.state.nodes.get(name)
            if node is None or not node.up or not node.address:
                continue
            # What the store holds, never the cache: a node must not run a task that a
            # successor leader could not find.
            assigned = L.writer.persisted.on_node(name)
            tasks = [a.to_dict() for a in assigned]
            # values only in this message, for the tasks that use them (never stored)
            tasks = await self.secrets.attach(self.store, assigned, tasks)
            generation = next(L.generation)
            try:
                ref = await self._node_ref(name, self._node_url(L, name, node.address))
                await ref.ask("assign", L.epoch, generation, tasks, timeout=NODE_TIMEOUT)
                backoff = 0.2
                if name in L.want_statuses:
                    L.want_statuses.discard(name)
                    reports = await ref.ask("statuses", timeout=NODE_TIMEOUT)
                    self._merge_reports(L, name, reports or [])
            except actors.RemoteError as e:
                if e.type_name == "StaleEpoch" and await self._deposed(L):
                    log.warning("node %s refused epoch %d: a newer leader exists", name,
                                L.epoch)
                    L.term.lost.set()
                    return
                log.warning("node %s refused its assignments: %s", name, e)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                L.push_flags[name].set()
            except actors.ActorError as e:
                log.info("node %s unreachable (%s); retrying in %.1fs", name, e, backoff)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                L.push_flags[name].set()

    def _node_url(self, L: Leadership, name: str, address: str) -> str:
        """The node actor's URL: the record's `url` when the node wrote one."""
        record = L.records.get(name)
        url = record.get("url") if isinstance(record, dict) else None
        return url if isinstance(url, str) and url else node_url(address)

    async def _node_ref(self, name: str, url: str) -> actors.ActorRef:
        """The `node` actor of node `name`. With TLS, whoever answers at the address
        its record names must hold the certificate of node `name`: a node's record is
        only what that node wrote, and an address can be taken over; no task (nor,
        later, secret) goes to another identity. Raises `actors.ConnectionLost`."""
        ref = self.system.ref(url)
        if self.system.config.tls is not None and not ref.is_local:  # (solo: local)
            peer = await self.system.peer(url)
            if (peer.role, peer.name) != ("node", name):
                raise actors.ConnectionLost(
                    f"{url} is answered by {peer}, not by node {name}: nothing sent")
        return ref

    async def _status_refresh_loop(self, L: Leadership) -> None:
        while True:
            await trio.sleep(max(STATUS_REFRESH, len(L.state.nodes) / 50))
            for name, node in list(L.state.nodes.items()):
                if node.up:
                    self._sync_node(L, name)

    # ------------------------------------------------------------------ reports
    def _merge_reports(self, L: Leadership, node: str, reports: list[Any]) -> int:
        """Fold a node's task reports into the cache; returns how many changed."""
        changed = 0
        foreign: list[str] = []
        for raw in reports:
            if not isinstance(raw, dict):
                continue
            data = dict(raw)
            data["node"] = node
            a = L.state.assignments.get(str(data.get("id")))
            prev = L.state.statuses.get(str(data.get("id")))
            # A node reports only on its own tasks: one assigned to it, or whose last
            # report came from it (finished, or moved away and being stopped there).
            if (a is None or a.node != node) and (prev is None or prev.node != node):
                foreign.append(str(data.get("id"))[:100])
                continue
            if not data.get("job"):
                data["job"] = a.job if a is not None else ""
            try:
                st = TaskStatus.from_dict(data)
            except Exception as e:
                log.warning("node %s sent a bad task report %r: %s", node, raw, e)
                continue
            if prev is not None and prev.node == node:
                if st.updated and prev.updated and st.updated < prev.updated:
                    continue  # a replayed report older than what we know
                if prev.to_dict() == st.to_dict():
                    continue
            L.state.statuses[st.id] = st
            changed += 1
            if prev is None or prev.state != st.state or prev.node != node \
                    or prev.healthy != st.healthy:
                end = st.state in ("exited", "failed")  # a run's timing, for batch
                L.history.add(event(st.job or "?", st.id, node, st.state, st.reason,
                                    at=st.since or st.updated or None,
                                    exit_code=st.exit_code, healthy=st.healthy,
                                    started=st.started if end else None,
                                    finished=st.finished if end else None))
        if foreign:
            log.warning("node %s reported on %d task(s) not assigned to it, ignored: %s",
                        node, len(foreign), ", ".join(foreign[:5]))
        if changed:
            L.poke()
        return changed

    async def _deposed(self, L: Leadership) -> bool:
        """Whether the store holds an epoch newer than this term's. A node's refusal
        alone never deposes a leader: the node may be confused, or the message forged."""
        try:
            newer = await current_epoch(self.store) > L.epoch
        except CoordinationError:
            return False  # the term's own fenced writes will tell
        if not newer:
            log.warning("a node claims epoch %d is stale, but the store says it is "
                        "current; not standing down", L.epoch)
        return newer

    # ------------------------------------------------------------------ reconciling
    async def _reconcile_loop(self, L: Leadership) -> None:
        while True:
            with trio.move_on_after(self._next_timeout(L)):
                await L.wake.wait()
            await trio.sleep(0.005)  # coalesce a burst of triggers into one pass
            L.wake = trio.Event()
            try:
                async with L.lock:
                    await self._step(L)
                    await self._collect(L)
            except (StaleEpoch, StoreClosed):
                raise
            except CoordinationError as e:
                # The cache stays ahead of the store; the next pass writes the difference.
                log.warning("epoch %d: writing the plan failed (%s); retrying", L.epoch, e)
                await trio.sleep(1.0)
                L.poke()

    def _next_timeout(self, L: Leadership) -> float:
        """Wake in time for the earliest failover grace to run out."""
        timeout = RECONCILE_INTERVAL
        now = self.clock()
        if L.cron is not None:
            wake = L.cron.next_wakeup(L.state.jobs, now)
            if wake is not None:
                timeout = min(timeout, wake - now + 0.005)
        for wait in reschedule_due(L.state.jobs.values(), now):
            timeout = min(timeout, wait + 0.02)
        for n in L.state.nodes.values():
            if not n.up and n.down_since is not None:
                left = n.down_since + self.failover_grace - now
                if left >= 0:
                    timeout = min(timeout, left + 0.02)
        return max(timeout, 0.02)

    async def _step(self, L: Leadership) -> Plan:
        """One reconciliation: plan, apply to the cache, write, push. Repeats (bounded)
        while a plan has changes, so a cascade settles within one trigger."""
        plan = Plan()
        metrics = conductor_metrics(self)
        started = time.monotonic()
        await self._fire_cron(L)
        await self._follow_rollout_endpoints(L)
        for _ in range(4):
            now = self.clock()
            plan = reconcile(L.state.jobs, with_drains(L.state.nodes, L.state.drains),
                             L.state.assignments, L.state.statuses, now,
                             self.failover_grace, L.registered)
            L.reconciles += 1
            L.pending = list(plan.pending)
            L.steps = list(plan.rollout)
            if not plan.has_changes():
                break
            log.info("epoch %d plan:\n%s", L.epoch, plan)
            metrics.count_plan(plan)
            before = L.state
            L.state = apply_plan(before, plan, now)
            L.history.extend(plan_events(plan, now))
            L.history.extend(rollout_events(plan, L.state, now))
            L.unpushed.update(touched_nodes(plan, before, L.state))
            await self._flush(L)
        for name in finish_drains(L.state, self.clock()):
            log.info("node %s drained: nothing runs there any more", name)
        await self._flush(L)
        metrics.reconcile.observe(time.monotonic() - started)
        return plan

    # ------------------------------------------------------------------ rollout endpoints
    @staticmethod
    def _rolling(L: Leadership) -> set[str]:
        """Service jobs with ports that still run tasks of another fingerprint."""
        out: set[str] = set()
        draining = {n for n, d in L.state.drains.items() if d.draining}
        for a in L.state.assignments.values():
            if a.desired != "run" or a.job in out:
                continue
            rec = L.state.jobs.get(a.job)
            if (rec is not None and rec.spec.kind == "service" and rec.spec.ports
                    and (a.fingerprint != rec.spec.fingerprint() or a.node in draining)):
                out.add(a.job)
        return out

    async def _follow_rollout_endpoints(self, L: Leadership) -> None:
        """Follow `/services/<job>` of every job being rolled out (the first read done
        before this returns), so the reconciler replaces an old task only once its
        successor's endpoint is registered, not merely healthy."""
        assert L.nursery is not None
        for job in sorted(self._rolling(L) - set(L.registered)):
            await L.nursery.start(self._watch_endpoints, L, job)

    async def _watch_endpoints(self, L: Leadership, job: str,
                               task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        started = False
        try:
            async with aclosing(self.store.watch_children(paths.services(job))) as names_:
                async for names in names_:
                    L.registered[job] = set(names)
                    if not started:
                        started = True
                        task_status.started()
                    else:
                        L.poke()
                    if job not in self._rolling(L):
                        return  # rolled out: health alone judges its tasks again
        except CoordinationError as e:
            log.warning("following the endpoints of %s stopped (%s); its rollout is "
                        "judged on health alone", job, e)
        finally:
            L.registered.pop(job, None)
            if not started:
                task_status.started()

    async def _flush(self, L: Leadership) -> None:
        """Write the cache's changes (fenced), then push the nodes whose set changed: a
        node is told only what the store already holds."""
        if L.term.lost.is_set():
            raise StaleEpoch(L.epoch)
        buffered = {job: list(evs) for job, evs in L.history.buffer.items()}
        try:
            extra = await L.history.take_ops(L.writer.persisted.dirs)
            stamp = {"epoch": L.epoch, "generation": next(L.generation)}
            await L.writer.flush(L.state, extra, stamp)
        except StaleEpoch:
            L.term.lost.set()
            raise
        except CoordinationError:
            for job, evs in buffered.items():  # keep the events for the next flush
                L.history.buffer.setdefault(job, [])[:0] = evs
            raise
        finally:
            L.history.written()
        unpushed, L.unpushed = L.unpushed, set()
        for name in unpushed:
            self._push(L, name)
        trim = await L.history.trim_ops()
        if trim:
            await L.writer.write(trim)

    async def _client_flush(self, L: Leadership) -> None:
        """`_flush` for a client's write: a lost term is NotLeader to the client."""
        try:
            await self._flush(L)
        except StaleEpoch:
            raise NotLeader(self._leader_url()) from None

    def _leader_url(self) -> str:
        url = (self.leader_info or {}).get("url") or ""
        return "" if url == self.url else url

    # ------------------------------------------------------------------ client API
    async def leading(self) -> Leadership:
        """This conductor's term, or NotLeader naming the leader."""
        L = self.lead
        if L is not None and not L.ready.is_set():
            with trio.move_on_after(READY_WAIT):
                await L.ready.wait()
            L = self.lead
        if L is None or L.term.lost.is_set() or not L.ready.is_set():
            raise NotLeader(self._leader_url())
        return L

    def leader(self) -> dict[str, Any]:
        L = self.lead
        if L is not None and not L.term.lost.is_set():
            return {"leader": True, "name": self.name, "url": self.url, "epoch": L.epoch}
        info = self.leader_info or {}
        url = info.get("url") or ""
        if url == self.url:
            url = ""
        return {"leader": False, "name": info.get("name") if url else None,
                "url": url or None, "epoch": info.get("epoch") if url else None}

    async def task_events(self, node: str, events: list[Any]) -> int:
        L = await self.leading()
        return self._merge_reports(L, node, list(events or []))

    async def job_run(self, spec: Any) -> dict[str, Any]:
        if not isinstance(spec, dict):
            raise ValueError("job_run needs the job file as a mapping")
        # SpecError names every problem; names as people give them (63 characters)
        return await self._submit(validate(spec))

    async def _submit(self, job: JobSpec) -> dict[str, Any]:
        """Write ``job`` as the job's next version (unless it is the current one) and
        say what placing it will find wrong: `job run`, `job scale`, `job revert`."""
        L = await self.leading()
        job = await self.secrets.stamp(self.store, job)  # refused: an unknown secret
        async with L.lock:
            rec, new, now = self._candidate(L, job)
            if new is None:
                return {"name": job.name, "version": rec.version, "changed": False}
            L.state.jobs[job.name] = new
            L.history.add(event(job.name, "", "", "submitted",
                                f"version {new.version}", at=now))
            await self._client_flush(L)
            problems = self._placement_problems(L, job.name, now)
        L.poke()
        return {"name": job.name, "version": new.version, "changed": True, **problems}

    def _candidate(self, L: Leadership, job: JobSpec) -> tuple[Any, JobRecord | None, float]:
        """(the stored record, the record `job run` of ``job`` would write or None when
        nothing changes, now); the caller holds the lock."""
        rec = L.state.jobs.get(job.name)
        now = self.clock()
        return rec, candidate_record(rec, job, now,
                                     _rollback_target(rec) if rec else None), now

    def _placement_problems(self, L: Leadership, name: str, now: float) -> dict[str, Any]:
        """What the next reconciliation will find wrong with placing job ``name`` (the
        pure reconciler, nothing applied), for `job run` to warn about at once."""
        plan = reconcile(L.state.jobs, L.state.nodes, L.state.assignments,
                         L.state.statuses, now, self.failover_grace, L.registered)
        return placement_problems(plan, name)

    async def job_scale(self, name: str, count: Any) -> dict[str, Any]:
        """`helios job scale`: the current spec with another `count`, as a new version
        (applied in place: scaling replaces no running task)."""
        L = await self.leading()
        rec = self._job(L, name)
        return await self._submit(JobSpec.from_dict(rec.spec.to_dict() | {"count": count}))

    async def job_versions(self, name: str) -> list[dict[str, Any]]:
        L = await self.leading()
        return views.job_versions(self._job(L, name))

    async def job_revert(self, name: str, version: Any) -> dict[str, Any]:
        """`helios job revert`: submit a kept version's spec again, as a new version
        rolled out like any update (as `nomad job revert`)."""
        L = await self.leading()
        rec = self._job(L, name)
        spec = views.kept_spec(rec, version)
        if spec is None:
            kept = [v.get("version") for v in rec.versions]
            raise VersionNotFound(
                f"job {name!r} has no version {version!r} kept"
                + (f" (kept: {', '.join(str(v) for v in kept)})" if kept else ""))
        return await self._submit(JobSpec.from_dict(spec))

    async def job_inspect(self, name: str) -> dict[str, Any]:
        L = await self.leading()
        return views.job_inspect(self._job(L, name))

    async def job_plan(self, spec: Any) -> dict[str, Any]:
        """`helios job plan`: what `job run` of ``spec`` would change and where it would
        place tasks, from the leader's cache; nothing is written."""
        if not isinstance(spec, dict):
            raise ValueError("job_plan needs the job file as a mapping")
        job = JobSpec.from_dict(spec)
        L = await self.leading()
        job = await self.secrets.stamp(self.store, job)
        async with L.lock:
            rec, new, now = self._candidate(L, job)
            if new is None:
                return {"name": job.name, "version": rec.version, "changed": False,
                        "changes": [], "place": [], "stop": [], "update": [],
                        "unplaced": [], "failures": [], "plan": ["no changes"]}
            out = preview(L.state, new, now, self.failover_grace, L.registered,
                          rec.spec if rec else None)
        return {**out, "changed": True}

    def _job(self, L: Leadership, name: str) -> JobRecord:
        rec = L.state.jobs.get(name)
        if rec is None:
            raise JobNotFound(f"no job named {name!r}")
        return rec

    async def job_stop(self, name: str) -> dict[str, Any]:
        L = await self.leading()
        async with L.lock:
            rec = self._job(L, name)
            if not rec.stopped:
                L.state.jobs[name] = rec.replace(stopped=True)
                L.history.add(event(name, "", "", "stop requested", at=self.clock()))
                await self._client_flush(L)
        L.poke()
        return {"name": name, "version": rec.version, "stopped": True}

    async def job_rm(self, name: str) -> dict[str, Any]:
        """Delete a job. Removing a cron or parameterized job cascades: its runs stop
        now and are collected once finished (`_collect`), its `/cron/<job>` goes."""
        L = await self.leading()
        async with L.lock:
            rec = self._job(L, name)
            del L.state.jobs[name]
            now = self.clock()
            runs = sorted(r.name for r in L.state.jobs.values() if r.parent == name)
            L.history.add(event(name, "", "", "removed",
                                f"with its {len(runs)} run(s)" if runs else "", at=now))
            for run in runs:
                r = L.state.jobs[run]
                if not r.stopped:
                    L.state.jobs[run] = r.replace(stopped=True)
                    L.history.add(event(run, "", "", "stop requested",
                                        f"its parent {name} was removed", at=now))
            await self._client_flush(L)
            if rec.spec.kind == "cron" and L.cron is not None:
                L.cron.forget(name)
                try:
                    if await self.store.exists(paths.cron(name)):
                        await L.writer.write([Delete(paths.cron(name))])
                except StaleEpoch:
                    L.term.lost.set()
                    raise NotLeader(self._leader_url()) from None
                except CoordinationError as e:  # the job is gone; its last tick is moot
                    log.warning("cron state of removed job %s not deleted: %s", name, e)
            L.gc_next = 0.0  # collect the finished runs at the next pass
        L.poke()
        out: dict[str, Any] = {"name": name, "version": rec.version, "removed": True}
        if runs:
            out["runs"] = runs
        return out

    async def job_status(self, name: str) -> dict[str, Any]:
        L = await self.leading()
        return views.job_status(L.state, self._job(L, name), L.pending, L.steps,
                                now=self.clock())

    async def job_ls(self) -> list[dict[str, Any]]:
        L = await self.leading()
        return views.job_ls(L.state, self.clock())

    async def nodes(self) -> list[dict[str, Any]]:
        L = await self.leading()
        return views.nodes(L.state)

    async def node_rm(self, name: str, force: bool = False) -> dict[str, Any]:
        """Forget a machine that is gone for good (`helios node rm`): its record and
        presence (`/nodes/<name>`), its assignments and statuses. Its tasks are placed
        elsewhere at once (the reconciler sees a node it no longer knows); finished batch
        tasks that mark a slot done are kept until their job goes, else the slot would
        run again. Refused while the node's session lives, unless `force`: then its
        daemon is told to stop every task, and, still running, it registers again as an
        empty node (as a kubelet does when its Node object is deleted): only stopping
        the daemon keeps the machine out."""
        paths.check_name(name)
        L = await self.leading()
        async with L.lock:
            node = L.state.nodes.get(name)
            record = L.records.get(name)
            jobs_on_it = {a.id: a.job for a in L.state.assignments.values() if a.node == name}
            on_it = sorted(jobs_on_it)
            if node is None and record is None and not on_it \
                    and not await self.store.exists(paths.node(name)) \
                    and not any(st.node == name for st in L.state.statuses.values()):
                raise NodeNotFound(f"no node named {name!r}")
            up = (node is not None and node.up) or await self.store.exists(
                paths.node_up(name))
            if up and not force:
                raise NodeUp(f"node {name} is up (its session is alive): stop its daemon "
                             "first, or remove it anyway with --force")
            url = self._node_url(L, name, node.address) if node and node.address else None
            L.state.nodes.pop(name, None)
            L.state.drains.pop(name, None)
            L.records.pop(name, None)
            L.presence.pop(name, None)
            L.want_statuses.discard(name)
            L.unpushed.discard(name)
            try:
                await self._step(L)  # its tasks are forgotten and placed elsewhere
                keep = {a.id for a in L.state.assignments.values() if a.node == name}
                keep |= {st.id for st in L.state.statuses.values() if st.node == name}
                found = {d: await self._children(d) for d in (
                    paths.node(name), paths.assignments(name), paths.statuses(name))}
                doomed = node_leftovers(
                    name, node_children=found[paths.node(name)],
                    assignment_children=found[paths.assignments(name)],
                    status_children=found[paths.statuses(name)], keep=keep)
                why = f"node {name} was removed" + (" while up (--force)" if up else "")
                for tid in on_it:
                    if tid not in keep:
                        L.history.add(event(jobs_on_it[tid], tid, name, "lost", why,
                                            at=self.clock()))
                if doomed:
                    await L.writer.write([Delete(p) for p in doomed])
                await self._flush(L)  # (the events)
            except StaleEpoch:
                L.term.lost.set()
                raise NotLeader(self._leader_url()) from None
            for d in (paths.assignments(name), paths.statuses(name)):
                if found[d] is None or d in doomed:
                    L.writer.persisted.dirs.discard(d)
                else:
                    L.writer.persisted.dirs.add(d)  # deleted once emptied (_collect)
            log.info("node %s removed%s: %d task(s) to place elsewhere, %d finished kept",
                     name, " (forced while up)" if up else "", len(on_it) - len(keep),
                     len(keep))
        if up and url is not None:
            await self._tell_removed(L, name, url)
        L.poke()
        return {"name": name, "removed": True, "was_up": bool(up),
                "tasks": len(on_it), "kept": sorted(keep)}

    async def node_drain(self, name: str, deadline: float | None = None,
                         draining: bool = True, eligible: bool | None = None
                         ) -> dict[str, Any]:
        """Start (or with `draining=False` end) a node's drain, or only set its
        eligibility (`eligible`); kept in `/drain/<name>`, fenced. Answers the drain
        report (`drain.drain_report`)."""
        paths.check_name(name)
        L = await self.leading()
        async with L.lock:
            if name not in L.state.nodes and name not in L.state.drains:
                raise NodeNotFound(f"no node named {name!r}")
            now = self.clock()
            if set_drain(L.state, name, now, deadline=deadline, draining=draining,
                         eligible=eligible):
                d = L.state.drains.get(name)
                log.info("node %s: %s", name, "draining" if d is not None and d.draining
                         else "eligible" if d is None or d.eligible else "ineligible")
                await self._client_flush(L)
        L.poke()
        return drain_report(L.state, name, self.clock(), L.pending, L.steps)

    async def rebalance(self, dry_run: bool = False) -> dict[str, Any]:
        """Plan moves that free whole nodes (`rebalance.plan_rebalance`); unless
        `dry_run`, carry them out by draining the freed nodes for the rebalance (the
        rollout's rules move every task)."""
        L = await self.leading()
        async with L.lock:
            plan = plan_rebalance(L.state, with_drains(L.state.nodes, L.state.drains))
            out = {**plan.to_dict(), "dry_run": bool(dry_run)}
            if dry_run or not plan.frees:
                return out
            now = self.clock()
            for name in plan.frees:
                set_drain(L.state, name, now, reason="rebalance")
            log.info("rebalance: freeing %s (%s)", ", ".join(plan.frees), plan.gain)
            await self._client_flush(L)
        L.poke()
        return out

    async def node_drain_status(self, name: str) -> dict[str, Any]:
        """Where a node's drain is, and what it still waits for."""
        L = await self.leading()
        if name not in L.state.nodes and name not in L.state.drains:
            raise NodeNotFound(f"no node named {name!r}")
        return drain_report(L.state, name, self.clock(), L.pending, L.steps)

    async def _children(self, path: str) -> list[str] | None:
        """Children of `path`, or None when it does not exist."""
        names = await self.store.children(path)
        return names if names or await self.store.exists(path) else None

    async def _tell_removed(self, L: Leadership, name: str, url: str) -> None:
        """A removed node whose daemon still runs: an empty desired set, so it stops its
        copies of tasks now placed elsewhere (best effort: it is no member any more)."""
        try:
            ref = await self._node_ref(name, url)
            await ref.ask("assign", L.epoch, next(L.generation), [], timeout=5.0)
        except actors.ActorError as e:
            log.warning("removed node %s was not told to stop its tasks: %s", name, e)

    async def endpoints(self, name: str) -> list[dict[str, Any]]:
        L = await self.leading()
        return views.endpoints(L.state, self._job(L, name))

    async def job_history(self, name: str) -> list[dict[str, Any]]:
        L = await self.leading()
        events = await read_history(self.store, name)
        if not events and name not in L.state.jobs:
            raise JobNotFound(f"no job named {name!r}")
        # Events being written while the store was read may be in both: once is enough.
        stored = {_event_key(e) for e in events}
        pending = [e for e in L.history.unwritten(name) if _event_key(e) not in stored]
        return events + pending

    async def job_logs(self, name: str, task: str | None = None, since: Any = None,
                       tail: int | None = None) -> dict[str, Any]:
        """Container output, fetched from the node of each task. With several tasks each
        line is prefixed by its task id and `cursor` maps task id -> that task's cursor
        (pass it back as `since`)."""
        L = await self.leading()
        rows = [(a.id, a.node) for a in L.state.assignments.values() if a.job == name]
        rows += [(st.id, st.node) for st in L.state.statuses.values()
                 if st.job == name and (st.id, st.node) not in rows]
        if not rows and name not in L.state.jobs:
            raise JobNotFound(f"no job named {name!r}")
        if task:
            rows = [r for r in rows if r[0] == task]
            if not rows:
                raise TaskNotFound(f"job {name!r} has no task {task!r}")
        rows.sort()
        many = len(rows) > 1
        cursors: dict[str, Any] = dict(since) if isinstance(since, dict) else {}
        lines: list[str] = []
        cursor: Any = since
        # tasks whose logs are not in the answer, and why: the CLI says so and exits
        # non-zero rather than pass a partial answer off as the whole
        missing: list[dict[str, str]] = []
        for tid, node_name in rows:
            node = L.state.nodes.get(node_name)
            if node is None or not node.up:
                missing.append({"task": tid, "node": node_name,
                                "reason": f"node {node_name} is "
                                          f"{'down' if node is not None else 'gone'}"})
                continue
            start = cursors.get(tid) if isinstance(since, dict) else since
            try:
                ref = await self._node_ref(node_name,
                                           self._node_url(L, node_name, node.address))
                out = await ref.ask("logs", tid, since=start, tail=tail, timeout=NODE_TIMEOUT)
            except actors.ActorError as e:
                if not many:
                    raise NodeUnreachable(f"node {node_name} did not give the logs of "
                                          f"{tid}: {e}") from None
                missing.append({"task": tid, "node": node_name,
                                "reason": f"node {node_name} did not answer: {e}"})
                continue
            if out.get("error"):
                missing.append({"task": tid, "node": node_name, "reason": str(out["error"])})
            got = list(out.get("lines") or [])
            lines.extend(f"[{tid}] {line}" if many else line for line in got)
            cursors[tid] = cursor = out.get("cursor")
        return {"lines": lines, "cursor": cursors if many else cursor, "missing": missing,
                "tasks": len(rows)}

    async def job_dispatch(self, name: str, payload: Any = None,
                           idempotency_key: str | None = None) -> dict[str, Any]:
        """Run a parameterized job once (`dispatch.dispatch`: the run and its idempotency
        key are created in one fenced transaction), then adopt the run into the cache as
        written."""
        L = await self.leading()
        async with L.lock:
            template = self._job(L, name)
            try:
                out = await dispatch(L.term, template, payload, idempotency_key,
                                     now=self.clock())
            except StaleEpoch:
                L.term.lost.set()
                raise NotLeader(self._leader_url()) from None
            if out.created and out.record is not None:
                self._adopt_written_job(L, out.record)
                L.history.add(event(name, "", "", "dispatched", f"run {out.run}",
                                    at=self.clock(), run=out.run))
                await self._client_flush(L)
        L.poke()
        return out.to_dict()

    # ------------------------------------------------------------------ ACL tokens, audit
    async def _acl(self, op: str, *args: Any) -> Any:
        """A token operation, written by the leader in its term (fenced by its epoch).
        Who may ask is the authorization table's business, never this method's."""
        L = await self.leading()
        async with L.lock:
            admin = TokenAdmin(self.store, L.term.transaction)
            try:
                return await getattr(admin, op)(*args)
            except StaleEpoch:
                L.term.lost.set()
                raise NotLeader(self._leader_url()) from None

    async def acl_bootstrap(self) -> dict[str, Any]:
        out = await self._acl("bootstrap")
        log.warning("ACLs bootstrapped: anonymous requests are refused from now on")
        return out

    async def acl_token_create(self, name: str, role: str) -> dict[str, Any]:
        return await self._acl("create", name, role)

    async def acl_token_ls(self) -> list[dict[str, Any]]:
        return await self._acl("ls")

    async def acl_token_rm(self, name: str) -> dict[str, Any]:
        return await self._acl("rm", name)

    async def audit(self, since: float | None = None, limit: int = 10_000
                    ) -> list[dict[str, Any]]:
        """Audit records newer than `since` (a time), from the store: any conductor
        answers, a standby too. What was just decided is written first."""
        await self.security.audit.flush()
        return await read_audit(self.store, since, max(1, min(int(limit), 100_000)))

    async def events(self, after: int = -1, job: str | None = None,
                     limit: int = 1000) -> dict[str, Any]:
        """The event stream from the store (`helios.events`): any conductor answers,
        a standby too, and the index means the same on every one. Never waits (the
        actor answers one message at a time): followers poll."""
        return await read_events(self.store, int(after), job, max(1, min(int(limit), 1000)))

    # ------------------------------------------------------------------ secrets
    async def _secret(self, op: str, *args: Any) -> Any:
        """A secret operation by the leader in its term (helios.secrets.store)."""
        L = await self.leading()
        async with L.lock:
            admin = SecretAdmin(self.store, L.term.transaction, self.secrets.keyring)
            try:
                return await getattr(admin, op)(*args)
            except StaleEpoch:
                L.term.lost.set()
                raise NotLeader(self._leader_url()) from None

    def _secret_users(self, L: Leadership, name: str) -> list[str]:
        return sorted(r.name for r in L.state.jobs.values() if name in uses(r.spec))

    async def secret_set(self, name: str, value: Any) -> dict[str, Any]:
        """Seal and store; every job using the secret is submitted again at its new
        revision, so it rolls like any other change."""
        out = await self._secret("set", name, value)
        L = await self.leading()
        rolled = []
        for job in self._secret_users(L, name):
            rec = L.state.jobs.get(job)
            if rec is not None and rec.parent is None and not rec.stopped and \
                    (await self._submit(rec.spec)).get("changed"):
                rolled.append(job)
        return out | {"rolled": rolled}

    async def secret_ls(self) -> list[dict[str, Any]]:
        return await self._secret("ls")

    async def secret_rm(self, name: str) -> dict[str, Any]:
        L = await self.leading()
        return await self._secret("rm", name, self._secret_users(L, name))

    async def secret_rewrap(self) -> dict[str, Any]:
        return await self._secret("rewrap")

    def _adopt_written_job(self, L: Leadership, record: JobRecord) -> None:
        """A job record another module already wrote (fenced): cache it as persisted, so
        the writer does not create it again."""
        L.state.jobs[record.name] = record
        L.writer.persisted.state.jobs[record.name] = record

    async def _fire_cron(self, L: Leadership) -> None:
        """Consume due cron ticks (`cron_runner`: one fenced claim per tick); runs become
        batch jobs in the cache."""
        if not any(r.spec.kind == "cron" for r in L.state.jobs.values()):
            return
        running = running_templates(L.state.jobs, L.state.assignments, L.state.statuses)
        for outcome in await L.cron.run_due(L.state.jobs, running=running):
            if outcome.record is not None:
                self._adopt_written_job(L, outcome.record)
            L.history.add(outcome.history_event())


def _rollback_target(rec: JobRecord) -> JobSpec | None:
    """The spec an automatic rollback of the version after ``rec`` restores: the latest
    one that rolled out fully (like Nomad's latest stable version). A version still
    rolling out is only that when nothing earlier is known."""
    if rec.rolled_out == rec.version:
        return rec.spec
    if rec.failed_version == rec.version:
        return rec.previous
    return rec.previous if rec.previous is not None else rec.spec


def _event_key(ev: dict[str, Any]) -> str:
    return json.dumps(ev, sort_keys=True, default=str)


class CoreActor(actors.Actor):
    """Runs the conductor's contention loop for as long as it lives."""

    def __init__(self, conductor: Conductor) -> None:
        self.conductor = conductor

    async def on_start(self) -> None:
        self.start_soon(self.conductor.run)


class ConductorActor(actors.Actor):
    """`protocol.CONDUCTOR_ACTOR`: the handlers of protocol.py, for nodes and the CLI."""

    def __init__(self, conductor: Conductor) -> None:
        self.c = conductor

    @actors.handler
    async def task_events(self, node: str, events: list[Any]) -> int:
        return await _answer(self.c.task_events(node, events))

    @actors.handler
    async def job_run(self, spec: dict[str, Any]) -> dict[str, Any]:
        return await _answer(self.c.job_run(spec))

    @actors.handler
    async def job_plan(self, spec: dict[str, Any]) -> dict[str, Any]:
        return await _answer(self.c.job_plan(spec))

    @actors.handler
    async def job_scale(self, name: str, count: Any) -> dict[str, Any]:
        return await _answer(self.c.job_scale(name, count))

    @actors.handler
    async def job_versions(self, name: str) -> list[dict[str, Any]]:
        return await _answer(self.c.job_versions(name))

    @actors.handler
    async def job_revert(self, name: str, version: Any) -> dict[str, Any]:
        return await _answer(self.c.job_revert(name, version))

    @actors.handler
    async def job_inspect(self, name: str) -> dict[str, Any]:
        return await _answer(self.c.job_inspect(name))

    @actors.handler
    async def job_ls(self) -> list[dict[str, Any]]:
        return await _answer(self.c.job_ls())

    @actors.handler
    async def job_status(self, name: str) -> dict[str, Any]:
        return await _answer(self.c.job_status(name))

    @actors.handler
    async def job_stop(self, name: str) -> dict[str, Any]:
        return await _answer(self.c.job_stop(name))

    @actors.handler
    async def job_rm(self, name: str) -> dict[str, Any]:
        return await _answer(self.c.job_rm(name))

    @actors.handler
    async def job_history(self, name: str) -> list[dict[str, Any]]:
        return await _answer(self.c.job_history(name))

    @actors.handler
    async def job_logs(self, name: str, task: str | None = None, since: Any = None,
                       tail: int | None = None) -> dict[str, Any]:
        return await _answer(self.c.job_logs(name, task=task, since=since, tail=tail))

    @actors.handler
    async def job_dispatch(self, name: str, payload: Any = None,
                           idempotency_key: str | None = None) -> dict[str, Any]:
        return await _answer(self.c.job_dispatch(name, payload=payload,
                                         idempotency_key=idempotency_key))

    @actors.handler
    async def nodes(self) -> list[dict[str, Any]]:
        return await _answer(self.c.nodes())

    @actors.handler
    async def node_rm(self, name: str, force: bool = False) -> dict[str, Any]:
        return await _answer(self.c.node_rm(name, force=force))

    @actors.handler
    async def node_drain(self, name: str, deadline: float | None = None,
                         draining: bool = True, eligible: bool | None = None
                         ) -> dict[str, Any]:
        return await _answer(self.c.node_drain(name, deadline, draining, eligible))

    @actors.handler
    async def rebalance(self, dry_run: bool = False) -> dict[str, Any]:
        return await _answer(self.c.rebalance(dry_run))

    @actors.handler
    async def node_drain_status(self, name: str) -> dict[str, Any]:
        return await _answer(self.c.node_drain_status(name))

    @actors.handler
    async def endpoints(self, name: str) -> list[dict[str, Any]]:
        return await _answer(self.c.endpoints(name))

    @actors.handler
    async def leader(self) -> dict[str, Any]:
        return self.c.leader()

    @actors.handler
    async def events(self, after: int = -1, job: str | None = None,
                     limit: int = 1000) -> dict[str, Any]:
        return await _answer(self.c.events(after, job, limit))

    @actors.handler
    async def acl_bootstrap(self) -> dict[str, Any]:
        return await _answer(self.c.acl_bootstrap())

    @actors.handler
    async def acl_token_create(self, name: str, role: str) -> dict[str, Any]:
        return await _answer(self.c.acl_token_create(name, role))

    @actors.handler
    async def acl_token_ls(self) -> list[dict[str, Any]]:
        return await _answer(self.c.acl_token_ls())

    @actors.handler
    async def acl_token_rm(self, name: str) -> dict[str, Any]:
        return await _answer(self.c.acl_token_rm(name))

    @actors.handler
    async def audit(self, since: float | None = None, limit: int = 10_000
                    ) -> list[dict[str, Any]]:
        return await _answer(self.c.audit(since, limit))

    @actors.handler
    async def secret_set(self, name: str, value: Any) -> dict[str, Any]:
        return await _answer(self.c.secret_set(name, value))

    @actors.handler
    async def secret_ls(self) -> list[dict[str, Any]]:
        return await _answer(self.c.secret_ls())

    @actors.handler
    async def secret_rm(self, name: str) -> dict[str, Any]:
        return await _answer(self.c.secret_rm(name))

    @actors.handler
    async def secret_rewrap(self) -> dict[str, Any]:
        return await _answer(self.c.secret_rewrap())


async def _answer(call: Any) -> Any:
    """Run a handler's work; an expected error (NotLeader, JobNotFound, a bad spec...) is
    the answer, refused to the asker under its own type name, and leaves the actor as
    it was. Anything else is a fault: the actor crashes and its supervisor restarts it."""
    try:
        return await call
    except actors.Refusal:
        raise
    except Exception as e:
        if type(e).__name__ in EXPECTED:
            raise actors.Refusal(str(e), type_name=type(e).__name__) from e
        raise


def conductor_tree(conductor: Conductor) -> list[actors.ChildSpec]:
    """Children of the conductor's supervisor: the core (contention, term) and the front
    (client handlers). Either is restarted if it crashes; the core then contends again
    from the store. Error answers are refusals and end neither."""
    return [actors.child(CoreActor, conductor, name="conductor-core", restart="permanent"),
            actors.child(ConductorActor, conductor, name=protocol.CONDUCTOR_ACTOR,
                         restart="permanent")]
