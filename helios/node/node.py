"""The node: its state (`NodeCore`), its protocol front (`NodeActor`), and reconciliation.

Why two pieces. The `node` actor answers the conductor and the CLI (helios/protocol.py).
The protocol says a stale-epoch `assign` is refused with RemoteError "StaleEpoch", and in
the `actors` runtime an exception raised by a handler also ends the actor. So the actor
holds nothing: it is a thin, supervised front over `NodeCore`, which owns the desired
state, the task statuses and the job actors. A refusal restarts the front in
microseconds and loses nothing; the job actors (each under its own one_for_one
supervisor) and the daemon's loops never notice.

Reconciliation is level-triggered (Kubernetes-style): on start, after every accepted
assignment, when a job actor ends, and every `RECONCILE_INTERVAL` anyway, the node lists
its containers by label and compares them with its assignments:

- a task assigned to run without a job actor gets one; the actor adopts the task's
  container if it exists (same id, not restarted), restarts it if it is dead, or
  creates it;
- a job actor whose task is no longer wanted is woken: it stops and removes its
  container (stopping -> stopped) and ends;
- a container that no assignment owns and no job actor holds is stopped and removed.

So restarting the daemon in the middle of anything leaves exactly the assigned containers
running: the next daemon computes the same answer from the same inputs.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio

import actors
from helios import protocol
from helios.coordination import CoordinationError, paths
from helios.coordination.election import current_epoch
from helios.model import FINISHED_STATES, Assignment, NodeInfo, TaskStatus
from helios.node.job import JobActor
from helios.node.report import Reporter
from helios.node.restart import RestartOptions
from helios.node.runtime import (
    LogsUnavailable,
    Runtime,
    RuntimeFailure,
)
from helios.node.runtime.base import ContainerState, read_logs_by_line
from helios.node.state import StateDir
from helios.retry import Backoff

log = logging.getLogger(__name__)

RECONCILE_INTERVAL = 15.0
ORPHAN_GRACE = 5.0
#: Restart intensity of one task's supervisor (job actor bugs, not container exits).
JOB_MAX_RESTARTS = 5
JOB_WITHIN = 30.0
#: Most log lines one `logs` call returns (the CLI pages on with the cursor).
MAX_LOG_LINES = 10_000
TASKS_SAVE_DELAY = 0.1


def job_actor_name(task_id: str) -> str:
    return f"task.{task_id}"


def job_supervisor_name(task_id: str) -> str:
    return f"task-sup.{task_id}"


class NodeCore:
    """All the state of one node daemon; the actors and loops act through it."""

    def __init__(self, *, name: str, system: actors.ActorSystem, runtime: Runtime,
                 state: StateDir, cpus: float, memory: int,
                 labels: Mapping[str, str] | None = None,
                 container_labels: Mapping[str, str] | None = None,
                 restart_options: RestartOptions | None = None,
                 conductor: str | None = None, health_host: str = "127.0.0.1") -> None:
        paths.check_name(name)
        self.name = name
        self.node = name
        self.system = system
        self.runtime = runtime
        self.state = state
        self.cpus = float(cpus)
        self.memory = int(memory)
        self.labels = dict(labels or {})
        self.container_labels = dict(container_labels or {})
        self.restart_options: RestartOptions = restart_options or {}
        self.health_host = health_host
        self.pinned_conductor = protocol.conductor_url(conductor) if conductor else None
        self.reporter = Reporter(name)
        saved = state.load_assignments()
        self.epoch: int = saved["epoch"]
        self.generation: int = saved["generation"]
        self.cluster_id: str | None = saved["cluster_id"]
        runtime.cluster = self.cluster_id
        self.desired: dict[str, Assignment] = self._parse(saved["assignments"])[0]
        self.tasks: dict[str, dict[str, Any]] = state.load_tasks()
        self.statuses: dict[str, TaskStatus] = {}
        self.jobs: dict[str, actors.ActorRef] = {}       # task -> its supervisor
        self._finished: set[str] = set()
        self._found: dict[str, list[ContainerState]] = {}
        self._dirty = trio.Event()
        self._tasks_dirty = trio.Event()
        self._save_lock = trio.Lock()
        self._leader: dict[str, Any] | None = None
        self._leader_changed = trio.Event()
        #: task -> {"job", "host", "ports"}: healthy service endpoints to publish
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.published: dict[str, dict[str, Any]] = {}  # what the store holds now
        self._endpoints_changed = trio.Event()
        self.link: Any = None  # the ClusterLink, when the node has a store
        self.reconciled = 0  # passes done (tests wait on it)
        self._reconciled_event = trio.Event()

    # -- identity ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The node actor's URL."""
        return f"{self.system.url}/{protocol.NODE_ACTOR}"

    @property
    def address(self) -> str:
        return self.system.url.split("://", 1)[-1]

    def record(self) -> dict[str, Any]:
        """The node record in the store (NodeInfo fields plus the actor URL)."""
        return NodeInfo(name=self.name, address=self.address, cpus=self.cpus,
                        memory=self.memory, labels=self.labels,
                        runtime=self.runtime.kind,
                        publish=self.health_host).to_dict() | {"url": self.url}

    # -- desired state --------------------------------------------------------------------

    def _parse(self, raw: list[Any]) -> tuple[dict[str, Assignment], list[str]]:
        """Assignments for this node, and a problem line for each refused one."""
        out: dict[str, Assignment] = {}
        problems: list[str] = []
        for i, d in enumerate(raw):
            try:
                a = Assignment.from_dict(d)
            except Exception as e:  # a bad entry must not stop the good ones
                problems.append(f"assignments[{i}]: {e}")
                continue
            if a.node and a.node != self.name:
                problems.append(f"assignments[{i}] ({a.id}) is for node {a.node}, "
                                f"not {self.name}")
                continue
            try:
                paths.check_name(a.id)
            except ValueError as e:
                problems.append(f"assignments[{i}]: {e}")
                continue
            out[a.id] = a
        return out, problems

    async def assign(self, epoch: int, generation: int, assignments: list[Any]
                     ) -> dict[str, Any]:
        """The conductor's complete desired set (protocol `assign`).

        The epoch in the message is only a claim: with a store, it must be the store's
        current epoch (`/conductors/epoch`), so no message alone can fence this node
        (an epoch from the future) or depose a leader (a refusal it did not earn)."""
        store_epoch = await self._verified_epoch(epoch)
        if epoch < self.epoch and store_epoch == epoch:
            log.warning("node %s: epoch %d is the store's; forgetting epoch %d, which no "
                        "leader ever held", self.name, epoch, self.epoch)
        elif epoch < self.epoch:
            raise protocol.StaleEpochRefused(
                f"epoch {epoch} is older than epoch {self.epoch}, the newest node "
                f"{self.name} has seen: refused")
        if epoch == self.epoch and generation < self.generation:
            return {"epoch": self.epoch, "generation": self.generation, "accepted": False}
        parsed, problems = self._parse(list(assignments))
        for p in problems:
            log.warning("node %s: refused %s", self.name, p)
        await self._apply(epoch, generation, parsed)
        return {"epoch": epoch, "generation": generation, "accepted": True,
                "refused": problems}

    async def _verified_epoch(self, epoch: int) -> int | None:
        """The store's current epoch, when this node has a store; raises `StaleEpoch`
        if `epoch` is older, and `UnverifiedEpoch` if it is newer or cannot be read."""
        link = self.link
        if link is None:
            return None  # a node without a store (tests of the node alone) trusts order
        store = link.store if link.connected.is_set() else None
        if store is None:
            raise protocol.UnverifiedEpoch(
                f"node {self.name} is not connected to the store yet and cannot check "
                f"epoch {epoch}; try again")
        try:
            current = await current_epoch(store)
        except CoordinationError as e:
            raise protocol.UnverifiedEpoch(
                f"node {self.name} cannot check epoch {epoch} against the store ({e}); "
                "try again") from None
        if epoch < current:
            raise protocol.StaleEpochRefused(
                f"epoch {epoch} is older than the store's epoch {current}: refused")
        if epoch > current:
            raise protocol.UnverifiedEpoch(
                f"epoch {epoch} is newer than the store's epoch {current}: not from a "
                "leader; refused")
        return current

    async def offer_assignments(self, epoch: int, generation: int, raw: list[Any], *,
                                source: str) -> bool:
        """Desired state read from the store: kept only if newer than what we have."""
        if (epoch, generation) <= (self.epoch, self.generation) and \
                not (epoch == generation == 0 and not self.desired and raw):
            return False
        parsed, problems = self._parse(raw)
        for p in problems:
            log.warning("node %s: %s assignment refused: %s", self.name, source, p)
        log.info("node %s: desired state (epoch %d, generation %d) taken from the %s",
                 self.name, epoch, generation, source)
        await self._apply(epoch, generation, parsed)
        return True

    async def _apply(self, epoch: int, generation: int, parsed: dict[str, Assignment]) -> None:
        """Persist first (a crash after the reply must not lose it), then reconcile."""
        async with self._save_lock:
            self.epoch, self.generation = epoch, generation
            self.desired = parsed
            data = [a.to_dict() for a in parsed.values()]
            await trio.to_thread.run_sync(self.state.save_assignments, epoch, generation,
                                          data, self.cluster_id)
        self.poke()

    async def set_cluster_id(self, cluster_id: str) -> None:
        async with self._save_lock:
            self.cluster_id = cluster_id
            self.runtime.cluster = cluster_id
            await trio.to_thread.run_sync(
                self.state.save_assignments, self.epoch, self.generation,
                [a.to_dict() for a in self.desired.values()], cluster_id)

    def poke(self) -> None:
        """Ask for a reconciliation pass soon (coalesced)."""
        self._dirty.set()

    # -- the job context (see helios.node.job.JobContext) ---------------------------------

    def assignment(self, task_id: str) -> Assignment | None:
        return self.desired.get(task_id)

    def report(self, status: TaskStatus) -> None:
        self.statuses[status.id] = status
        self.reporter.report(status)
        a = self.desired.get(status.id)
        want = (a is not None and a.spec is not None and a.spec.kind == "service"
                and a.desired == "run" and status.state == "running"
                and status.healthy is not False and bool(status.ports))
        if want:
            assert a is not None
            endpoint = {"job": a.job, "host": self.health_host, "ports": dict(status.ports)}
            if self.endpoints.get(status.id) != endpoint:
                self.endpoints[status.id] = endpoint
                self._endpoints_changed.set()
        elif self.endpoints.pop(status.id, None) is not None:
            self._endpoints_changed.set()

    async def drain(self, task_id: str, grace: float) -> None:
        """Before stopping a task: withdraw its endpoint, then wait `grace` so clients
        that resolved it just before finish their requests (the job's `grace:`)."""
        if self.endpoints.pop(task_id, None) is None and task_id not in self.published:
            return
        self._endpoints_changed.set()
        with trio.move_on_after(5.0):  # bounded: a store outage must not block a stop
            while task_id in self.published:
                await trio.sleep(0.02)
        if grace > 0:
            await trio.sleep(grace)

    def endpoints_changed(self) -> trio.Event:
        ev = self._endpoints_changed
        if ev.is_set():
            self._endpoints_changed = trio.Event()
        return ev

    def take_found(self, task_id: str) -> list[ContainerState] | None:
        return self._found.pop(task_id, None)

    def task_record(self, task_id: str) -> dict[str, Any]:
        return dict(self.tasks.get(task_id) or {})

    def payload_dir(self, task_id: str) -> Path:
        return self.state.path / "payloads" / task_id

    def save_task_record(self, task_id: str, record: dict[str, Any] | None) -> None:
        if record is None:
            shutil.rmtree(self.payload_dir(task_id), ignore_errors=True)
            if self.tasks.pop(task_id, None) is None:
                return
        else:
            self.tasks[task_id] = record
        self._tasks_dirty.set()

    def job_finished(self, task_id: str) -> None:
        self._finished.add(task_id)
        self.poke()

    # -- leader ---------------------------------------------------------------------------

    def set_leader(self, value: dict[str, Any] | None) -> None:
        self._leader = value
        self._leader_changed.set()
        self._leader_changed = trio.Event()
        self.reporter.wake()

    def conductor_url(self) -> str | None:
        if self.pinned_conductor:
            return self.pinned_conductor
        url = (self._leader or {}).get("url")
        return protocol.conductor_url(url) if isinstance(url, str) and url else None

    def leader_changed(self) -> trio.Event:
        return self._leader_changed

    # -- loops ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Reconcile, persist task records and send events, until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._resilient, self._reconcile_loop)
            nursery.start_soon(self._resilient, self._tasks_saver)
            nursery.start_soon(self._resilient, self.reporter.conductor_loop, self.system,
                               self.conductor_url, self.leader_changed)

    async def _resilient(self, fn: Any, *args: Any) -> None:
        """Run a loop for ever, starting it again (with a pause) after an unexpected
        error: one bad answer from an engine must not stop the node keeping its tasks."""
        backoff = Backoff(0.5, 30.0)
        while True:
            try:
                await fn(*args)
                return
            except Exception as e:
                log.error("node %s: %s failed (%s: %s); restarting it in %.1fs", self.name,
                          getattr(fn, "__name__", fn), type(e).__name__, e, backoff.delay,
                          exc_info=True)
            await backoff.sleep()

    async def _tasks_saver(self) -> None:
        while True:
            await self._tasks_dirty.wait()
            await trio.sleep(TASKS_SAVE_DELAY)  # coalesce a burst of changes
            self._tasks_dirty = trio.Event()
            snapshot = {k: dict(v) for k, v in self.tasks.items()}
            try:
                await trio.to_thread.run_sync(self.state.save_tasks, snapshot)
            except OSError as e:
                log.error("node %s: cannot write task records: %s", self.name, e)

    async def _reconcile_loop(self) -> None:
        self._dirty.set()
        while True:
            with trio.move_on_after(RECONCILE_INTERVAL):
                await self._dirty.wait()
            self._dirty = trio.Event()
            try:
                await self.reconcile_once()
            except RuntimeFailure as e:  # the engine is down or refused: try again soon
                log.warning("node %s: cannot reconcile: %s", self.name, e)
                await trio.sleep(1.0)
                self._dirty.set()
            self.reconciled += 1
            self._reconciled_event.set()
            self._reconciled_event = trio.Event()

    async def wait_reconciled(self) -> None:
        """Until the next reconciliation pass has finished (tests)."""
        await self._reconciled_event.wait()

    async def reconcile_once(self) -> None:
        """One level-triggered pass (see the module docstring)."""
        containers = await self.runtime.list()
        by_task: dict[str, list[ContainerState]] = {}
        for c in containers:
            by_task.setdefault(c.task, []).append(c)
        live = set(self.system.registered())
        for task in sorted(self._finished):
            self._finished.discard(task)
            ref = self.jobs.pop(task, None)
            if ref is not None:
                with contextlib.suppress(actors.ActorError):
                    await ref.stop()
            if task not in self.desired:
                self.statuses.pop(task, None)
                self.reporter.forget(task)
        for task, ref in list(self.jobs.items()):
            if ref.name not in live:  # its supervisor gave up (a job actor bug)
                log.error("node %s: supervisor of task %s ended; starting it again",
                          self.name, task)
                del self.jobs[task]
        async with trio.open_nursery() as nursery:
            for task, cs in by_task.items():
                if self.cluster_id is None and self.link is not None:
                    break  # whose they are is unknown until the store names the cluster
                if task not in self.desired and task not in self.jobs:
                    for c in cs:
                        nursery.start_soon(self._remove_orphan, c)
        for task in self.desired:
            if task in self.jobs:
                await self.system.ref(job_actor_name(task)).tell("wake")
            else:
                self._found[task] = by_task.get(task, [])
                await self._start_job(task)
        for task in list(self.jobs):
            if task not in self.desired:
                await self.system.ref(job_actor_name(task)).tell("wake")

    async def _start_job(self, task: str) -> None:
        sup = await self.system.spawn(
            actors.Supervisor, strategy="one_for_one", max_restarts=JOB_MAX_RESTARTS,
            within=JOB_WITHIN, name=job_supervisor_name(task),
            children=[actors.child(JobActor, self, task, name=job_actor_name(task),
                                   restart="transient")])
        self.jobs[task] = sup

    async def _remove_orphan(self, c: ContainerState) -> None:
        log.info("node %s: removing container %s of task %s (no assignment owns it)",
                 self.name, c.id[:12], c.task or "?")
        try:
            if c.running:
                await self.runtime.stop(c.id, ORPHAN_GRACE)
            await self.runtime.remove(c.id)
        except RuntimeFailure as e:
            log.warning("node %s: removing %s failed: %s", self.name, c.id[:12], e)

    # -- queries ----------------------------------------------------------------------------

    def status_list(self) -> list[dict[str, Any]]:
        out = []
        for task, a in self.desired.items():
            s = self.statuses.get(task) or TaskStatus(id=task, node=self.name, job=a.job)
            out.append(s.to_dict())
        out += [s.to_dict() for t, s in self.statuses.items() if t not in self.desired]
        return out

    def info(self) -> dict[str, Any]:
        cpus = memory = 0.0
        n = 0
        for task, a in self.desired.items():
            s = self.statuses.get(task)
            if a.desired != "run" or (s is not None and s.state in FINISHED_STATES):
                continue
            n += 1
            spec = a.spec
            cpus += a.cpus or (spec.resources.cpus if spec else 0.0)
            memory += a.memory or (spec.resources.memory if spec else 0)
        return self.record() | {"cpus_free": max(0.0, round(self.cpus - cpus, 3)),
                                "memory_free": max(0, int(self.memory - memory)),
                                "tasks": n, "epoch": self.epoch,
                                "generation": self.generation}

    async def logs(self, task_id: str, since: str | float | None = None,
                   tail: int | None = None) -> dict[str, Any]:
        """Output lines of a task's container, at most MAX_LOG_LINES, and the `cursor` to
        pass back as `since` for what follows (opaque, see `Runtime.read_logs`; a number
        from an older client counts lines)."""
        status = self.statuses.get(task_id)
        cid = status.container if status else None
        try:
            if not cid:
                found = await self.runtime.list({"io.helios.task": task_id})
                cid = found[0].id if found else None
            if not cid:
                known = task_id in self.desired or status is not None
                why = "has no container (yet)" if known else f"is not on node {self.name}"
                return {"lines": [], "cursor": since, "error": f"task {task_id} {why}"}
            cursor = since if isinstance(since, str) else None
            if isinstance(since, int | float) and not isinstance(since, bool):
                cursor = f"n{max(0, int(since))}"
            tail_n = None if tail is None else max(0, int(tail))
            if cursor is None and tail_n is None:
                tail_n = MAX_LOG_LINES  # a first read starts from the newest lines
            if cursor is not None and cursor.startswith("n"):  # line counting
                lines, cursor = await read_logs_by_line(self.runtime, cid, cursor,
                                                        limit=MAX_LOG_LINES)
            else:
                lines, cursor = await self.runtime.read_logs(cid, cursor, tail=tail_n,
                                                             limit=MAX_LOG_LINES)
        except LogsUnavailable as e:
            return {"lines": [], "cursor": since, "error": e.reason}
        except RuntimeFailure as e:
            return {"lines": [], "cursor": since, "error": e.reason}
        return {"lines": lines, "cursor": cursor}


class NodeActor(actors.Actor):
    """The `node` actor of helios/protocol.py: a stateless front over `NodeCore`."""

    def __init__(self, core: NodeCore) -> None:
        self.core = core

    @actors.handler
    async def assign(self, epoch: int, generation: int, assignments: list[Any]
                     ) -> dict[str, Any]:
        return await self.core.assign(int(epoch), int(generation), list(assignments))

    @actors.handler
    async def statuses(self) -> list[dict[str, Any]]:
        return self.core.status_list()

    @actors.handler
    async def info(self) -> dict[str, Any]:
        return self.core.info()

    @actors.handler
    async def logs(self, task_id: str, since: float | None = None,
                   tail: int | None = None) -> dict[str, Any]:
        return await self.core.logs(task_id, since, tail)

    @actors.handler
    async def ping(self) -> dict[str, Any]:
        """Liveness and backlog (not in the protocol; handy for operators and tests)."""
        pending, events = self.core.reporter.backlog
        return {"name": self.core.name, "time": time.time(), "epoch": self.core.epoch,
                "generation": self.core.generation, "statuses_pending": pending,
                "events_pending": events}


async def spawn_node_actor(core: NodeCore) -> actors.ActorRef:
    """The `node` actor under its own supervisor: a refused (crashed) call restarts it."""
    await core.system.spawn(
        actors.Supervisor, strategy="one_for_one", max_restarts=100_000, within=1.0,
        name=f"{protocol.NODE_ACTOR}-sup",
        children=[actors.child(NodeActor, core, name=protocol.NODE_ACTOR)])
    return core.system.ref(protocol.NODE_ACTOR)
