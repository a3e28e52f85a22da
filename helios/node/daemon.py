"""`run_node`: the node daemon of one machine, as one trio function.

`helios node` (the CLI) and `helios solo` call it; tests and `python -m helios.node` too.
It wires the pieces together and owns their lifetimes, in this order:

1. the state directory's lock (two daemons must never share one);
2. the runtime (docker, process, or auto: docker when its daemon answers; sim for
   scale tests);
3. the actor system (its own, or the caller's in solo mode) and the supervised `node`
   actor, ready to take assignments before the store is even reachable;
4. the node's loops (reconciliation, task records, conductor events) and, when a store or
   store URL is given, its cluster link (membership, desired state, statuses).

Cancelling it stops the daemon and leaves every container running: the next daemon adopts
them. The ZooKeeper presence is removed on a clean exit, so the conductor sees the node go
at once rather than after the session timeout.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Mapping

import trio

import actors
from helios import protocol
from helios.coordination import Store
from helios.coordination.acl import load_credential
from helios.node.identity import CHECK_TIMEOUT, instance_id, refuse_duplicate
from helios.node.node import NodeCore, spawn_node_actor
from helios.node.restart import RestartOptions
from helios.node.runtime import PortAllocator, Runtime, RuntimeFailure
from helios.node.state import StateDir
from helios.node.store_session import ClusterLink, connect_store
from helios.node.workload import WorkloadPolicy
from helios.retry import Backoff
from helios.units import parse_size

log = logging.getLogger(__name__)

RUNTIMES = ("docker", "process", "auto", "sim")


def detect_cpus() -> float:
    """CPUs this process may use (affinity mask), else the machine's count."""
    try:
        return float(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return float(os.cpu_count() or 1)


def detect_memory() -> int:
    """Total memory in bytes from /proc/meminfo (1 GiB when unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 1 << 30


async def open_runtime(kind: str, name: str, state: StateDir,
                       ports: PortAllocator, workload: WorkloadPolicy | None = None) -> Runtime:
    """An open runtime of `kind`; "auto" is docker when its daemon answers, else process."""
    if kind not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, not {kind!r}")
    if kind == "sim":  # scale tests: no container, no process (runtime/sim.py)
        from helios.node.runtime.sim import SimRuntime

        return SimRuntime(name, ports=ports)
    if kind in ("docker", "auto"):
        from helios.node.runtime.docker import DockerRuntime

        docker = DockerRuntime(name, ports=ports, bind_host=ports.host, workload=workload)
        await docker.open()
        try:
            await docker.ping()
        except RuntimeFailure as e:
            await docker.aclose()
            if kind == "docker":
                raise
            log.info("node %s: Docker not available (%s); using the process runtime", name, e)
        else:
            return docker
    from helios.node.runtime.process import ProcessRuntime
    from helios.node.runtime.process_user import task_user

    user = None  # solo (no policy): tasks run as the daemon's user
    if workload is not None:
        user = task_user(workload.process_user, workload.process_allow_root)
    rt = ProcessRuntime(name, state.process_dir, ports=ports, user=user)
    await rt.open()
    return rt


@contextlib.asynccontextmanager
async def _system(system: actors.ActorSystem | None, name: str, listen: str | None,
                  advertise: str | None) -> AsyncIterator[actors.ActorSystem]:
    if system is not None:
        yield system
        return
    async with actors.open_system(name=f"node-{name}", listen=listen, advertise=advertise,
                                  **protocol.network_options(role="node", name=name)) as own:
        yield own


async def run_node(*, name: str, state_dir: str | os.PathLike[str],
                   store: Store | None = None, store_url: str | None = None,
                   system: actors.ActorSystem | None = None,
                   listen: str | None = "127.0.0.1:0", advertise: str | None = None,
                   cpus: float | None = None, memory: int | str | None = None,
                   labels: Mapping[str, str] | None = None, runtime: str = "docker",
                   session_timeout: float = 10.0,
                   port_range: tuple[int, int] = (21000, 21999),
                   conductor: str | None = None, publish_address: str | None = None,
                   container_labels: Mapping[str, str] | None = None,
                   restart_options: RestartOptions | None = None,
                   metrics: str | None = None,
                   workload: WorkloadPolicy | None = None,
                   task_status: trio.TaskStatus[NodeCore] = trio.TASK_STATUS_IGNORED) -> None:
    """Run the node daemon until cancelled.

    name: the node's name (unique in the cluster). state_dir: its own directory (locked).
    store / store_url: an open store (solo: the embedded one, left open) or a URL
    (`zk://hosts/root`, opened and retried here); neither runs the node without a cluster
    link (assignments only through the `node` actor). system / listen / advertise: the
    caller's actor system, or where this daemon's own system listens. cpus / memory:
    capacity offered to the scheduler (detected when None; memory may be "4G").
    conductor: pin the conductor's address instead of following the elected leader.
    publish_address: the host that task ports are published on and endpoints registered
    with (`publish_host`: by default the advertised host, so other machines reach them).
    container_labels: extra labels on every container (tests use them for cleanup).
    restart_options: RestartTracker tuning (backoff_cap, stable_after, flap_restarts,
    flap_window). workload: the operator's rules for containers (`WorkloadPolicy`).
    metrics: where `GET /metrics` is served (None: nowhere).
    task_status.started() receives the `NodeCore` (its `.url` is the node
    actor's URL).
    """
    state = StateDir(state_dir)
    state.lock()
    try:
        instance = instance_id(state.path)
        cpus_ = float(cpus) if cpus else detect_cpus()
        memory_ = parse_size(memory) if memory else detect_memory()
        publish = publish_host(publish_address, advertise, listen)
        ports = PortAllocator(port_range[0], port_range[1], host=publish)
        rt = await open_runtime(runtime, name, state, ports, workload)
        try:
            async with _system(system, name, listen, advertise) as sys_:
                core = NodeCore(name=name, system=sys_, runtime=rt, state=state, cpus=cpus_,
                                memory=memory_, labels=labels,
                                container_labels=container_labels,
                                restart_options=restart_options, conductor=conductor,
                                health_host=publish)
                try:
                    reached = True
                    if store is None and store_url:
                        # before anything touches a container: a daemon of this name
                        # from another state directory would take its containers
                        reached = await refuse_duplicate(
                            name, instance,
                            lambda: connect_store(store_url, session_timeout,
                                                  load_credential(),
                                                  connect_timeout=CHECK_TIMEOUT),
                            store_url.removeprefix("zk://"))
                    await spawn_node_actor(core)
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(core.run)
                        if store is not None or store_url:
                            link = ClusterLink(core, store=store, store_url=store_url,
                                               session_timeout=session_timeout,
                                               credential=load_credential()
                                               if store is None else None,
                                               instance=instance)
                            link.unreachable_said = not reached
                            core.link = link
                            nursery.start_soon(_keep_linked, link)
                        if metrics:
                            from helios.http import serve_metrics

                            await nursery.start(serve_metrics, core, metrics)
                        log.info("node %s up: %s, runtime %s, %g cpus, %d MiB", name,
                                 core.url, rt.kind, cpus_, memory_ >> 20)
                        task_status.started(core)
                finally:
                    if system is not None:  # a borrowed system: stop what we spawned
                        with trio.CancelScope(shield=True), trio.move_on_after(30):
                            await _stop_actors(core)
        finally:
            with trio.CancelScope(shield=True):
                await rt.aclose()
    finally:
        state.unlock()


def _host_of(address: str) -> str:
    """`h`, `h:p`, `[v6]:p` or `tcp://h:p` -> `h`."""
    rest = address.split("://", 1)[-1].split("/", 1)[0]
    if rest.startswith("["):
        return rest[1:].split("]", 1)[0]
    host, sep, port = rest.rpartition(":")
    return host if sep and port.isdigit() and ":" not in host else rest


def publish_host(publish_address: str | None, advertise: str | None,
                 listen: str | None) -> str:
    """Where a node publishes task ports and says its endpoints are: `--publish-address`,
    else the `--advertise` host, else the `--listen` host when it is a specific one, else
    127.0.0.1. Why not always 127.0.0.1: a client on another machine reads the endpoint's
    host from `/services/<job>` and must be able to reach it there."""
    for candidate in (publish_address, advertise, listen):
        if candidate:
            host = _host_of(candidate)
            if host and host not in ("0.0.0.0", "::", "*"):
                return host
    return "127.0.0.1"


async def _keep_linked(link: ClusterLink) -> None:
    """Run the cluster link, starting it again after an unexpected error: a store that
    misbehaves (ACLs changed, a bug) must never take the containers' keeper down."""
    backoff = Backoff(1.0, 30.0)
    while True:
        try:
            await link.run()
            return
        except Exception as e:  # logged and retried; cancellation still ends it
            log.error("node %s: cluster link failed (%s: %s); containers keep running, "
                      "retrying in %.0fs", link.core.name, type(e).__name__, e,
                      backoff.delay, exc_info=True)
        await backoff.sleep()


async def _stop_actors(core: NodeCore) -> None:
    for ref in [core.system.ref(f"{protocol.NODE_ACTOR}-sup"), *core.jobs.values()]:
        with contextlib.suppress(actors.ActorError):
            await ref.kill()


__all__ = ["detect_cpus", "detect_memory", "open_runtime", "run_node"]
