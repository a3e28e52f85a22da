"""Prometheus metrics of conductors and nodes (docs/http-api.md), scraped at
`GET /metrics`.

Why a registry per daemon and collectors that read state at scrape time: a conductor's
gauges (tasks by state, nodes, rollouts) are views of the leader's cache, so they are
computed when Prometheus asks instead of being kept up to date on every change; only
what cannot be recomputed (placements made, reconcile durations, failovers) is counted as
it happens. Several conductors or nodes may live in one process (`helios solo`, tests),
so each gets its own registry, found from its object with `conductor_metrics` /
`node_metrics`. Actor-runtime figures (actors, mailbox depth, connections, asks in
flight) are read from the outside of the actor system.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "ConductorMetrics", "NodeMetrics", "conductor_metrics",
           "node_metrics", "observe_docker", "render"]

# `*_created` series double every counter and help no dashboard
disable_created_metrics()

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_RECONCILE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                      5.0)
_DOCKER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ActorCollector(Collector):
    """Figures of one actor system: actors, queued messages, connections, asks awaiting
    an answer. Read from its registries without changing the runtime."""

    def __init__(self, system: Any) -> None:
        self.system = system

    def collect(self) -> Iterator[GaugeMetricFamily]:
        cells = list(getattr(self.system, "_registry", {}).values())
        depths = [len(getattr(getattr(c, "mailbox", None), "queue", ())) for c in cells]
        conns = {id(c): c for c in getattr(self.system, "_conns", {}).values()
                 if not getattr(c, "closed", False)}
        yield GaugeMetricFamily("actors_actors", "Actors registered in this system.",
                                value=len(cells))
        yield GaugeMetricFamily("actors_mailbox_messages",
                                "Messages waiting in all mailboxes of this system.",
                                value=sum(depths))
        yield GaugeMetricFamily("actors_mailbox_max_messages",
                                "Messages waiting in the fullest mailbox.",
                                value=max(depths, default=0))
        yield GaugeMetricFamily("actors_connections", "Open connections to other systems.",
                                value=len(conns))
        yield GaugeMetricFamily("actors_pending_asks",
                                "Asks sent to other systems still awaiting an answer.",
                                value=sum(len(getattr(c, "pending", {}))
                                          for c in conns.values()))
        yield GaugeMetricFamily("actors_outbox_frames",
                                "Frames queued for sending on all connections.",
                                value=sum(_outbox_len(c) for c in conns.values()))


def _outbox_len(conn: Any) -> int:
    outbox = getattr(conn, "outbox", None)
    for attr in ("queue", "_queue", "frames", "_frames"):
        q = getattr(outbox, attr, None)
        if q is not None:
            try:
                return len(q)
            except TypeError:
                return 0
    return 0


class ConductorMetrics(Collector):
    """One conductor's registry: counters it feeds, gauges read from its cache."""

    def __init__(self, conductor: Any) -> None:
        self._conductor = weakref.ref(conductor)
        self.registry = CollectorRegistry(auto_describe=False)
        self.placements = Counter("helios_placements", "Tasks placed on a node.",
                                  registry=self.registry)
        self.failovers = Counter("helios_node_failovers",
                                 "Down nodes whose tasks were placed elsewhere.",
                                 registry=self.registry)
        self.reconcile = Histogram("helios_reconcile_seconds",
                                   "Duration of one reconciliation (plan, write, push).",
                                   buckets=_RECONCILE_BUCKETS, registry=self.registry)
        self.http_requests = Counter("helios_http_requests",
                                     "HTTP API requests answered, by method and status.",
                                     ["method", "status"], registry=self.registry)
        self.registry.register(self)
        self.registry.register(ActorCollector(conductor.system))
        #: registries shown after this one at `/metrics` (solo mode: its node's)
        self.extra: list[CollectorRegistry] = []

    def add_registry(self, registry: CollectorRegistry) -> None:
        if registry not in self.extra:
            self.extra.append(registry)

    def count_plan(self, plan: Any) -> None:
        """Called by the leader for each plan it applies."""
        if plan.place:
            self.placements.inc(len(plan.place))
        nodes = {lo.node for lo in plan.lost}
        if nodes:
            self.failovers.inc(len(nodes))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        c = self._conductor()
        L = getattr(c, "lead", None) if c is not None else None
        leading = L is not None and not L.term.lost.is_set()
        yield GaugeMetricFamily("helios_is_leader", "1 while this conductor leads.",
                                value=1.0 if leading else 0.0)
        tasks = GaugeMetricFamily("helios_tasks", "Tasks by job and last reported state "
                                  "(on the leader).", labels=["job", "state"])
        nodes = GaugeMetricFamily("helios_nodes", "Nodes by status (on the leader).",
                                  labels=["status"])
        rollouts = GaugeMetricFamily("helios_rollouts", "Service jobs by rollout state "
                                     "(on the leader).", labels=["state"])
        if leading:
            assert L is not None
            from helios.conductor import views

            counts: dict[tuple[str, str], int] = {}
            for st in L.state.statuses.values():
                key = (st.job or "", st.state)
                counts[key] = counts.get(key, 0) + 1
            for (job, state), n in sorted(counts.items()):
                tasks.add_metric([job, state], n)
            by_status = {"up": 0, "down": 0}
            for n in L.state.nodes.values():
                by_status[n.status] = by_status.get(n.status, 0) + 1
            for status, n in sorted(by_status.items()):
                nodes.add_metric([status], n)
            states: dict[str, int] = {}
            for rec in L.state.jobs.values():
                if rec.spec.kind != "service":
                    continue
                try:
                    state = views.rollout_progress(L.state, rec)["state"]
                except Exception:  # a view of a half-built record: not worth a scrape
                    continue
                states[state] = states.get(state, 0) + 1
            for state, n in sorted(states.items()):
                rollouts.add_metric([state], n)
        yield tasks
        yield nodes
        yield rollouts


class NodeMetrics(Collector):
    """One node daemon's registry: its tasks by state and Docker request durations."""

    def __init__(self, core: Any, actors: bool = True) -> None:
        self._core = weakref.ref(core)
        self.registry = CollectorRegistry(auto_describe=False)
        self.docker = Histogram("helios_docker_request_seconds",
                                "Duration of requests to the Docker daemon.", ["op"],
                                buckets=_DOCKER_BUCKETS, registry=self.registry)
        self.registry.register(self)
        if actors:  # not in solo mode, where the conductor shows the shared system's
            self.registry.register(ActorCollector(core.system))

    def collect(self) -> Iterable[GaugeMetricFamily]:
        core = self._core()
        fam = GaugeMetricFamily("helios_node_tasks", "This node's tasks by state.",
                                labels=["state"])
        counts: dict[str, int] = {}
        statuses = getattr(core, "statuses", {}) if core is not None else {}
        for st in list(statuses.values()):
            state = str(getattr(st, "state", "") or "pending")
            counts[state] = counts.get(state, 0) + 1
        for state, n in sorted(counts.items()):
            fam.add_metric([state], n)
        yield fam


_conductors: weakref.WeakKeyDictionary[Any, ConductorMetrics] = weakref.WeakKeyDictionary()
_nodes: weakref.WeakKeyDictionary[Any, NodeMetrics] = weakref.WeakKeyDictionary()
#: Docker histograms by runtime name (the node's name), fed by the Docker runtime
_docker: dict[str, Histogram] = {}


def conductor_metrics(conductor: Any) -> ConductorMetrics:
    """The metrics of `conductor`, created on first use."""
    m = _conductors.get(conductor)
    if m is None:
        m = _conductors[conductor] = ConductorMetrics(conductor)
    return m


def node_metrics(core: Any, actors: bool = True) -> NodeMetrics:
    """The metrics of a node daemon (`NodeCore`), created on first use (`actors`: with
    the figures of its actor system)."""
    m = _nodes.get(core)
    if m is None:
        m = _nodes[core] = NodeMetrics(core, actors)
        _docker[str(getattr(core, "name", ""))] = m.docker
    return m


def observe_docker(node: str, op: str, seconds: float) -> None:
    """Record one Docker request of node `node`'s runtime (a no-op until the node's
    metrics exist, i.e. until something serves them)."""
    h = _docker.get(node)
    if h is not None:
        h.labels(op).observe(seconds)


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text format of `registry`."""
    return generate_latest(registry)
