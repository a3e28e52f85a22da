"""The reconciler: desired jobs + actual cluster -> a Plan. Pure and level-triggered.

Like a Kubernetes controller (and Nomad's ``reconcile.go``), it does not react to events:
it compares what should be (job specs, counts) with what is (assignments, task statuses,
node membership) and returns the changes that close the gap. Running it again after its
plan is applied returns a plan without changes, so a missed or repeated trigger, or a
conductor failover in the middle of anything, is harmless.

What it decides, per job:

- **service**: keep ``count`` slots filled with one live task each; stop the tasks of slots
  above ``count`` (scaling down removes the highest slots, which are the newest); replace
  tasks that ended; roll to a new fingerprint in batches (``rollout.py``); move tasks of
  a new version whose container needs no change in place.
- **batch** (and the runs of cron and parameterized jobs, which the conductor creates as
  batch jobs, see ``spec.run_spec``): a slot that finished (exited or failed after the
  node's retries) is done and never re-run; unfinished tasks are replaced when their
  node is lost or when the job's fingerprint changes.
- **nodes**: a node down longer than ``failover_grace`` loses its tasks (service tasks and
  unfinished batch tasks are marked lost and placed elsewhere); a node down for less
  keeps them, so a quick daemon restart moves nothing. A node that comes back finds its
  copies marked stop, and a copy it reports without any assignment (an orphan) is stopped.
- **garbage**: an assignment marked stop whose task has finished is forgotten.

New task ids are ``<job>-<6 hex>`` derived from (job, creation time, version, slot,
attempt), so the same input always gives the same plan.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from helios.conductor.plan import (
    InPlace,
    Lost,
    Pending,
    Placement,
    Plan,
    Remove,
    RescheduleMark,
    RolloutFailure,
    RolloutMark,
    RolloutStep,
    Stop,
)
from helios.conductor.reschedule import deadline_failure, retries_batch_task, slot_holds
from helios.conductor.rollout import plan_service
from helios.conductor.scheduler.place import Cluster, Request, cpu_is_scarcer
from helios.model import (
    FINISHED_STATES,
    Assignment,
    JobRecord,
    NodeInfo,
    TaskStatus,
    task_ready,
)
from helios.units import format_duration

__all__ = ["reconcile"]


@dataclass
class _Want:
    """A task the plan wants placed: for slot ``index`` of ``job``."""

    job: JobRecord
    index: int
    reason: str
    replaces: Assignment | None = None  # rollout surge: stop this one first if no room
    deadline_at: float | None = None  # a rollout's empty slot: fail if still unplaced then
    salt: str = ""  # a rescheduled slot: its failure count, so its new id is a new one
    drain: bool = False  # moving ``replaces`` off a draining node: never stop it first


def _new_id(job: str, version: int, index: int, taken: set[str], created: float = 0.0,
            salt: str = "") -> str:
    """A task id from (job, its creation time, version, slot, attempt): the same input
    gives the same plan, and a job removed and created again under its old name gets new
    ids, so no node mistakes a new task for the finished one it still remembers.

    Six hex digits: a forgotten task's id may be drawn again (only live ones are in
    `taken`), and with four a long-lived job's ids met again in practice, mixing two
    tasks in its history."""
    n = 0
    incarnation = (f"@{created!r}" if created else "") + (f"#{salt}" if salt else "")
    while True:
        digest = hashlib.sha1(f"{job}{incarnation}/{version}/{index}/{n}".encode()).hexdigest()
        width = 6 if n < 64 else 10  # a crowded job gets longer ids rather than a loop
        tid = f"{job}-{digest[:width]}"
        if tid not in taken:
            taken.add(tid)
            return tid
        n += 1


def reconcile(jobs: Mapping[str, JobRecord] | Iterable[JobRecord],
              nodes: Mapping[str, NodeInfo] | Iterable[NodeInfo],
              assignments: Mapping[str, Assignment] | Iterable[Assignment],
              statuses: Mapping[str, TaskStatus] | Iterable[TaskStatus],
              now: float, failover_grace: float = 2.0,
              registered: Mapping[str, Collection[str]] | None = None) -> Plan:
    """Compute the plan that moves the cluster toward the jobs' desired state.

    ``registered`` maps a service job to the tasks whose endpoint is registered
    (``/services/<job>``), for the jobs whose endpoints the caller follows: a new task
    of such a job with ports replaces an old one only once it is healthy *and*
    registered, so clients can already reach it. Jobs not in it are judged on health."""
    job_map = {j.name: j for j in (jobs.values() if isinstance(jobs, Mapping) else jobs)}
    node_map = {n.name: n for n in (nodes.values() if isinstance(nodes, Mapping) else nodes)}
    assigns = sorted(assignments.values() if isinstance(assignments, Mapping)
                     else assignments, key=lambda a: a.id)
    status_map = {s.id: s for s in (statuses.values() if isinstance(statuses, Mapping)
                                    else statuses)}
    plan = Plan()
    taken = {a.id for a in assigns} | set(status_map)

    def node_gone(name: str) -> str | None:
        """Why tasks on ``name`` count as lost, or None while they may come back."""
        node = node_map.get(name)
        if node is None:
            return f"node {name} is no longer known"
        if node.up:
            return None
        since = node.down_since if node.down_since is not None else now
        if now - since >= failover_grace:
            return (f"node {name} down for {format_duration(now - since)} "
                    f"(failover grace {format_duration(failover_grace)})")
        return None

    def status_of(a: Assignment) -> TaskStatus | None:
        st = status_map.get(a.id)
        return st if st is not None and st.node == a.node else None

    def finished(a: Assignment) -> bool:
        st = status_of(a)
        return st is not None and st.state in FINISHED_STATES

    def draining(a: Assignment) -> bool:
        """On a draining node (``helios node drain``, conductor/drain.py)."""
        node = node_map.get(a.node)
        return node is not None and node.draining

    # ---- assignments already marked stop: forget them once their task is over
    by_job: dict[str, list[Assignment]] = {}
    for a in assigns:
        if a.desired == "stop":
            st = status_of(a)
            node = node_map.get(a.node)
            if node is None:
                plan.remove.append(Remove(a.id, a.job, a.node, f"node {a.node} is gone"))
            elif st is not None and st.state in FINISHED_STATES:
                plan.remove.append(Remove(a.id, a.job, a.node, st.state))
            elif st is None and node.up:
                plan.remove.append(Remove(a.id, a.job, a.node, "never reported"))
            elif st is not None and st.state == "lost" and node.up:
                # Back, and silent about it: forgetting the assignment is enough, a node
                # stops any container no assignment owns.
                plan.remove.append(Remove(a.id, a.job, a.node, f"node {a.node} is back"))
        else:
            by_job.setdefault(a.job, []).append(a)

    # ---- copies a node reports that no assignment there owns (e.g. a node returned)
    owned = {(a.id, a.node) for a in assigns}
    for st in sorted(status_map.values(), key=lambda s: s.id):
        if (st.id, st.node) in owned:
            continue
        node = node_map.get(st.node)
        if st.state in FINISHED_STATES or st.state == "lost" or node is None:
            plan.remove.append(Remove(st.id, st.job, st.node, f"orphan status ({st.state})"))
        elif node.up:
            plan.stop.append(Stop(st.id, st.job, st.node, "orphan: no assignment owns it"))

    wants: list[_Want] = []
    stopping: set[str] = set()

    def stop(a: Assignment, reason: str) -> None:
        if a.id not in stopping:
            stopping.add(a.id)
            plan.stop.append(Stop(a.id, a.job, a.node, reason))

    for name in sorted(set(by_job) | set(job_map)):
        tasks = by_job.get(name, [])
        job = job_map.get(name)
        if job is None or job.stopped or job.spec.kind in ("cron", "parameterized"):
            why = ("job removed" if job is None else "job stopped" if job.stopped
                   else f"a {job.spec.kind} job runs as separate batch runs")
            for a in tasks:
                if not finished(a):
                    stop(a, why)
                elif job is None or job.spec.kind != "batch":
                    # Only a stopped batch job keeps its finished tasks: they record
                    # which runs are done.
                    plan.remove.append(Remove(a.id, a.job, a.node, why))
            continue
        spec = job.spec
        fp = spec.fingerprint()
        batch = spec.kind == "batch"
        live: dict[int, list[Assignment]] = {}
        dead: dict[int, list[tuple[Assignment, TaskStatus | None]]] = {}
        done: set[int] = set()
        retried: dict[int, list[tuple[Assignment, TaskStatus | None]]] = {}
        for a in tasks:
            st = status_of(a)
            is_done = batch and st is not None and st.state in ("exited", "failed")
            if is_done and st is not None and retries_batch_task(job, a, st, now):
                # a failed batch task its reschedule policy runs again (after a delay)
                plan.remove.append(Remove(a.id, a.job, a.node, f"failed: {st.reason}; "
                                          "to be rescheduled" if st.reason else "failed"))
                retried.setdefault(a.index, []).append((a, st))
                continue
            if is_done:
                done.add(a.index)
                continue
            gone = node_gone(a.node)
            if gone is not None:
                # Lost with its node: reported as `lost` to the rollout, which must not
                # take a dead machine for a failed version.
                lost = (st.replace(state="lost", reason=gone) if st is not None else
                        TaskStatus(id=a.id, node=a.node, job=a.job, state="lost",
                                   reason=gone, since=now, updated=now))
                dead.setdefault(a.index, []).append((a, lost))
            if gone is not None and a.node not in node_map:
                # Nothing left to tell that node: forget the task, replace it.
                plan.remove.append(Remove(a.id, a.job, a.node, gone))
            elif gone is not None:
                plan.lost.append(Lost(a.id, a.job, a.node, gone))
            elif st is not None and st.state in FINISHED_STATES:
                # The container is already gone: forget it (the conductor's history keeps
                # the event) and let the slot be filled again.
                plan.remove.append(Remove(a.id, a.job, a.node, f"{st.state}" + (
                    f": {st.reason}" if st.reason else "")))
                dead.setdefault(a.index, []).append((a, st))
            else:
                live.setdefault(a.index, []).append(a)

        # slots above count: scale down (highest slots are the newest)
        for i in sorted(live):
            if i >= spec.count:
                for a in live.pop(i):
                    stop(a, f"count is {spec.count}")

        reg = registered.get(name) if registered is not None and spec.ports else None

        def healthy(a: Assignment, _spec=spec, _reg=reg) -> bool:
            st = status_of(a)
            return (st is not None and task_ready(_spec, st, now)
                    and (_reg is None or a.id in _reg))

        keep: list[Assignment] = []
        if batch:
            marks, holds = slot_holds(job, retried, now)
            plan.reschedules.extend(marks)
            for i in range(spec.count):
                tasks_i = sorted(live.get(i, []), key=lambda t: (t.created, t.id))
                if i in done:
                    for a in tasks_i:
                        stop(a, f"slot {i} already finished")
                    continue
                current = [t for t in tasks_i if t.fingerprint == fp]
                for a in tasks_i:
                    if a.fingerprint != fp:
                        stop(a, f"job changed (v{job.version})")
                for a in current[1:]:
                    stop(a, f"duplicate in slot {i}")
                node = node_map.get(current[0].node) if current else None
                if node is not None and node.draining and node.drain_deadline is not None \
                        and now >= node.drain_deadline:
                    # The drain's deadline passed: run it again elsewhere (at least once).
                    stop(current[0], f"node {node.name} drained: deadline passed")
                    wants.append(_Want(job, i, f"moved off drained node {node.name}"))
                elif current:
                    keep.append(current[0])
                elif i in holds:
                    plan.pending.append(Pending(name, i, holds[i].explain(now), "reschedule"))
                else:
                    wants.append(_Want(job, i, "replacing a lost task" if i in dead
                                       else _fill_reason(job, i, "missing"),
                                       salt=_fill_salt(job, i, dead.get(i))))
        else:
            decision = plan_service(job, live, dead, healthy, now,
                                    "healthy" if reg is None else "healthy and registered",
                                    moving=draining)
            for a, why in decision.stops:
                stop(a, why)
            plan.rollout.extend(decision.steps)
            if decision.failure is not None:
                plan.failures.append(decision.failure)
            if decision.complete and job.rolled_out != job.version:
                plan.marks.append(RolloutMark(name, job.version, rolled_out=True))
            deadline_at = (job.progress_since + spec.update.deadline
                           if job.rolling and job.progress_since > 0 else None)
            marks, holds = slot_holds(job, dead, now)
            plan.reschedules.extend(marks)
            if decision.failure is None and not decision.complete:
                late = deadline_failure(_with_marks(job, marks), now)
                if late is not None:
                    plan.failures.append(late)
            for i, why in decision.fills:
                if i in holds:
                    plan.pending.append(Pending(name, i, holds[i].explain(now), "reschedule"))
                    continue
                wants.append(_Want(job, i, "replacing a lost or ended task" if i in dead
                                   else _fill_reason(job, i, why), deadline_at=deadline_at,
                                   salt=_fill_salt(job, i, dead.get(i))))
            for i, old in decision.surges:
                move = old.fingerprint == fp and draining(old)
                wants.append(_Want(job, i, f"moving {old.id} off draining node {old.node}"
                                   if move else f"rolling update from {old.id}",
                                   replaces=old, drain=move))
            keep = [a for ts in live.values() for a in ts
                    if a.fingerprint == fp and a.id not in stopping]
        for a in sorted(keep, key=lambda t: t.id):
            if a.version != job.version and a.id not in stopping:
                plan.update.append(InPlace(a.id, a.job, a.node, job.version))

    _place(plan, wants, node_map, assigns, status_map, taken, now)
    _mark_progress(plan, job_map)
    plan.stop.sort(key=lambda s: (s.job, s.task))
    plan.lost.sort(key=lambda s: (s.job, s.task))
    plan.remove.sort(key=lambda s: (s.job, s.task))
    return plan


def _with_marks(job: JobRecord, marks: list[RescheduleMark]) -> JobRecord:
    """``job`` as it will be once this pass's reschedule trackers are recorded."""
    if not marks:
        return job
    return job.replace(reschedule={**job.reschedule,
                                   **{str(m.index): m.tracker for m in marks}})


def _fill_reason(job: JobRecord, index: int, why: str) -> str:
    """Why an empty slot gets a task, for the history: a slot that waited after a
    failure says so; a slot never filled before is a first placement."""
    tracker = job.reschedule.get(str(index))
    if tracker is not None and tracker.get("version") == job.version:
        return f"rescheduled after {tracker.get('reason', 'a failure')}"
    return "new slot" if why == "missing" else why


def _fill_salt(job: JobRecord, index: int,
               dead: list[tuple[Assignment, TaskStatus | None]] | None = None) -> str:
    """A rescheduled slot's failure count: its failed task is forgotten by then, so
    without it the replacement would draw the same id, which its node still remembers
    as failed. A slot refilled after its task was lost or ended also names that task:
    the slot's first id may have been freed meanwhile (its task moved off a drained
    node, or replaced by a rollout, under the next id, then forgotten), and drawing it
    again would give one id to two placements on two nodes."""
    tracker = job.reschedule.get(str(index))
    salt = ""
    if tracker is not None and tracker.get("version") == job.version:
        salt = str(len(tracker.get("events") or ()))
    if dead:
        salt += "~" + min(a.id for a, _ in dead)
    return salt


#: rollout steps that move a rollout forward (``wait`` only reports)
_PROGRESS = frozenset({"start", "stop-first", "done"})


def _mark_progress(plan: Plan, jobs: Mapping[str, JobRecord]) -> None:
    """Record in each job whose rollout moved in this plan that it did (one mark per job,
    merged with a ``rolled_out`` mark), restarting its empty-slot deadline."""
    moved = {(r.job, r.version) for r in plan.rollout if r.action in _PROGRESS}
    failed = {f.job for f in plan.failures}
    marks = {(m.job, m.version): m for m in plan.marks}
    for job, version in sorted(moved):
        rec = jobs.get(job)
        if rec is None or rec.version != version or job in failed:
            continue
        prev = marks.get((job, version))
        marks[(job, version)] = RolloutMark(job, version, progress=True,
                                            rolled_out=prev.rolled_out if prev else False)
    plan.marks = [marks[k] for k in sorted(marks)]


def _fits_in_place_of(req: Request, old: Assignment, nodes: list[NodeInfo],
                      occupying: list[Assignment]) -> bool:
    """Whether ``req`` could be placed once ``old`` has stopped (the stop-first fallback
    of a rollout), counting everything else that holds room now."""
    rest = [a for a in occupying if a.id != old.id]
    return Cluster(nodes, rest).place(req) is not None


def _place(plan: Plan, wants: list[_Want], node_map: Mapping[str, NodeInfo],
           assigns: list[Assignment], status_map: Mapping[str, TaskStatus],
           taken: set[str], now: float) -> None:
    """Schedule the wanted tasks; fall back to stop-first for surges that do not fit."""
    if not wants:
        return

    removed = {(r.task, r.node) for r in plan.remove}

    def occupies(a: Assignment) -> bool:
        if (a.id, a.node) in removed:
            return False  # forgotten in this very plan
        st = status_map.get(a.id)
        return not (st is not None and st.node == a.node and st.state in FINISHED_STATES)

    # Restore missing slots before starting surge copies for rollouts.
    ordered = sorted(wants, key=lambda w: (w.replaces is not None, w.job.name, w.index))
    ids = [_new_id(w.job.spec.name, w.job.version, w.index, taken, w.job.created, w.salt)
           for w in ordered]
    requests = [Request.for_spec(tid, w.job.spec) for tid, w in zip(ids, ordered, strict=True)]
    occupying = [a for a in assigns if occupies(a)]
    nodes = list(node_map.values())
    cluster = Cluster(nodes, occupying,
                      cpu_first=cpu_is_scarcer(nodes, requests, occupying))
    failed_jobs = {f.job for f in plan.failures}
    for tid, req, w in zip(ids, requests, ordered, strict=True):
        spec = w.job.spec
        node = cluster.place(req)
        if node is None:
            taken.discard(tid)
            if w.drain and w.replaces is not None:  # (a drain move always replaces one)
                # Stopping it first frees nothing usable (its node takes no placements):
                # it keeps serving until a node has room.
                plan.pending.append(Pending(spec.name, w.index, f"cannot move "
                                            f"{w.replaces.id} off draining node "
                                            f"{w.replaces.node}: {cluster.explain(req)}"))
                continue
            if w.replaces is not None and spec.name in failed_jobs:
                continue  # this rollout already failed in this plan
            if w.replaces is not None and not _fits_in_place_of(
                    req, w.replaces, nodes, occupying):
                # Stopping the old task would not make room: it keeps serving and the
                # rollout fails now rather than wait forever (with a slot down).
                failed_jobs.add(spec.name)
                rollback = spec.update.auto_rollback and w.job.previous is not None
                plan.failures.append(RolloutFailure(
                    spec.name, w.job.version,
                    f"new task for slot {w.index} cannot be placed: {cluster.explain(req)}",
                    rollback))
                plan.pending.append(Pending(spec.name, w.index, cluster.explain(req)))
                continue
            if w.replaces is not None:
                old = w.replaces
                plan.stop.append(Stop(old.id, old.job, old.node,
                                      "rolling update: no room to start the new task first"))
                plan.rollout.append(RolloutStep(spec.name, w.job.version, w.index, old.id,
                                                None, "stop-first"))
                plan.pending.append(Pending(spec.name, w.index,
                                            f"waiting for {old.id} to stop (no room to "
                                            "start the new task first)", "waiting"))
            else:
                why = cluster.explain(req)
                if (w.deadline_at is not None and now > w.deadline_at
                        and spec.name not in failed_jobs):
                    # A rollout's slot empty for its whole deadline: end the rollout
                    # (back to the previous version, where it still fits) rather than
                    # leave the job a task short with no end in sight.
                    failed_jobs.add(spec.name)
                    rollback = spec.update.auto_rollback and w.job.previous is not None
                    plan.failures.append(RolloutFailure(
                        spec.name, w.job.version,
                        f"slot {w.index} has had no task for "
                        f"{format_duration(spec.update.deadline)}: {why}", rollback))
                plan.pending.append(Pending(spec.name, w.index, why))
            continue
        task = Assignment(
            id=tid, job=spec.name, version=w.job.version, node=node, index=w.index,
            cpus=spec.resources.cpus, memory=spec.resources.memory,
            ports={k: p.host for k, p in spec.ports.items() if p.host},
            desired="run", fingerprint=spec.fingerprint(), created=now, spec=spec)
        plan.place.append(Placement(task, w.reason))
        if w.replaces is not None:
            plan.rollout.append(RolloutStep(spec.name, w.job.version, w.index,
                                            w.replaces.id, tid, "start"))
