"""The leader's reconcile loop: on every wake-up (`Leadership.poke`) and on a timer, plan
with the pure `reconcile()`, apply the plan to the cache (`plan.apply`), write the cache's
changes (fenced, batched: `store_writer.Writer.flush`) and push each affected node its set.

Level-triggered: every trigger only wakes this loop, which looks at the whole state; a
missed or repeated trigger changes nothing. After each pass the loop calls its
`Collector` (garbage collection). One `ReconcileLoop` per leadership term.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import aclosing
from typing import Any

import trio

from helios.conductor.collector import Collector
from helios.conductor.cron_runner import running_templates
from helios.conductor.drain import finish_drains, with_drains
from helios.conductor.gc import GCPolicy
from helios.conductor.node_sync import NodeSync
from helios.conductor.plan import Plan
from helios.conductor.plan import apply as apply_plan
from helios.conductor.plan_events import plan_events, rollout_events, touched_nodes
from helios.conductor.reconcile import reconcile
from helios.conductor.reschedule import reschedule_due
from helios.conductor.term import Leadership
from helios.coordination.errors import CoordinationError, StaleEpoch, StoreClosed
from helios.coordination.store import Store
from helios.endpoints import follow_endpoints
from helios.metrics import ConductorMetrics
from helios.model import JobRecord

log = logging.getLogger(__name__)

__all__ = ["RECONCILE_INTERVAL", "ReconcileLoop"]

#: longest pause between two reconciliations when nothing happens
RECONCILE_INTERVAL = 2.0


class ReconcileLoop:
    """Plans, writes and pushes for one term; see the module docstring."""

    def __init__(self, lead: Leadership, store: Store, nodes: NodeSync, *,
                 clock: Callable[[], float], failover_grace: float, gc: GCPolicy,
                 metrics: ConductorMetrics) -> None:
        self.lead = lead
        self.store = store
        self.nodes = nodes
        self.clock = clock
        self.failover_grace = failover_grace
        self.metrics = metrics
        self.collector = Collector(lead, store, gc, clock, self.flush)

    async def run(self) -> None:
        """Reconcile (then collect) whenever woken, until the term ends."""
        L = self.lead
        while True:
            with trio.move_on_after(self._next_timeout()):
                await L.wake.wait()
            await trio.sleep(0.005)  # coalesce a burst of triggers into one pass
            L.wake = trio.Event()
            try:
                async with L.lock:
                    await self.step()
                    await self.collector.collect()
            except (StaleEpoch, StoreClosed):
                raise
            except CoordinationError as e:
                # The cache stays ahead of the store; the next pass writes the difference.
                log.warning("epoch %d: writing the plan failed (%s); retrying", L.epoch, e)
                await trio.sleep(1.0)
                L.poke()

    def _next_timeout(self) -> float:
        """Wake in time for the earliest failover grace to run out."""
        timeout = RECONCILE_INTERVAL
        now = self.clock()
        state = self.lead.state
        if self.lead.cron is not None:
            wake = self.lead.cron.next_wakeup(state.jobs, now)
            if wake is not None:
                timeout = min(timeout, wake - now + 0.005)
        for wait in reschedule_due(state.jobs.values(), now):
            timeout = min(timeout, wait + 0.02)
        for n in state.nodes.values():
            if not n.up and n.down_since is not None:
                left = n.down_since + self.failover_grace - now
                if left >= 0:
                    timeout = min(timeout, left + 0.02)
        return max(timeout, 0.02)

    async def step(self) -> Plan:
        """One reconciliation: plan, apply to the cache, write, push. Repeats (bounded)
        while a plan has changes, so a cascade settles within one trigger. The caller
        holds the term's lock."""
        L = self.lead
        plan = Plan()
        started = time.monotonic()
        await self._fire_cron()
        await self._follow_rollout_endpoints()
        for _ in range(4):
            now = self.clock()
            plan = reconcile(L.state.jobs, with_drains(L.state.nodes, L.state.drains),
                             L.state.assignments, L.state.statuses, now,
                             self.failover_grace, L.registered)
            L.pending = list(plan.pending)
            L.steps = list(plan.rollout)
            if not plan.has_changes():
                break
            log.info("epoch %d plan:\n%s", L.epoch, plan)
            self.metrics.count_plan(plan)
            before = L.state
            L.state = apply_plan(before, plan, now)
            L.history.extend(plan_events(plan, now))
            L.history.extend(rollout_events(plan, L.state, now))
            L.unpushed.update(touched_nodes(plan, before, L.state))
            await self.flush()
        for name in finish_drains(L.state, self.clock()):
            log.info("node %s drained: nothing runs there any more", name)
        await self.flush()
        self.metrics.reconcile.observe(time.monotonic() - started)
        return plan

    async def flush(self) -> None:
        """Write the cache's changes (fenced), then push the nodes whose set changed: a
        node is told only what the store already holds."""
        L = self.lead
        L.check_term()
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
            self.nodes.push(name)
        trim = await L.history.trim_ops()
        if trim:
            await L.writer.write(trim)

    # ------------------------------------------------------------------ cron
    def adopt_written_job(self, record: JobRecord) -> None:
        """A job record another module already wrote (fenced): cache it as persisted, so
        the writer does not create it again."""
        self.lead.state.jobs[record.name] = record
        self.lead.writer.persisted.state.jobs[record.name] = record

    async def _fire_cron(self) -> None:
        """Consume due cron ticks (`cron_runner`: one fenced claim per tick); runs become
        batch jobs in the cache."""
        L = self.lead
        if L.cron is None or not any(r.spec.kind == "cron" for r in L.state.jobs.values()):
            return
        running = running_templates(L.state.jobs, L.state.assignments, L.state.statuses)
        for outcome in await L.cron.run_due(L.state.jobs, running=running):
            if outcome.record is not None:
                self.adopt_written_job(outcome.record)
            L.history.written_with_claim(outcome.job)  # its event is in the store

    # ------------------------------------------------------------------ rollout endpoints
    def _rolling(self) -> set[str]:
        """Service jobs with ports that still run tasks of another fingerprint."""
        state = self.lead.state
        out: set[str] = set()
        draining = {n for n, d in state.drains.items() if d.draining}
        for a in state.assignments.values():
            if a.desired != "run" or a.job in out:
                continue
            rec = state.jobs.get(a.job)
            if (rec is not None and rec.spec.kind == "service" and rec.spec.ports
                    and (a.fingerprint != rec.spec.fingerprint() or a.node in draining)):
                out.add(a.job)
        return out

    async def _follow_rollout_endpoints(self) -> None:
        """Follow the endpoints (`/services/<job>/<node>/<task>`) of every job being
        rolled out (the first read done before this returns), so the reconciler
        replaces an old task only once its successor's endpoint is registered, not
        merely healthy."""
        assert self.lead.nursery is not None
        for job in sorted(self._rolling() - set(self.lead.registered)):
            await self.lead.nursery.start(self._watch_endpoints, job)

    async def _watch_endpoints(self, job: str,
                               task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        L = self.lead
        started = False
        try:
            async with aclosing(follow_endpoints(self.store, job)) as endpoints:
                async for eps in endpoints:
                    L.registered[job] = {ep["task"] for ep in eps}
                    if not started:
                        started = True
                        task_status.started()
                    else:
                        L.poke()
                    if job not in self._rolling():
                        return  # rolled out: health alone judges its tasks again
        except CoordinationError as e:
            log.warning("following the endpoints of %s stopped (%s); its rollout is "
                        "judged on health alone", job, e)
        finally:
            L.registered.pop(job, None)
            if not started:
                task_status.started()
