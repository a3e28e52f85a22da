"""The rebalance planner (`conductor/rebalance.py`): moves that free whole nodes, checked
on hand-made fragmented clusters and on random ones (hypothesis): every move lands on a
schedulable node that is not being freed, no node ends over capacity or breaks a
constraint or a host port, every freed node ends empty, and only movable tasks move."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helios.conductor.drain import set_drain, with_drains
from helios.conductor.plan import ClusterState
from helios.conductor.rebalance import plan_rebalance
from helios.conductor.scheduler.feasible import millis
from helios.model import Assignment, TaskStatus

from .sim import job, node

MIB = 1 << 20


def put(st: ClusterState, job_name: str, node_name: str, index: int, *,
        state: str = "running", healthy: bool | None = True) -> Assignment:
    rec = st.jobs[job_name]
    spec = rec.spec
    a = Assignment(id=f"{job_name}-{index}-{node_name}", job=job_name, version=rec.version,
                   node=node_name, index=index, cpus=spec.resources.cpus,
                   memory=spec.resources.memory,
                   ports={k: p.host for k, p in spec.ports.items() if p.host},
                   fingerprint=spec.fingerprint(), spec=spec)
    st.assignments[a.id] = a
    st.statuses[a.id] = TaskStatus(id=a.id, node=node_name, job=job_name, state=state,
                                   healthy=healthy if state == "running" else None)
    return a


def fragmented() -> ClusterState:
    """Three 2-cpu nodes, a quarter full each: two of them can be freed."""
    st = ClusterState.of([job("web", count=3, resources={"cpus": 0.5, "memory": "64M"})],
                         [node("a", cpus=2.0), node("b", cpus=2.0), node("c", cpus=2.0)])
    for i, n in enumerate("abc"):
        put(st, "web", n, i)
    return st


def test_a_fragmented_cluster_frees_two_of_three_nodes() -> None:
    plan = plan_rebalance(fragmented())
    assert plan.frees == ["a", "c"]
    assert [(m.task, m.src, m.dst) for m in plan.moves] == [("web-0-a", "a", "b"),
                                                            ("web-2-c", "c", "b")]
    assert plan.nodes_used_before == 3 and plan.nodes_used_after == 1
    assert plan.gain == "frees 2 of 3 nodes in use; CPU use of the nodes in use 25% -> 75%"
    assert plan_rebalance(fragmented()).to_dict() == plan.to_dict()  # deterministic


def test_nothing_to_gain_on_a_packed_cluster() -> None:
    st = ClusterState.of([job("web", count=4, resources={"cpus": 1.0, "memory": "64M"})],
                         [node("a", cpus=2.0), node("b", cpus=2.0)])
    for i in range(4):
        put(st, "web", "ab"[i // 2], i)
    plan = plan_rebalance(st)
    assert plan.frees == [] and plan.moves == [] and plan.gain == "no node can be freed"


def test_unmovable_tasks_pin_their_node() -> None:
    st = fragmented()
    st.jobs["work"] = job("work", kind="batch", resources={"cpus": 0.1, "memory": "16M"})
    put(st, "work", "a", 0)  # a batch task still running: a stays
    st.statuses["web-2-c"] = st.statuses["web-2-c"].replace(healthy=False)  # c stays
    plan = plan_rebalance(st)
    assert plan.frees == ["b"]
    assert {m.src for m in plan.moves} == {"b"}


def test_drained_and_ineligible_nodes_take_nothing() -> None:
    st = fragmented()
    set_drain(st, "b", 0.0, eligible=False)
    plan = plan_rebalance(st, with_drains(st.nodes, st.drains))
    assert "b" not in plan.frees and all(m.dst != "b" for m in plan.moves)
    assert plan.frees == ["a"] and [m.dst for m in plan.moves] == ["c"]


def test_constraints_and_host_ports_are_kept() -> None:
    st = ClusterState.of(
        [job("pinned", resources={"cpus": 0.5, "memory": "64M"}, constraints={"zone": "x"}),
         job("port", resources={"cpus": 0.5, "memory": "64M"},
             ports={"http": {"container": 80, "host": 8080}})],
        [node("a", zone="x"), node("b", zone="y"), node("c", zone="y")])
    put(st, "pinned", "a", 0)
    put(st, "port", "b", 0)
    put(st, "port", "c", 1)
    plan = plan_rebalance(st)
    # pinned has no other zone-x node; port 8080 is taken on c, so b's task goes to a
    assert plan.frees == ["b"]
    assert [(m.task, m.dst) for m in plan.moves] == [("port-0-b", "a")]


@st.composite
def clusters(draw: st.DrawFn) -> ClusterState:
    n_nodes = draw(st.integers(2, 7))
    nodes = [node(f"n{i}", cpus=draw(st.sampled_from([1.0, 2.0, 4.0])), mem=4096 * MIB,
                  zone=draw(st.sampled_from(["x", "y"]))) for i in range(n_nodes)]
    jobs = []
    for j in range(draw(st.integers(1, 4))):
        fields = {"count": 8, "resources": {"cpus": draw(st.sampled_from([0.25, 0.5, 1.0])),
                                            "memory": "256M"}}
        if draw(st.booleans()):
            fields["constraints"] = {"zone": draw(st.sampled_from(["x", "y"]))}
        if draw(st.booleans()):
            fields["health"] = {"exec": ["true"]}
        if draw(st.booleans()):
            fields["ports"] = {"http": {"container": 80, "host": 9000 + j}}
        jobs.append(job(f"j{j}", **fields))
    state = ClusterState.of(jobs, nodes)
    used = {n.name: 0.0 for n in nodes}
    for rec in jobs:
        for i in range(draw(st.integers(0, 5))):
            n = nodes[draw(st.integers(0, n_nodes - 1))]
            spec = rec.spec
            fixed = {p.host for p in spec.ports.values() if p.host}
            taken = {p for a in state.assignments.values() if a.node == n.name
                     for p in a.ports.values()}
            if used[n.name] + spec.resources.cpus > n.cpus or fixed & taken \
                    or any(n.labels.get(k) != v for k, v in spec.constraints.items()):
                continue
            used[n.name] += spec.resources.cpus
            put(state, rec.name, n.name, i,
                healthy=draw(st.sampled_from([True, True, True, False])))
    return state


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters())
def test_plans_are_always_safe(state: ClusterState) -> None:
    plan = plan_rebalance(state)
    freed = set(plan.frees)
    where = {a.id: a.node for a in state.assignments.values()}
    for m in plan.moves:
        assert m.src in freed and m.dst not in freed and state.nodes[m.dst].schedulable
        a = state.assignments[m.task]
        st_ = state.statuses[m.task]
        spec = state.jobs[a.job].spec
        assert st_.state == "running"  # only movable tasks: running, healthy if checked
        assert spec.health is None or st_.healthy is True
        where[m.task] = m.dst
        assert all(state.nodes[m.dst].labels.get(k) == v for k, v in spec.constraints.items())
    assert not any(node in freed for node in where.values())
    for name, n in state.nodes.items():
        here = [state.assignments[t] for t, at in where.items() if at == name]
        assert sum(millis(a.cpus) for a in here) <= millis(n.cpus)
        assert sum(a.memory for a in here) <= n.memory
        ports = [p for a in here for p in a.ports.values()]
        assert len(ports) == len(set(ports))
    assert plan.nodes_used_after == plan.nodes_used_before - len(freed)
    assert plan_rebalance(state).to_dict() == plan.to_dict()
