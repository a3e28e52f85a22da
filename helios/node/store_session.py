"""The node's link to the cluster store (ZooKeeper, or the embedded store in solo mode).

Everything here may wait for a long time without holding anything else up: the node keeps
running its last known assignments from its state directory whatever the store does.

- Opening: retried until ZooKeeper answers (a node may boot before its ensemble).
- Cluster-id guard: the node remembers the id of the cluster it joined (in its state
  directory) and syncs nothing from a root that lacks it (wiped, or the wrong ensemble).
- Membership: the node record `/nodes/<name>` (address, resources, labels, runtime) and the
  ephemeral `/nodes/<name>/up`; both re-registered after a session loss.
- Desired state: `/assignments/<node>` is read on start, after every new session, and
  whenever the leader bumps that znode's value (`{"epoch", "generation"}`, written by the
  conductor with the children `<task-id>` = Assignment dicts). The node keeps whichever of
  store and local file has the newer (epoch, generation), so a node restarted while no
  conductor runs still gets its desired state.
- Leader: `protocol.LEADER_PATH` is watched so task events go to the current leader.
- Statuses: the reporter's store loop writes `/status/<node>/<task>`.
- Endpoints: healthy service tasks are published at `/services/<job>/<node>/<task>` (ephemeral,
  via `helios.endpoints`) and withdrawn before they stop.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from helios import protocol
from helios.config import split_zk
from helios.coordination import (
    ConnectionState,
    CoordinationError,
    CorruptValue,
    Store,
    Unavailable,
    open_store,
    open_zookeeper,
    paths,
    presence,
    register_node,
    wait_for_cluster,
)
from helios.coordination.reach import open_when_reachable, zk_hosts
from helios.retry import Backoff

if TYPE_CHECKING:
    from helios.node.node import NodeCore

log = logging.getLogger(__name__)

RETRY_MIN = 0.5
RETRY_MAX = 5.0


async def connect_store(url: str, session_timeout: float, credential: Any = None,
                        connect_timeout: float | None = None) -> Store:
    """Like `open_store`, with a connect timeout bounded by the session timeout: the
    connect runs in a thread that cancellation cannot interrupt, so a short one keeps a
    daemon stopped while ZooKeeper is down from hanging on exit."""
    if url.startswith("zk://"):
        hosts, root = split_zk(url)
        return await open_zookeeper(
            hosts, root, session_timeout=session_timeout,
            connect_timeout=connect_timeout or max(1.0, min(5.0, session_timeout)),
            credential=credential)
    return await open_store(url, session_timeout=session_timeout, credential=credential)


class ClusterLink:
    """Runs the node's side of coordination until cancelled (`run`)."""

    def __init__(self, core: NodeCore, *, store: Store | None = None,
                 store_url: str | None = None, session_timeout: float = 10.0,
                 credential: Any = None, instance: str | None = None) -> None:
        if store is None and not store_url:
            raise ValueError("give a store or a store URL")
        self.core = core
        self.store = store
        self._given = store  # a caller's store (solo) is used as is and never closed
        self.store_url = store_url
        self.session_timeout = session_timeout
        self.credential = credential
        self.instance = instance  # see node/identity.py
        self.unreachable_said = False  # the daemon's name check said it already
        self.connected = trio.Event()  # set once the guard passed on the first session

    async def run(self) -> None:
        store = self._given
        owned = store is None
        if store is None:
            store = await self._open()
            self.store = store
        try:
            await self._serve(store)
        finally:
            if owned:
                with trio.CancelScope(shield=True), trio.move_on_after(10):
                    await store.aclose()

    async def _open(self) -> Store:
        """Open the store as long as it takes (containers keep running meanwhile);
        `reach.py` says once that ZooKeeper is unreachable."""
        url = self.store_url
        assert url is not None
        return await open_when_reachable(
            lambda timeout: connect_store(url, self.session_timeout, self.credential,
                                          connect_timeout=timeout),
            zk_hosts(url), f"node {self.core.name} (running its last assignments)",
            max_delay=RETRY_MAX, said=self.unreachable_said)

    async def _connect(self, url: str) -> Store:
        return await connect_store(url, self.session_timeout, self.credential)

    async def _serve(self, store: Store) -> None:
        core = self.core
        cluster_id = await wait_for_cluster(store, core.cluster_id)
        if cluster_id != core.cluster_id:
            await core.set_cluster_id(cluster_id)
        log.info("node %s joined cluster %s at %s", core.name, cluster_id, store.root)
        self.connected.set()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._presence, store)
            nursery.start_soon(self._sessions, store)
            nursery.start_soon(self._leader, store)
            nursery.start_soon(self._assignments, store)
            nursery.start_soon(core.reporter.store_loop, store)
            nursery.start_soon(self._endpoints, store)

    async def _presence(self, store: Store) -> None:
        """Record + ephemeral presence, for as long as the node runs."""
        backoff = Backoff(RETRY_MIN, RETRY_MAX)
        while True:
            try:
                async with presence(store, self.core.name, self.core.record(),
                                    self.instance):
                    backoff.reset()
                    await trio.sleep_forever()
            except CoordinationError as e:
                log.warning("node %s: registering failed (%s); retrying in %.1fs",
                            self.core.name, e, backoff.delay)
                await backoff.sleep()

    async def _sessions(self, store: Store) -> None:
        """After a session loss: check the cluster id, re-register, re-sync, flush."""
        lost = False
        async for state in store.connection_events():
            if state == ConnectionState.LOST:
                lost = True
                log.warning("node %s: ZooKeeper session lost; containers keep running",
                            self.core.name)
            elif state == ConnectionState.CONNECTED:
                if lost:
                    lost = False
                    await wait_for_cluster(store, self.core.cluster_id)
                    await self._retry(register_node, store, self.core.name, self.core.record())
                    await self._retry(self.sync_assignments, store)
                self.core.reporter.wake()
                self.core._endpoints_changed.set()  # ephemerals may be gone: re-publish

    async def _endpoints(self, store: Store) -> None:
        """Publish healthy service endpoints (`/services/<job>/<node>/<task>`, ephemeral) and
        withdraw the others; level-triggered against what the store holds."""
        try:
            from helios import endpoints as ep
        except ImportError:  # the endpoints module is not part of this build
            log.warning("helios.endpoints missing: service endpoints are not published")
            return
        core = self.core
        session = store.session_id
        failing: dict[str, str] = {}  # task -> the error last logged for it
        while True:
            changed = core.endpoints_changed()
            if store.session_id != session:  # ephemerals went with the old session
                session = store.session_id
                core.published.clear()
            # Each endpoint on its own: one that cannot be written (a refused ACL, a bad
            # name) must not keep the node's other services unreachable.
            errors: dict[str, CoordinationError] = {}
            for task, value in list(core.published.items()):
                if core.endpoints.get(task) != value:
                    try:
                        await ep.deregister_endpoint(store, value["job"], task, core.name)
                        del core.published[task]
                    except CoordinationError as e:
                        errors[task] = e
            for task, value in list(core.endpoints.items()):
                if core.published.get(task) != value and task not in errors:
                    try:
                        await ep.register_endpoint(store, value["job"], task, core.name,
                                                   value["host"], value["ports"])
                        core.published[task] = dict(value)
                    except CoordinationError as e:
                        errors[task] = e
            for task, err in errors.items():
                if failing.get(task) != str(err):  # once per task and reason, not per retry
                    job = (core.endpoints.get(task) or core.published.get(task) or {}).get(
                        "job", "?")
                    log.log(logging.INFO if isinstance(err, Unavailable) else logging.WARNING,
                            "node %s: endpoint of %s (job %s) not published: %s; retrying",
                            core.name, task, job, err)
            failing = {task: str(err) for task, err in errors.items()}
            with trio.move_on_after(RETRY_MAX):  # also catches a silent session change
                await changed.wait()

    async def _retry(self, fn: Any, *args: Any) -> None:
        backoff = Backoff(RETRY_MIN, RETRY_MAX)
        while True:
            try:
                await fn(*args)
                return
            except Unavailable:
                await backoff.sleep()

    async def _leader(self, store: Store) -> None:
        while True:
            try:
                async for entry in store.watch_data(protocol.LEADER_PATH):
                    value = entry.value if entry is not None else None
                    self.core.set_leader(value if isinstance(value, dict) else None)
            except CorruptValue as e:
                log.warning("%s", e)
                await trio.sleep(RETRY_MAX)

    async def _assignments(self, store: Store) -> None:
        """Sync on start and whenever the conductor bumps /assignments/<node>."""
        path = paths.assignments(self.core.name)
        while True:
            try:
                async for _entry in store.watch_data(path):
                    await self._retry(self.sync_assignments, store)
            except CorruptValue as e:
                log.warning("%s", e)
                await trio.sleep(RETRY_MAX)

    async def sync_assignments(self, store: Store) -> None:
        """Offer the store's desired state to the node (kept only if newer), and delete
        status entries of tasks this node no longer knows (left by an earlier run)."""
        await self._sync_assignments(store)
        core = self.core
        for task in await store.children(paths.statuses(core.name)):
            if task not in core.desired and task not in core.statuses:
                core.reporter.forget(task)

    async def _sync_assignments(self, store: Store) -> None:
        base = paths.assignments(self.core.name)
        try:
            head = await store.get(base)
        except CorruptValue as e:
            log.warning("%s", e)
            head = None
        epoch = generation = 0
        if head is not None and isinstance(head.value, dict):
            epoch = int(head.value.get("epoch", 0) or 0)
            generation = int(head.value.get("generation", 0) or 0)
        found: list[dict[str, Any]] = []
        for name in await store.children(base):
            try:
                entry = await store.get(paths.assignment(self.core.name, name))
            except CorruptValue as e:
                log.warning("%s", e)
                continue
            if entry is None or not isinstance(entry.value, dict):
                continue
            value = dict(entry.value)
            if head is None or not isinstance(head.value, dict):
                epoch = max(epoch, int(value.get("epoch", 0) or 0))
                generation = max(generation, int(value.get("generation", 0) or 0))
            value.setdefault("id", name)
            found.append(value)
        await self.core.offer_assignments(epoch, generation, found, source="store")
