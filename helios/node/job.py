"""The job actor: one per task, driving that task's container through the Runtime.

States (docs/json.md): pending -> pulling -> starting -> healthchecking -> running; then
exited (it ended with code 0 and is not to be restarted), failed (with a reason a user can
read), or stopping -> stopped (the conductor no longer wants it). While waiting out a
restart backoff the task is `pending` again, with the reason in `reason`.

Level-triggered, like the node: the actor does not take orders, it reads the task's
current assignment from its `JobContext` whenever it is woken (`wake`) and closes the gap.
So a repeated or lost wake-up changes nothing, and a job actor restarted by its supervisor
after a bug simply looks again: it finds its container by label and adopts it (same id,
no restart) instead of starting another one.

Choices worth knowing:

- A restart re-starts the same container (same id, same log file), as `docker restart`
  does; a container that vanished is created anew.
- Images are pulled only when not present on the node (Kubernetes' IfNotPresent): a node
  keeps starting tasks of an image it has while its registry is unreachable.
- A pull failure, a port conflict or an invalid spec ends the task as failed at once: no
  restart would help, and the conductor may place the task elsewhere. Except a clash on
  host ports the node picked itself (taken between its probe and Docker's bind, e.g. by
  another node daemon on the same machine): the container is made again with other
  ports, a few times. Any other refusal of the engine (`RuntimeFailure` outside
  `PERMANENT_FAILURES`) may pass next time: the restart policy decides, as for an exit.
- Health: checks run every `interval` (faster while waiting for the first success).
  Failures within `start_grace` of a start do not count; after it, `failures`
  consecutive ones mark the task unhealthy (`healthy: false`, reason set). The node never
  kills a task for being unhealthy: the conductor's rollout decides (deadline, rollback).
- Stop: a healthy service task's endpoint is withdrawn first and the job's `grace`
  waited out (clients finish their requests); then SIGTERM, SIGKILL after `grace`
  seconds, and remove.
- When the actor is shut down with its node daemon, it leaves its container running: the
  next daemon adopts it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import trio

import actors
from helios.model import Assignment, TaskStatus
from helios.node.health import HealthProbe, run_check
from helios.node.payload import PAYLOAD_CONTAINER_PATH, materialise_payload
from helios.node.restart import RestartOptions, RestartTracker, describe_exit
from helios.node.runtime import (
    LABEL_TASK,
    ContainerConflict,
    ContainerNotFound,
    ContainerSpec,
    ContainerState,
    ImageNotFound,
    InvalidImageName,
    InvalidSpec,
    LogDriver,
    Mount,
    PortConflict,
    PortMapping,
    RegistryAuthFailed,
    RegistryCredentials,
    RegistryUnreachable,
    Runtime,
    RuntimeFailure,
    RuntimeUnavailable,
)
from helios.secrets.resolve import (
    SecretNotDelivered,
    environment,
    registry_credentials,
    uses_env,
)
from helios.spec import PAYLOAD_ENV

log = logging.getLogger(__name__)

#: Failures that no restart can fix: the task fails at once.
PERMANENT_FAILURES = (InvalidImageName, ImageNotFound, RegistryAuthFailed, RegistryUnreachable,
                      InvalidSpec, PortConflict)
#: How often a check runs while the task waits for its first healthy answer.
FIRST_CHECK_INTERVAL = 0.25
#: Stop grace when the job's own is unknown (its spec never reached this node).
DEFAULT_GRACE = 3.0
#: How long to wait before asking an unreachable engine again.
ENGINE_RETRY = 1.0
#: Containers made for one launch when host ports the node picked turn out taken at start.
PORT_ATTEMPTS = 5


class JobContext(Protocol):
    """What a job actor needs from its node (implemented by `helios.node.node.NodeCore`)."""

    node: str
    runtime: Runtime
    container_labels: Mapping[str, str]
    health_host: str
    restart_options: RestartOptions

    def assignment(self, task_id: str) -> Assignment | None:
        """The task's current desired state, None once no assignment names it."""

    def report(self, status: TaskStatus) -> None:
        """A state change: recorded, written to the store, sent to the conductor."""

    def take_found(self, task_id: str) -> list[ContainerState] | None:
        """Containers the node's last reconciliation found for this task (None: unknown)."""

    def task_record(self, task_id: str) -> dict[str, Any]:
        """What the node persisted about the task: {"restarts": n, "final": status|None}."""

    def save_task_record(self, task_id: str, record: dict[str, Any] | None) -> None:
        """Persist it (None forgets the task)."""

    async def drain(self, task_id: str, grace: float) -> None:
        """Withdraw the task's service endpoint and wait `grace` (if it had one)."""

    def payload_dir(self, task_id: str) -> Path:
        """Where the task's dispatch payload file goes (removed with the task)."""

    def job_finished(self, task_id: str) -> None:
        """The task is gone and its container removed: the actor is about to end."""


def container_name(node: str, task_id: str) -> str:
    """Unique per node and task, stable across restarts (Docker refuses duplicates)."""
    return f"helios-{node}-{task_id}"


def container_spec(ctx: JobContext, a: Assignment,
                   payload_dir: Path | None = None) -> ContainerSpec:
    """The runtime's spec for an assignment: ports, limits, log driver, labels, auth.

    With `payload_dir`, a dispatched run's payload (`HELIOS_PAYLOAD`) is also written to
    a file there and named by `HELIOS_PAYLOAD_FILE`: the host path for the process
    runtime; for the docker runtime the file is bind-mounted read-only at
    `PAYLOAD_CONTAINER_PATH` and the variable names that path."""
    spec = a.spec
    assert spec is not None
    env = environment(spec.env, a.secrets)  # SecretNotDelivered if a value did not come
    mounts: list[Mount] = []
    if payload_dir is not None and PAYLOAD_ENV in env:
        in_container = ctx.runtime.isolates_files
        env.update(materialise_payload(env, payload_dir, container=in_container))
        if in_container:
            mounts.append(Mount(str(Path(payload_dir, "payload").resolve()),
                                PAYLOAD_CONTAINER_PATH, read_only=True))
    ports = {n: PortMapping(container=p.container, host=a.ports.get(n, p.host))
             for n, p in spec.ports.items()}
    auth = None
    if spec.registry_auth is not None:
        ra = spec.registry_auth
        auth = RegistryCredentials(*registry_credentials(ra, a.secrets), ra.server)
    return ContainerSpec(
        name=container_name(ctx.node, a.id), image=spec.image or "",
        command=tuple(spec.command or ()), env=env,
        labels=dict(ctx.container_labels), ports=ports,
        cpus=a.cpus or spec.resources.cpus, memory=a.memory or spec.resources.memory,
        log=LogDriver(spec.log.driver, dict(spec.log.options)), registry_auth=auth,
        job=a.job, task=a.id, version=a.version, mounts=tuple(mounts), user=spec.user,
        secret_keys=frozenset(uses_env(spec.env)))


def health_check(a: Assignment) -> HealthProbe | None:
    """The job's check in the form `helios.node.health` runs (port by name)."""
    spec = a.spec
    if spec is None or spec.health is None:
        return None
    h = spec.health
    port: str | None = None
    if isinstance(h.port, str):
        port = h.port
    elif isinstance(h.port, int):  # a container port number: find its name
        port = next((n for n, p in spec.ports.items() if p.container == h.port), str(h.port))
    return HealthProbe(kind=h.type, port=port, path=h.path, command=tuple(h.command),
                       timeout=h.timeout)


class _Finished(Exception):
    """Internal: the run reached a final state (exited or failed)."""


class JobActor(actors.Actor):
    """Owns one task. Started (and restarted after a crash) by its supervisor."""

    def __init__(self, ctx: JobContext, task_id: str) -> None:
        self.ctx = ctx
        self.task = task_id
        self.cid: str | None = None
        self.image: str = ""
        a = ctx.assignment(task_id)
        self.status = TaskStatus(id=task_id, node=ctx.node, job=a.job if a else "",
                                 state="pending", since=time.time(), updated=time.time())
        record = ctx.task_record(task_id)
        self.final: dict[str, Any] | None = record.get("final")
        self.tracker: RestartTracker | None = None
        self._restarts = int(record.get("restarts", 0))
        #: why the last launch failed when it may work next time (`_run` retries it)
        self._launch_failure = ""
        self._changed = trio.Event()
        self._run_scope: trio.CancelScope | None = None
        self._last: Assignment | None = a if a is not None and a.spec is not None else None
        self._started_at = 0.0
        #: the engine refused to start the current container (see `_after_exit`)
        self._start_refused = False

    # -- messages ---------------------------------------------------------------------

    async def on_start(self) -> None:
        self.start_soon(self._main)

    @actors.handler
    async def wake(self) -> None:
        """The task's assignment changed or went away: look again."""
        self._changed.set()
        a = self.ctx.assignment(self.task)
        if self._run_scope is not None and (a is None or a.desired != "run"
                                            or self._needs_replace(a)):
            self._run_scope.cancel()

    @actors.handler
    async def status_now(self) -> dict[str, Any]:
        return self.status.to_dict()

    @actors.handler
    async def finish(self) -> None:
        """Sent by the actor's own loop once its task is gone: end normally."""
        self.exit()

    # -- the loop ---------------------------------------------------------------------

    async def _main(self) -> None:
        await self._find_container()
        while True:
            self._changed = trio.Event()
            a = self.ctx.assignment(self.task)
            if a is not None and a.spec is not None:
                self._last = a  # its grace still applies once the assignment is gone
            if a is not None and a.desired == "run":
                if self.cid is not None and self._needs_replace(a):
                    await self._remove_container()
                    self.final = None
                if self.final is None:
                    with trio.CancelScope() as scope:
                        self._run_scope = scope
                        try:
                            await self._run(a)
                        except _Finished:
                            pass
                    self._run_scope = None
                    if scope.cancelled_caught:
                        continue
                elif self.status.state != self.final.get("state"):
                    self._report_final()
            else:
                await self._teardown()
                if a is None:
                    self.ctx.save_task_record(self.task, None)
                    self.ctx.job_finished(self.task)
                    await self.ref.tell("finish")
                    return
            await self._changed.wait()

    def _needs_replace(self, a: Assignment) -> bool:
        """The container was made from another image than the assignment names."""
        return bool(self.cid and a.spec is not None and a.spec.image and self.image
                    and a.spec.image != self.image)

    async def _find_container(self) -> None:
        """Adopt this task's container if one exists (after a node or actor restart)."""
        found = self.ctx.take_found(self.task)
        rt = self.ctx.runtime
        if found is None:
            found = await self._engine(rt.list, {LABEL_TASK: self.task})
        if not found:
            return
        found = sorted(found, key=lambda c: (not c.running, -(c.started_at or 0)))
        keep, extra = found[0], found[1:]
        for c in extra:  # duplicates (a crash between create and record): keep one
            log.warning("task %s: removing duplicate container %s", self.task, c.id[:12])
            await self._engine(rt.remove, c.id)
        try:
            state = await self._engine(rt.adopt, keep.id)
        except ContainerNotFound:  # removed between list and adopt: start afresh
            return
        self.cid, self.image = state.id, state.image
        log.info("task %s: adopted container %s (%s)", self.task, state.id[:12], state.status)

    async def _engine(self, fn: Any, *args: Any) -> Any:
        """Call the runtime, waiting out an unreachable engine (Docker restarting)."""
        while True:
            try:
                return await fn(*args)
            except RuntimeUnavailable as e:
                log.warning("task %s: %s; retrying", self.task, e)
                await trio.sleep(ENGINE_RETRY)

    # -- running ------------------------------------------------------------------------

    def _tracker(self, a: Assignment) -> RestartTracker:
        assert a.spec is not None
        if self.tracker is None or self.tracker.policy != a.spec.restart:
            restarts = self.tracker.restarts if self.tracker else self._restarts
            self.tracker = RestartTracker(a.spec.restart, restarts=restarts,
                                          **self.ctx.restart_options)
        return self.tracker

    async def _run(self, a: Assignment) -> None:
        """Drive the container until the task ends (raises _Finished) or is cancelled."""
        if a.spec is None:
            self._fail("the assignment carries no job spec")
        self._tracker(a)
        rt = self.ctx.runtime
        state: ContainerState | None = None
        if self.cid is not None:
            try:
                state = await self._engine(rt.inspect, self.cid)
            except ContainerNotFound:
                self.cid = None
        if state is None:
            await self._launch(a)
        elif state.status == "created":  # a daemon stopped between create and start
            self._set("starting", reason="")
            await self._start()
        elif not state.running:  # died while no node watched it
            await self._after_exit(a, state, ran_for=_ran_for(state))
        elif state.started_at:  # adopted while running: it has run since then
            self._started_at = time.monotonic() - max(0.0, time.time() - state.started_at)
        while True:
            if self.cid is None:  # the launch failed, but not for good
                reason, self._launch_failure = self._launch_failure, ""
                await self._after_exit(a, None, ran_for=0.0, what=f"could not start: {reason}")
                continue
            state = await self._inspect_running()
            code, state = await self._watch(a, state)
            await self._after_exit(a, state, ran_for=time.monotonic() - self._started_at,
                                   code=code)

    async def _launch(self, a: Assignment) -> None:
        """pull -> create -> start."""
        rt = self.ctx.runtime
        try:
            spec = container_spec(self.ctx, a, self.ctx.payload_dir(self.task))
        except SecretNotDelivered as e:  # pending until a conductor pushes the values
            self._set("pending", reason=str(e))
            raise _Finished from None
        try:
            rt.check_image(spec.image)
            if not await self._engine(rt.has_image, spec.image):
                self._set("pulling", reason=f"pulling {spec.image}")
                await self._engine(rt.pull, spec.image, spec.registry_auth)
            self._set("starting", reason="")
            picked = bool(spec.ports) and all(p.host is None for p in spec.ports.values())
            for attempt in range(1, PORT_ATTEMPTS + 1):
                try:
                    cid = await self._engine(rt.create, spec)
                except ContainerConflict:  # left by a crash between create and adoption
                    await self._engine(rt.remove, spec.name)
                    cid = await self._engine(rt.create, spec)
                self.cid, self.image = cid, spec.image
                try:
                    await self._start(port_retry=picked and attempt < PORT_ATTEMPTS)
                    break
                except PortConflict as e:
                    # A port this node picked was free when probed but taken when Docker
                    # bound it (another node daemon or engine user on this machine): a
                    # new container gets other ports (the allocator moves on).
                    log.info("task %s: %s; trying other host ports", self.task, e.reason)
                    await self._engine(rt.remove, cid)
                    self.cid = None
        except PERMANENT_FAILURES as e:
            self._fail(e.reason)
        except RuntimeFailure as e:
            # The engine refused this launch (a create it failed, a container gone under
            # it...): it may work next time, so the restart policy decides (`_run`).
            log.warning("task %s: could not start: %s", self.task, e.reason)
            self._launch_failure = e.reason
            if self.cid is not None:
                await self._engine(rt.remove, self.cid)
                self.cid = None

    async def _start(self, port_retry: bool = False) -> None:
        """Start the container; with `port_retry` a port clash is raised (PortConflict)
        for `_launch` to try other host ports, else it fails the task."""
        assert self.cid is not None
        self._started_at = time.monotonic()
        self._start_refused = False
        try:
            await self._engine(self.ctx.runtime.start, self.cid)
        except ContainerNotFound:
            raise
        except PortConflict as e:
            if port_retry:
                raise
            self._fail(e.reason)
        except RuntimeFailure as e:
            # The engine refused to start it (bad command...): an exit like any other;
            # _watch sees it dead at once and the restart policy decides.
            self._start_refused = True
            self._set("starting", reason=e.reason)

    async def _inspect_running(self) -> ContainerState:
        assert self.cid is not None
        state = await self._engine(self.ctx.runtime.inspect, self.cid)
        self._set(self.status.state if self.status.state in ("healthchecking", "running")
                  else "starting", ports=dict(state.ports), started=state.started_at,
                  container=state.id, finished=None, exit_code=None)
        return state

    async def _watch(self, a: Assignment, state: ContainerState
                     ) -> tuple[int | None, ContainerState | None]:
        """Health checks while waiting for the container to exit. Returns its exit code
        (None when it vanished) and its last state."""
        rt = self.ctx.runtime
        assert self.cid is not None
        cid = self.cid
        code: int | None = None
        async with trio.open_nursery() as nursery:
            check = health_check(a)
            if not state.running:
                pass
            elif check is None:
                self._set("running", healthy=None, reason="")
            else:
                nursery.start_soon(self._health_loop, a, check, dict(state.ports))
            if state.running:
                try:
                    code = await self._engine(rt.wait, cid)
                except ContainerNotFound:
                    code = None
            else:
                code = state.exit_code
            nursery.cancel_scope.cancel()
        try:
            last = await self._engine(rt.inspect, cid)
        except ContainerNotFound:
            self.cid = None
            last = None
        return code, last

    async def _health_loop(self, a: Assignment, check: HealthProbe,
                           ports: dict[str, int]) -> None:
        assert a.spec is not None and a.spec.health is not None
        h = a.spec.health
        if self.status.state != "running":
            self._set("healthchecking", healthy=None, reason="")
        start = time.monotonic()
        fails = 0
        ok_once = False
        rt = self.ctx.runtime
        assert self.cid is not None
        cid = self.cid
        while True:
            result = await run_check(check, runtime=rt, cid=cid, ports=ports,
                                     host=self.ctx.health_host)
            if result.ok:
                fails = 0
                ok_once = True
                if self.status.state != "running" or self.status.healthy is not True:
                    self._set("running", healthy=True, reason="")
            elif time.monotonic() - start >= h.start_grace:
                fails += 1
                if fails >= h.failures and self.status.healthy is not False:
                    self._set(self.status.state, healthy=False,
                              reason=f"health check failed: {result.reason}")
            await trio.sleep(h.interval if ok_once else min(h.interval, FIRST_CHECK_INTERVAL))

    async def _after_exit(self, a: Assignment, state: ContainerState | None, *,
                          ran_for: float, code: int | None = None,
                          what: str | None = None) -> None:
        """Apply the restart policy; returns once the container runs again, or was
        launched anew (`self.cid` None: that launch failed too, `_run` decides again).
        `what` describes the exit when it is not the container's own."""
        assert a.spec is not None
        if state is not None and code is None:
            code = state.exit_code
        if what is None:
            what = describe_exit(code, oom=bool(state and state.oom_killed),
                                 error=state.error if state else "")
            if state is None and code is not None:
                what = describe_exit(code)
        finished = state.finished_at if state else time.time()
        decision = self._tracker(a).on_exit(code, ran_for=ran_for, now=time.monotonic(),
                                            batch=a.spec.kind != "service", what=what)
        self._persist()
        if not decision.restart:
            self._set(decision.state, reason=decision.reason, exit_code=code, finished=finished,
                      healthy=None)
            self._save_final()
            raise _Finished
        self._set("pending", reason=f"{what}; restarting in {decision.delay:g}s",
                  exit_code=code, finished=finished, healthy=None)
        await trio.sleep(decision.delay)
        self._set("starting", reason="")
        if self.cid is not None and self._start_refused:
            # Starting this very container again would be refused again when the refusal
            # is the engine's own leftover (Docker restarted in the middle of a start
            # keeps the containerd task: "task ...: already exists"): make a new one.
            try:
                await self._remove_container()
            except RuntimeFailure as e:
                log.warning("task %s: removing container %s refused to start failed: %s",
                            self.task, (self.cid or "")[:12], e)
            self.cid = None
        if self.cid is not None:
            try:
                await self._start()
                return
            except ContainerNotFound:
                self.cid = None
        await self._launch(a)

    # -- stopping -----------------------------------------------------------------------

    async def _teardown(self) -> None:
        """stopping -> stopped: stop with the job's grace, remove, report."""
        rt = self.ctx.runtime
        a = self.ctx.assignment(self.task) or self._last
        grace = DEFAULT_GRACE
        if a is not None and a.spec is not None:
            grace = a.spec.grace
        leftovers = await self._engine(rt.list, {LABEL_TASK: self.task})
        ids = {c.id for c in leftovers}
        if self.cid:
            ids.add(self.cid)
        if self.status.state in ("exited", "failed") and not any(c.running
                                                                for c in leftovers):
            # A finished run being cleaned up (its job stopped, removed or collected):
            # its exit is the last word; `stopping`/`stopped` would only overwrite it.
            for cid in ids:
                await self._remove_stopped(cid)
            self.cid = None
            return
        if ids and self.status.state != "stopped":
            self._set("stopping", healthy=None, reason="")
            await self.ctx.drain(self.task, grace)
        for cid in ids:
            try:
                await self._engine(rt.stop, cid, grace)
            except ContainerNotFound:
                pass
            except RuntimeFailure as e:
                log.warning("task %s: stop of %s failed: %s", self.task, cid[:12], e)
            await self._remove_stopped(cid)
        self.cid = None
        if self.status.state not in ("stopped", "exited", "failed") or ids:
            self._set("stopped", reason="", healthy=None, ports={})

    async def _remove_stopped(self, cid: str) -> None:
        """Remove a container being torn down. Docker may refuse for a while (`device or
        resource busy`: its rootfs still held after the daemon restarted mid-start);
        once it no longer runs the task is stopped all the same, and the node removes
        the container later as one no task owns (instead of the job actor failing and
        being restarted, its task `stopping`, until Docker lets go)."""
        rt = self.ctx.runtime
        try:
            await self._engine(rt.remove, cid)
        except ContainerNotFound:
            return
        except RuntimeFailure as e:
            try:
                state = await self._engine(rt.inspect, cid)
            except ContainerNotFound:
                return
            if state.running:
                raise
            log.warning("task %s: container %s stopped, not removed yet (%s); it is removed "
                        "later", self.task, cid[:12], e)

    async def _remove_container(self) -> None:
        if self.cid is not None:
            await self._engine(self.ctx.runtime.remove, self.cid)
            self.cid = None

    # -- reporting ------------------------------------------------------------------------

    def _set(self, state: str, **changes: Any) -> None:
        """Record and report a state change (nothing is sent when nothing changed)."""
        now = time.time()
        s = self.status
        restarts = self.tracker.restarts if self.tracker else self._restarts
        new = s.replace(**({"state": state, "container": self.cid, "restarts": restarts}
                           | changes))
        if new == s and new.to_dict() == s.to_dict():
            return
        new = new.replace(since=now if state != s.state else s.since, updated=now)
        self.status = new
        self.ctx.report(new)

    def _fail(self, reason: str) -> None:
        log.warning("task %s failed: %s", self.task, reason)
        self._set("failed", reason=reason, healthy=None)
        self._save_final()
        raise _Finished

    def _persist(self) -> None:
        rec = self.ctx.task_record(self.task)
        rec = dict(rec, restarts=self.tracker.restarts if self.tracker else self._restarts)
        self.ctx.save_task_record(self.task, rec)

    def _save_final(self) -> None:
        s = self.status
        self.final = {"state": s.state, "reason": s.reason, "exit_code": s.exit_code,
                      "finished": s.finished}
        rec = dict(self.ctx.task_record(self.task), final=self.final,
                   restarts=self.tracker.restarts if self.tracker else self._restarts)
        self.ctx.save_task_record(self.task, rec)

    def _report_final(self) -> None:
        f = self.final or {}
        self._set(f.get("state", "failed"), reason=f.get("reason", ""),
                  exit_code=f.get("exit_code"), finished=f.get("finished"), healthy=None)


def _ran_for(state: ContainerState) -> float:
    if state.started_at and state.finished_at:
        return max(0.0, state.finished_at - state.started_at)
    return 0.0
