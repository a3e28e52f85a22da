"""The client commands of the conductor (`helios job ...`, `helios node ...`, ACL tokens,
audit, events): what the `ConductorActor` handlers (front.py) forward to.

Each command takes the current term from `Conductor.leading()` (or answers `NotLeader`),
changes the leader's cache under the term's lock, and writes through the term's
reconcile loop (`flush`, fenced) before it answers: a client is told only what the store
holds. Reads (`job_status`, `nodes`...) are views of the cache (`views.py`); the event
stream and the audit log are read from the store by any conductor.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import actors
from helios.conductor import views
from helios.conductor.conductor import Conductor, Leader
from helios.conductor.dispatch import dispatch
from helios.conductor.drain import drain_report, set_drain, with_drains
from helios.conductor.errors import (
    JobNotFound,
    NodeNotFound,
    NodeUnreachable,
    NodeUp,
    NotLeader,
    TaskNotFound,
    VersionNotFound,
)
from helios.conductor.gc import node_leftovers
from helios.conductor.history import event, read_history
from helios.conductor.node_sync import NODE_TIMEOUT
from helios.conductor.preview import candidate_record, placement_problems, preview
from helios.conductor.rebalance import plan_rebalance
from helios.conductor.reconcile import reconcile
from helios.conductor.term import Leadership
from helios.coordination import paths
from helios.coordination.errors import CoordinationError, StaleEpoch
from helios.coordination.store import Delete
from helios.events import read_events
from helios.model import JobRecord
from helios.security.audit import read_audit
from helios.security.tokens import TokenAdmin
from helios.spec import JobSpec, validate

log = logging.getLogger(__name__)

__all__ = ["Commands"]


class Commands:
    """The client commands of one conductor; see the module docstring."""

    def __init__(self, conductor: Conductor) -> None:
        self.c = conductor
        self.store = conductor.store
        self.clock = conductor.clock
        self.failover_grace = conductor.failover_grace
        self.security = conductor.security

    async def task_events(self, node: str, events: list[Any]) -> int:
        T = await self.c.leading()
        return T.nodes.merge_reports(node, list(events or []))

    async def job_run(self, spec: Any) -> dict[str, Any]:
        if not isinstance(spec, dict):
            raise ValueError("job_run needs the job file as a mapping")
        # SpecError names every problem; names as people give them (63 characters)
        return await self._submit(validate(spec))

    async def _submit(self, job: JobSpec) -> dict[str, Any]:
        """Write ``job`` as the job's next version (unless it is the current one) and
        say what placing it will find wrong: `job run`, `job scale`, `job revert`."""
        T = await self.c.leading()
        job = await self.c.secrets.stamp(self.store, job)  # refused: an unknown secret
        L = T.lead
        async with L.lock:
            rec, new, now = self._candidate(L, job)
            if new is None:
                return {"name": job.name, "version": rec.version, "changed": False}
            L.state.jobs[job.name] = new
            L.history.add(event(job.name, "", "", "submitted",
                                f"version {new.version}", at=now))
            await self._client_flush(T)
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
        L = (await self.c.leading()).lead
        rec = _job(L, name)
        return await self._submit(JobSpec.from_dict(rec.spec.to_dict() | {"count": count}))

    async def job_versions(self, name: str) -> list[dict[str, Any]]:
        L = (await self.c.leading()).lead
        return views.job_versions(_job(L, name))

    async def job_revert(self, name: str, version: Any) -> dict[str, Any]:
        """`helios job revert`: submit a kept version's spec again, as a new version
        rolled out like any update (as `nomad job revert`)."""
        L = (await self.c.leading()).lead
        rec = _job(L, name)
        spec = views.kept_spec(rec, version)
        if spec is None:
            kept = [v.get("version") for v in rec.versions]
            raise VersionNotFound(
                f"job {name!r} has no version {version!r} kept"
                + (f" (kept: {', '.join(str(v) for v in kept)})" if kept else ""))
        return await self._submit(JobSpec.from_dict(spec))

    async def job_inspect(self, name: str) -> dict[str, Any]:
        L = (await self.c.leading()).lead
        return views.job_inspect(_job(L, name))

    async def job_plan(self, spec: Any) -> dict[str, Any]:
        """`helios job plan`: what `job run` of ``spec`` would change and where it would
        place tasks, from the leader's cache; nothing is written."""
        if not isinstance(spec, dict):
            raise ValueError("job_plan needs the job file as a mapping")
        job = JobSpec.from_dict(spec)
        L = (await self.c.leading()).lead
        job = await self.c.secrets.stamp(self.store, job)
        async with L.lock:
            rec, new, now = self._candidate(L, job)
            if new is None:
                return {"name": job.name, "version": rec.version, "changed": False,
                        "changes": [], "place": [], "stop": [], "update": [],
                        "unplaced": [], "failures": [], "plan": ["no changes"]}
            out = preview(L.state, new, now, self.failover_grace, L.registered,
                          rec.spec if rec else None)
        return {**out, "changed": True}

    async def job_stop(self, name: str) -> dict[str, Any]:
        T = await self.c.leading()
        L = T.lead
        async with L.lock:
            rec = _job(L, name)
            if not rec.stopped:
                L.state.jobs[name] = rec.replace(stopped=True)
                L.history.add(event(name, "", "", "stop requested", at=self.clock()))
                await self._client_flush(T)
        L.poke()
        return {"name": name, "version": rec.version, "stopped": True}

    async def job_rm(self, name: str) -> dict[str, Any]:
        """Delete a job. Removing a cron or parameterized job cascades: its runs stop
        now and are collected once finished (`Collector.collect`), its `/cron/<job>` goes."""
        T = await self.c.leading()
        L = T.lead
        async with L.lock:
            rec = _job(L, name)
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
            await self._client_flush(T)
            if rec.spec.kind == "cron" and L.cron is not None:
                L.cron.forget(name)
                try:
                    if await self.store.exists(paths.cron(name)):
                        await L.writer.write([Delete(paths.cron(name))])
                except StaleEpoch:
                    L.term.lost.set()
                    raise NotLeader(self.c.leader_url()) from None
                except CoordinationError as e:  # the job is gone; its last tick is moot
                    log.warning("cron state of removed job %s not deleted: %s", name, e)
            L.gc_next = 0.0  # collect the finished runs at the next pass
        L.poke()
        out: dict[str, Any] = {"name": name, "version": rec.version, "removed": True}
        if runs:
            out["runs"] = runs
        return out

    async def job_status(self, name: str) -> dict[str, Any]:
        L = (await self.c.leading()).lead
        return views.job_status(L.state, _job(L, name), L.pending, L.steps,
                                now=self.clock())

    async def job_ls(self) -> list[dict[str, Any]]:
        L = (await self.c.leading()).lead
        return views.job_ls(L.state, self.clock())

    async def nodes(self) -> list[dict[str, Any]]:
        L = (await self.c.leading()).lead
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
        T = await self.c.leading()
        L = T.lead
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
            url = T.nodes.node_url(name, node.address) if node and node.address else None
            L.state.nodes.pop(name, None)
            L.state.drains.pop(name, None)
            L.records.pop(name, None)
            L.presence.pop(name, None)
            L.want_statuses.discard(name)
            L.unpushed.discard(name)
            try:
                await T.loop.step()  # its tasks are forgotten and placed elsewhere
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
                await T.loop.flush()  # (the events)
            except StaleEpoch:
                L.term.lost.set()
                raise NotLeader(self.c.leader_url()) from None
            for d in (paths.assignments(name), paths.statuses(name)):
                if found[d] is None or d in doomed:
                    L.writer.persisted.dirs.discard(d)
                else:
                    L.writer.persisted.dirs.add(d)  # deleted once emptied (Collector)
            log.info("node %s removed%s: %d task(s) to place elsewhere, %d finished kept",
                     name, " (forced while up)" if up else "", len(on_it) - len(keep),
                     len(keep))
        if up and url is not None:
            await T.nodes.tell_removed(name, url)
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
        T = await self.c.leading()
        L = T.lead
        async with L.lock:
            if name not in L.state.nodes and name not in L.state.drains:
                raise NodeNotFound(f"no node named {name!r}")
            now = self.clock()
            if set_drain(L.state, name, now, deadline=deadline, draining=draining,
                         eligible=eligible):
                d = L.state.drains.get(name)
                log.info("node %s: %s", name, "draining" if d is not None and d.draining
                         else "eligible" if d is None or d.eligible else "ineligible")
                await self._client_flush(T)
        L.poke()
        return drain_report(L.state, name, self.clock(), L.pending, L.steps)

    async def rebalance(self, dry_run: bool = False) -> dict[str, Any]:
        """Plan moves that free whole nodes (`rebalance.plan_rebalance`); unless
        `dry_run`, carry them out by draining the freed nodes for the rebalance (the
        rollout's rules move every task)."""
        T = await self.c.leading()
        L = T.lead
        async with L.lock:
            plan = plan_rebalance(L.state, with_drains(L.state.nodes, L.state.drains))
            out = {**plan.to_dict(), "dry_run": bool(dry_run)}
            if dry_run or not plan.frees:
                return out
            now = self.clock()
            for name in plan.frees:
                set_drain(L.state, name, now, reason="rebalance")
            log.info("rebalance: freeing %s (%s)", ", ".join(plan.frees), plan.gain)
            await self._client_flush(T)
        L.poke()
        return out

    async def node_drain_status(self, name: str) -> dict[str, Any]:
        """Where a node's drain is, and what it still waits for."""
        L = (await self.c.leading()).lead
        if name not in L.state.nodes and name not in L.state.drains:
            raise NodeNotFound(f"no node named {name!r}")
        return drain_report(L.state, name, self.clock(), L.pending, L.steps)

    async def _client_flush(self, T: Leader) -> None:
        """The loop's `flush` for a client's write: a lost term is NotLeader to it."""
        try:
            await T.loop.flush()
        except StaleEpoch:
            raise NotLeader(self.c.leader_url()) from None

    async def _children(self, path: str) -> list[str] | None:
        """Children of `path`, or None when it does not exist."""
        names = await self.store.children(path)
        return names if names or await self.store.exists(path) else None

    async def endpoints(self, name: str) -> list[dict[str, Any]]:
        L = (await self.c.leading()).lead
        return views.endpoints(L.state, _job(L, name))

    async def job_history(self, name: str) -> list[dict[str, Any]]:
        L = (await self.c.leading()).lead
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
        T = await self.c.leading()
        L = T.lead
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
                ref = await T.nodes.node_ref(node_name,
                                           T.nodes.node_url(node_name, node.address))
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
        T = await self.c.leading()
        L = T.lead
        async with L.lock:
            template = _job(L, name)
            try:
                out = await dispatch(L.term, template, payload, idempotency_key,
                                     now=self.clock())
            except StaleEpoch:
                L.term.lost.set()
                raise NotLeader(self.c.leader_url()) from None
            if out.created and out.record is not None:
                T.loop.adopt_written_job(out.record)
                L.history.add(event(name, "", "", "dispatched", f"run {out.run}",
                                    at=self.clock(), run=out.run))
                await self._client_flush(T)
        L.poke()
        return out.to_dict()

    # ------------------------------------------------------------------ ACL tokens, audit
    async def _acl(self, op: str, *args: Any) -> Any:
        """A token operation, written by the leader in its term (fenced by its epoch).
        Who may ask is the authorization table's business, never this method's."""
        L = (await self.c.leading()).lead
        async with L.lock:
            admin = TokenAdmin(self.store, L.term.transaction)
            try:
                return await getattr(admin, op)(*args)
            except StaleEpoch:
                L.term.lost.set()
                raise NotLeader(self.c.leader_url()) from None

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


def _job(L: Leadership, name: str) -> JobRecord:
    rec = L.state.jobs.get(name)
    if rec is None:
        raise JobNotFound(f"no job named {name!r}")
    return rec
