"""Property tests on random clusters: the reconciler and scheduler together never
over-commit a node, never break a constraint, never use a down node or a taken host port;
plans are idempotent; service counts converge once the cluster stops changing."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helios.conductor.plan import ClusterState, apply
from helios.model import FINISHED_STATES, JobRecord

from .sim import job, node, plan_for, run_nodes

GIB = 1 << 30

nodes_st = st.lists(
    st.tuples(st.sampled_from([1.0, 2.0, 4.0]), st.sampled_from([1, 2, 4]),
              st.sampled_from(["a", "b"])),
    min_size=1, max_size=6)

job_st = st.fixed_dictionaries({
    "kind": st.sampled_from(["service", "service", "batch"]),
    "count": st.integers(0, 6),
    "cpus": st.sampled_from([0.25, 0.5, 1.0]),
    "memory": st.sampled_from(["128M", "512M", "1G"]),
    "zone": st.sampled_from([None, None, "a", "b"]),
    "port": st.sampled_from([None, None, 80, 443]),
    "spread": st.booleans(),
    "parallel": st.integers(1, 3),
})
jobs_st = st.lists(job_st, min_size=1, max_size=4)

event_st = st.one_of(
    st.tuples(st.just("down"), st.integers(0, 5)),
    st.tuples(st.just("up"), st.integers(0, 5)),
    st.tuples(st.just("count"), st.integers(0, 3), st.integers(0, 6)),
    st.tuples(st.just("image"), st.integers(0, 3), st.integers(0, 1000)),
    st.tuples(st.just("kill"), st.integers(0, 50)),
    st.tuples(st.just("quiet"),),
)


def make_job(i: int, d: dict) -> JobRecord:
    fields: dict = {"kind": d["kind"], "count": d["count"], "spread": d["spread"],
                    "resources": {"cpus": d["cpus"], "memory": d["memory"]},
                    "update": {"parallel": d["parallel"]}}
    if d["zone"]:
        fields["constraints"] = {"zone": d["zone"]}
    if d["port"]:
        fields["ports"] = {"p": {"container": 8000, "host": d["port"]}}
    return job(f"job{i}", **fields)


def check_invariants(state: ClusterState) -> None:
    for n in state.nodes.values():
        cpus = mem = 0.0
        ports: list[int] = []
        for a in state.assignments.values():
            if a.node != n.name:
                continue
            s = state.statuses.get(a.id)
            if s is not None and s.node == a.node and s.state in FINISHED_STATES:
                continue
            cpus += a.cpus
            mem += a.memory
            ports.extend(a.ports.values())
        assert cpus <= n.cpus + 1e-9, (n.name, cpus)
        assert mem <= n.memory, (n.name, mem)
        assert len(ports) == len(set(ports)), (n.name, ports)


def check_plan(state: ClusterState, plan) -> None:
    for p in plan.place:
        n = state.nodes[p.task.node]
        assert n.up, p
        spec = state.jobs[p.task.job].spec
        assert all(n.labels.get(k) == v for k, v in spec.constraints.items()), p


def apply_event(state: ClusterState, ev: tuple, now: float) -> None:
    names = sorted(state.nodes)
    jobs = sorted(state.jobs)
    kind = ev[0]
    if kind in ("down", "up"):
        name = names[ev[1] % len(names)]
        old = state.nodes[name]
        if kind == "down" and old.up:
            state.nodes[name] = node(name, old.cpus, old.memory, "down", now, **old.labels)
        elif kind == "up" and not old.up:
            state.nodes[name] = node(name, old.cpus, old.memory, **old.labels)
    elif kind == "count":
        j = state.jobs[jobs[ev[1] % len(jobs)]]
        state.jobs[j.name] = j.replace(spec=j.spec.replace(count=ev[2]),
                                       version=j.version + 1)
    elif kind == "image":
        j = state.jobs[jobs[ev[1] % len(jobs)]]
        state.jobs[j.name] = j.replace(spec=j.spec.replace(image=f"img:{ev[2]}"),
                                       version=j.version + 1, previous=j.spec)
    elif kind == "kill":
        running = sorted(s for s, v in state.statuses.items() if v.state == "running")
        if running:
            tid = running[ev[1] % len(running)]
            state.statuses[tid] = state.statuses[tid].replace(state="failed", reason="boom")


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nodes=nodes_st, jobs=jobs_st, events=st.lists(event_st, max_size=12))
def test_random_clusters(nodes, jobs, events):
    state = ClusterState.of(
        [make_job(i, d) for i, d in enumerate(jobs)],
        [node(f"n{i}", c, m * GIB, zone=z) for i, (c, m, z) in enumerate(nodes)])
    now = 1000.0
    for ev in [*events, *[("quiet",)] * 25]:
        apply_event(state, ev, now)
        plan = plan_for(state, now)
        check_plan(state, plan)
        applied = apply(state, plan, now)
        check_invariants(applied)
        if not plan.failures:  # a rollback is itself a new desired state
            again = plan_for(applied, now)
            assert not again.has_changes(), (plan.describe(), again.describe())
        state = run_nodes(applied, now)
        check_invariants(state)
        now += 3.0  # longer than the failover grace: down nodes fail over next round

    # quiet for 25 rounds: converged, and every service has its count (or says why not)
    final = plan_for(state, now)
    assert not final.has_changes(), final.describe()
    for j in state.jobs.values():
        if j.spec.kind != "service":
            continue
        live = [a for a in state.assignments.values() if a.job == j.name
                and a.desired == "run" and state.nodes[a.node].up]
        pending = [p for p in final.pending if p.job == j.name]
        assert len(live) + len(pending) == j.spec.count, (j.name, final.describe())
        if j.failed_version != j.version:
            assert all(a.fingerprint == j.spec.fingerprint() for a in live) or pending
