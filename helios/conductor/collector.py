"""The leader's garbage collection (decisions in `gc.py`, pure): finished runs, their
history, expired idempotency keys and the empty directories of removed nodes.

An object the reconcile loop calls after each pass (`collect`), plus the term's own
key-sweeping task (`key_gc_loop`). Every write goes through the term's fenced paths (the
loop's `flush`, `Leadership.writer`), and every decision is taken from the leader's cache
under its lock.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from helios.conductor.dispatch import DISPATCH
from helios.conductor.gc import (
    GCPolicy,
    KeyRecord,
    expired_keys,
    orphan_histories,
    plan_runs,
    stale_node_dirs,
    stale_service_dirs,
)
from helios.conductor.history import event
from helios.conductor.term import Leadership
from helios.coordination import paths
from helios.coordination.errors import CoordinationError, CorruptValue, StaleEpoch
from helios.coordination.store import Delete, Store

log = logging.getLogger(__name__)

__all__ = ["Collector"]

SERVICE_DIRS = paths.SERVICES + "/"  # endpoint directories: only they need the pairs


class Collector:
    """Garbage collection of one term; `flush` is the term's fenced write of its cache."""

    def __init__(self, lead: Leadership, store: Store, gc: GCPolicy,
                 clock: Callable[[], float], flush: Callable[[], Awaitable[None]]) -> None:
        self.lead = lead
        self.store = store
        self.gc = gc
        self.clock = clock
        self._flush = flush

    async def collect(self) -> None:
        """One garbage-collection pass (`gc.py`), after a reconciliation and at most once
        per `gc.interval`: decided from the cache alone, bounded per pass, written
        through `_flush` (fenced). Runs of removed parents are stopped; collected runs
        lose their record (the reconciler then forgets their assignments and statuses)
        and their history; their parents' history names them, one event per parent
        and pass. Also deletes the empty directories of removed nodes."""
        L = self.lead
        now = self.clock()
        if now < L.gc_next:
            return
        L.gc_next = now + self.gc.interval
        out = plan_runs(L.state.jobs, L.state.assignments, L.state.statuses,
                        L.state.nodes, now, self.gc)
        if out:
            for name in out.stop:
                rec = L.state.jobs[name]
                L.state.jobs[name] = rec.replace(stopped=True)
                L.history.add(event(name, "", "", "stop requested",
                                    f"its parent {rec.parent} was removed", at=now))
            for c in out.collect:
                L.state.jobs.pop(c.run, None)
                L.drop_history.add(c.run)
            for parent, cs in sorted(out.by_parent().items()):
                runs = [c.run for c in cs]
                why = "; ".join(dict.fromkeys(c.reason for c in cs))
                L.history.add(event(parent, "", "", "runs collected",
                                    f"{len(runs)} finished run{'s' if len(runs) != 1 else ''}"
                                    f" ({why}): {', '.join(runs)}", at=now, runs=runs))
            if out.collect:
                log.info("epoch %d: collecting %d finished run(s): %s", L.epoch,
                         len(out.collect), ", ".join(c.run for c in out.collect))
            await self._flush()
            L.poke()  # the reconciler forgets the collected runs' tasks
        L.drop_history.difference_update(L.state.jobs)  # a job created again keeps it
        if L.drop_history:
            runs = sorted(L.drop_history)[:self.gc.max_runs_per_pass]
            ops = await L.history.drop_ops(runs, L.writer.persisted.dirs)
            if ops:
                await L.writer.write(ops)
            L.drop_history.difference_update(runs)
        await self._drop_node_dirs()

    async def _drop_node_dirs(self) -> None:
        """Delete the empty `/assignments/<n>` and `/status/<n>` of nodes that are gone
        (`helios node rm` left them while finished batch records were still in them),
        and the endpoint directories no assignment needs any more."""
        L = self.lead
        persisted = L.writer.persisted
        unused: list[str] = []
        if any(d.startswith(SERVICE_DIRS) for d in persisted.dirs):
            pairs = {(a.job, a.node) for a in persisted.state.assignments.values()}
            pairs |= {(a.job, a.node) for a in L.state.assignments.values()}
            unused = stale_service_dirs(persisted.dirs, pairs, L.state.jobs)
        if unused:
            persisted.dirs.difference_update(unused)  # tried once per term
            await L.writer.write([Delete(d) for d in unused])
        known = set(L.state.nodes) | {n for n, r in L.records.items() if r is not None}
        if not stale_node_dirs(persisted.dirs, known, ()):
            return  # the usual case: every node directory belongs to a known node
        used = {a.node for a in persisted.state.assignments.values()}
        used |= {st.node for st in persisted.state.statuses.values()}
        used |= {a.node for a in L.state.assignments.values()}
        used |= {st.node for st in L.state.statuses.values()}
        stale = stale_node_dirs(persisted.dirs, known, used)
        if stale:
            persisted.dirs.difference_update(stale)  # tried once per term
            await L.writer.write([Delete(d) for d in stale])

    async def key_gc_loop(self) -> None:
        """Collect expired idempotency keys (`gc.expired_keys`) every
        `gc.key_sweep_interval`. Reads happen outside the lock (each key once per term:
        keys never change); the decision is taken again and written under it, so a
        dispatch never races its own key's deletion."""
        L = self.lead
        while True:
            await trio.sleep(self.gc.key_sweep_interval)
            try:
                await self.sweep_keys()
                await self._sweep_histories()
            except StaleEpoch:
                L.term.lost.set()
                return
            except CoordinationError as e:
                log.info("epoch %d: idempotency keys not swept (%s); next time", L.epoch, e)

    async def sweep_keys(self) -> None:
        """Delete the idempotency keys that expired (`gc.expired_keys`) and the empty
        key directories of jobs that are gone."""
        L = self.lead
        seen: set[str] = set()
        empty: list[str] = []
        for job in await self.store.children(DISPATCH):
            d = f"{DISPATCH}/{job}"
            names = await self.store.children(d)
            if not names:
                empty.append(job)
            for n in names:
                path = f"{d}/{n}"
                seen.add(path)
                if path not in L.keys:
                    L.keys[path] = await self._read_key(path, job)
        for path in set(L.keys) - seen:
            del L.keys[path]
        async with L.lock:
            if L.term.lost.is_set():
                raise StaleEpoch(L.epoch)
            expired = expired_keys(L.keys.values(), L.state.jobs, self.clock(), self.gc)
            ops: list[Any] = [Delete(k.path) for k in expired]
            ops += [Delete(f"{DISPATCH}/{job}") for job in empty if job not in L.state.jobs]
            if ops:
                await L.writer.write(ops)
                log.info("epoch %d: %d idempotency key(s) expired", L.epoch, len(expired))
            for k in expired:
                L.keys.pop(k.path, None)

    async def _sweep_histories(self) -> None:
        """Queue the histories of jobs gone for `run_retention` (`gc.orphan_histories`)
        for deletion by the next collection pass, which re-checks, under the lock, that
        no job of that name exists again."""
        L = self.lead
        names = await self.store.children(paths.HISTORY)
        L.drop_history.update(orphan_histories(names, L.state.jobs, L.history_absent,
                                               self.clock(), self.gc))

    async def _read_key(self, path: str, job: str) -> KeyRecord:
        """A key as stored; one that cannot be read counts from now, without a run."""
        try:
            entry = await self.store.get(path)
        except CorruptValue as e:
            log.warning("%s", e)
            entry = None
        value = entry.value if entry is not None and isinstance(entry.value, dict) else {}
        created = value.get("created")
        run = value.get("run")
        return KeyRecord(path, job, run if isinstance(run, str) else None,
                         float(created) if isinstance(created, int | float)
                         else self.clock())
