"""A toy cluster for reconciler tests: apply plans, then play the nodes' part."""

from __future__ import annotations

from helios.conductor.drain import with_drains
from helios.conductor.plan import ClusterState, Plan, apply
from helios.conductor.reconcile import reconcile
from helios.model import FINISHED_STATES, JobRecord, NodeInfo, TaskStatus
from helios.spec import validate


def spec(name: str, **fields):
    """A service here counts as healthy as soon as it runs (``min_healthy_time: 0s``)
    unless the test says otherwise: the toy nodes start tasks instantly."""
    data = {"name": name, "image": "local/busybox:1"} | fields
    if data.get("kind", "service") == "service":
        data["update"] = {"min_healthy_time": "0s"} | dict(data.get("update") or {})
    return validate(data)


def job(name: str, version: int = 1, **fields) -> JobRecord:
    return JobRecord(spec(name, **fields), version)


def node(name: str, cpus: float = 4.0, mem: int = 8 << 30, status: str = "up",
         down_since: float | None = None, **labels) -> NodeInfo:
    return NodeInfo(name=name, cpus=cpus, memory=mem, labels=labels, status=status,
                    down_since=down_since)


def plan_for(state: ClusterState, now: float, grace: float = 2.0) -> Plan:
    """The plan, with the operators' drain records overlaid on the nodes as the
    conductor does (`drain.with_drains`)."""
    return reconcile(state.jobs, with_drains(state.nodes, state.drains), state.assignments,
                     state.statuses, now, grace)


def run_nodes(state: ClusterState, now: float, *, healthy: bool = True,
              batch_exits: bool = True) -> ClusterState:
    """Every up node does what its assignments say: run -> running (batch -> exited),
    stop -> stopped. Tasks that start running report ``healthy``; others keep their
    status. Down nodes report nothing."""
    out = state.copy()
    for a in state.assignments.values():
        n = state.nodes.get(a.node)
        if n is None or not n.up:
            continue
        st = state.statuses.get(a.id)
        if st is not None and st.node == a.node and st.state in FINISHED_STATES:
            continue
        job = state.jobs.get(a.job)
        if a.desired == "stop":
            new = "stopped"
        elif job is not None and job.spec.kind == "batch" and batch_exits and st is not None \
                and st.state == "running":
            new = "exited"
        else:
            new = "running"
        if st is not None and st.node == a.node and st.state == new:
            continue  # no news: keep its health as reported
        out.statuses[a.id] = TaskStatus(id=a.id, node=a.node, job=a.job, state=new,
                                        healthy=healthy if new == "running" else None,
                                        since=now, updated=now)
    return out


def step(state: ClusterState, now: float, **kw) -> tuple[ClusterState, Plan]:
    p = plan_for(state, now)
    return run_nodes(apply(state, p, now), now, **kw), p


def make_healthy(state: ClusterState) -> ClusterState:
    out = state.copy()
    for tid, st in state.statuses.items():
        if st.state == "running":
            out.statuses[tid] = st.replace(healthy=True)
    return out
