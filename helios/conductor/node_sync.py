"""The leader's side of its nodes: follows every node's record and presence, pushes each
node its complete assignment set (what the store holds, never the cache) and folds the
task reports nodes send back into the cache.

One `NodeSync` per leadership term (`term.Leadership`); it ends with the term. Every
change it sees only wakes the reconcile loop (`Leadership.poke`): the loop decides.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

import actors
from helios.conductor.history import event
from helios.conductor.snapshot import node_from_record, node_url
from helios.conductor.term import Leadership
from helios.coordination import paths
from helios.coordination.election import current_epoch
from helios.coordination.errors import CoordinationError, CorruptValue
from helios.coordination.store import Store
from helios.events import cluster_event
from helios.model import TaskStatus
from helios.retry import Backoff

log = logging.getLogger(__name__)

__all__ = ["NODE_TIMEOUT", "STATUS_REFRESH", "NodeSync"]

#: bounded wait for a node's answer to `assign` / `statuses`
NODE_TIMEOUT = 10.0
#: re-read every node's task reports this often (repairs reports lost on the way)
STATUS_REFRESH = 15.0


class NodeSync:
    """Watches, pushes to and hears from the nodes for one term."""

    def __init__(self, lead: Leadership, store: Store, system: actors.ActorSystem,
                 clock: Callable[[], float]) -> None:
        self.lead = lead
        self.store = store
        self.system = system
        self.clock = clock

    async def watch_nodes(self) -> None:
        """Follow every node's record and presence; a change wakes the reconciler."""
        async with trio.open_nursery() as nursery:
            watched: dict[str, trio.CancelScope] = {}
            async for names in self.store.watch_children(paths.NODES):
                for name in names:
                    if name not in watched:
                        scope = trio.CancelScope()
                        watched[name] = scope
                        nursery.start_soon(self._watch_node, name, scope)
                for name in set(watched) - set(names):
                    watched.pop(name).cancel()
                    if self.lead.state.nodes.pop(name, None) is not None:
                        self.lead.poke()

    async def _watch_node(self, name: str, scope: trio.CancelScope) -> None:
        async def record() -> None:
            async for entry in self.store.watch_data(paths.node(name)):
                self.lead.records[name] = entry.value if entry is not None else None
                self._node_changed(name, record_changed=True)

        async def up() -> None:
            async for entry in self.store.watch_data(paths.node_up(name)):
                self.lead.presence[name] = entry.value if entry is not None else None
                self._node_changed(name, record_changed=False)

        with scope:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(record)
                    nursery.start_soon(up)
            except CorruptValue as e:
                log.warning("node %s: %s", name, e)

    def _node_changed(self, name: str, *, record_changed: bool) -> None:
        old = self.lead.state.nodes.get(name)
        if name in self.lead.presence:
            is_up = self.lead.presence[name] is not None
        else:  # presence not watched yet: keep what the snapshot said
            is_up = old.up if old is not None else False
        record = self.lead.records.get(name, old.to_dict() if old is not None else None)
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
        self.lead.state.nodes[name] = node
        if old is None or old.up != node.up or old.address != node.address \
                or old.cpus != node.cpus or old.memory != node.memory \
                or dict(old.labels) != dict(node.labels):
            log.info("node %s is %s%s", name, node.status,
                     f" ({node.address})" if node.up else "")
            # an event once presence is known (before, "down" is only a guess), for a
            # node that changed, or a new one that came up
            if name in self.lead.presence and (node.up if old is None else old.up != node.up):
                self.lead.history.add(cluster_event("node", node.status, node=name,
                                            detail=node.address or "", at=now))
            self.lead.poke()
        if node.up and (old is None or not old.up or record_changed
                        or old.address != node.address):
            self.sync_node(name)

    def sync_node(self, name: str) -> None:
        """Push the node its set and re-read its reports (it is new, back, or restarted)."""
        self.lead.want_statuses.add(name)
        self.push(name)

    def push(self, name: str) -> None:
        flag = self.lead.push_flags.get(name)
        if flag is None:
            flag = self.lead.push_flags[name] = trio.Event()
            assert self.lead.nursery is not None
            self.lead.nursery.start_soon(self._push_loop, name)
        flag.set()

    async def _push_loop(self, name: str) -> None:
        """Send `name` its complete assignment set whenever it changed; retry while the
        node is up but unreachable (it also reads the store itself when it starts)."""
        L = self.lead
        backoff = Backoff(0.2, 5.0)
        while True:
            await L.push_flags[name].wait()
            L.push_flags[name] = trio.Event()
            node = L.state.nodes.get(name)
            if node is None or not node.up or not node.address:
                continue
            # What the store holds, never the cache: a node must not run a task that a
            # successor leader could not find.
            tasks = [a.to_dict() for a in L.writer.persisted.on_node(name)]
            generation = next(L.generation)
            try:
                ref = await self.node_ref(name, self.node_url(name, node.address))
                await ref.ask("assign", L.epoch, generation, tasks, timeout=NODE_TIMEOUT)
                backoff.reset()
                if name in L.want_statuses:
                    L.want_statuses.discard(name)
                    reports = await ref.ask("statuses", timeout=NODE_TIMEOUT)
                    self.merge_reports(name, reports or [])
            except actors.RemoteError as e:
                if e.type_name == "StaleEpoch" and await self._deposed():
                    log.warning("node %s refused epoch %d: a newer leader exists", name,
                                L.epoch)
                    L.term.lost.set()
                    return
                log.warning("node %s refused its assignments: %s", name, e)
                await backoff.sleep()
                L.push_flags[name].set()
            except actors.ActorError as e:
                log.info("node %s unreachable (%s); retrying in %.1fs", name, e,
                         backoff.delay)
                await backoff.sleep()
                L.push_flags[name].set()

    def node_url(self, name: str, address: str) -> str:
        """The node actor's URL: the record's `url` when the node wrote one."""
        record = self.lead.records.get(name)
        url = record.get("url") if isinstance(record, dict) else None
        return url if isinstance(url, str) and url else node_url(address)

    async def node_ref(self, name: str, url: str) -> actors.ActorRef:
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

    async def refresh_statuses_loop(self) -> None:
        while True:
            await trio.sleep(max(STATUS_REFRESH, len(self.lead.state.nodes) / 50))
            for name, node in list(self.lead.state.nodes.items()):
                if node.up:
                    self.sync_node(name)

    def merge_reports(self, node: str, reports: list[Any]) -> int:
        """Fold a node's task reports into the cache; returns how many changed."""
        changed = 0
        foreign: list[str] = []
        for raw in reports:
            if not isinstance(raw, dict):
                continue
            data = dict(raw)
            data["node"] = node
            a = self.lead.state.assignments.get(str(data.get("id")))
            prev = self.lead.state.statuses.get(str(data.get("id")))
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
            self.lead.state.statuses[st.id] = st
            changed += 1
            if prev is None or prev.state != st.state or prev.node != node \
                    or prev.healthy != st.healthy:
                end = st.state in ("exited", "failed")  # a run's timing, for batch
                self.lead.history.add(event(st.job or "?", st.id, node, st.state, st.reason,
                                    at=st.since or st.updated or None,
                                    exit_code=st.exit_code, healthy=st.healthy,
                                    started=st.started if end else None,
                                    finished=st.finished if end else None))
        if foreign:
            log.warning("node %s reported on %d task(s) not assigned to it, ignored: %s",
                        node, len(foreign), ", ".join(foreign[:5]))
        if changed:
            self.lead.poke()
        return changed

    async def _deposed(self) -> bool:
        """Whether the store holds an epoch newer than this term's. A node's refusal
        alone never deposes a leader: the node may be confused, or the message forged."""
        try:
            newer = await current_epoch(self.store) > self.lead.epoch
        except CoordinationError:
            return False  # the term's own fenced writes will tell
        if not newer:
            log.warning("a node claims epoch %d is stale, but the store says it is "
                        "current; not standing down", self.lead.epoch)
        return newer

    # ------------------------------------------------------------------ reconciling

    async def tell_removed(self, name: str, url: str) -> None:
        """A removed node whose daemon still runs: an empty desired set, so it stops its
        copies of tasks now placed elsewhere (best effort: it is no member any more)."""
        try:
            ref = await self.node_ref(name, url)
            await ref.ask("assign", self.lead.epoch, next(self.lead.generation), [],
                          timeout=5.0)
        except actors.ActorError as e:
            log.warning("removed node %s was not told to stop its tasks: %s", name, e)
