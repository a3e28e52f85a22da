"""Scheduler: feasibility filters, best-fit ranking, spread, determinism, explanations."""

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from helios.conductor.scheduler.place import Cluster, Request, place
from helios.model import Assignment, NodeInfo

GIB = 1024**3
MIB = 1024**2


def node(name, cpus=4.0, mem=8 * GIB, status="up", **labels):
    return NodeInfo(name=name, cpus=cpus, memory=mem, labels=labels, status=status)


def req(key, cpus=0.5, mem=512 * MIB, job="j", ports=(), spread=False, **constraints):
    return Request(key=key, job=job, cpus=cpus, memory=mem, ports=tuple(ports),
                   constraints=tuple(sorted(constraints.items())), spread=spread)


def test_best_fit_prefers_the_fuller_used_node():
    nodes = [node("a"), node("b"), node("c")]
    existing = [Assignment(id="x1", job="o", version=1, node="b", cpus=3.0, memory=6 * GIB),
                Assignment(id="x2", job="o", version=1, node="c", cpus=1.0, memory=1 * GIB)]
    out = place([req("t1")], nodes, existing)
    assert out.placed == {"t1": "b"}


def test_opens_largest_empty_node_when_no_used_node_fits():
    nodes = [node("small", 2, 2 * GIB), node("big", 16, 64 * GIB), node("mid", 8, 16 * GIB)]
    out = place([req("t1")], nodes)
    assert out.placed == {"t1": "big"}


def test_packs_before_opening_new_nodes():
    nodes = [node(f"n{i}", 4, 8 * GIB) for i in range(10)]
    out = place([req(f"t{i}", 1.0, 1 * GIB) for i in range(8)], nodes)
    assert len(set(out.placed.values())) == 2


def test_constraints_down_nodes_and_ports():
    nodes = [node("a", zone="a"), node("b", zone="b"), node("c", zone="b", status="down")]
    out = place([req("t1", zone="b"), req("t2", zone="c")], nodes)
    assert out.placed == {"t1": "b"}
    assert out.failed["t2"] == "no node fits: 2 of 3 nodes up; constraint zone=c: 0 nodes"
    out = place([req(f"p{i}", ports=[8080]) for i in range(3)], nodes)
    assert sorted(out.placed.values()) == ["a", "b"]
    assert "host port 8080: 0 of 2 nodes have it free" in out.failed["p2"]


def test_explanation_counts_each_filter():
    nodes = [node("a", 4, 256 * MIB, zone="b"), node("b", 4, 256 * MIB, zone="a"),
             node("c", 4, 256 * MIB, zone="a")]
    out = place([req("t", mem=512 * MIB)], nodes)
    assert out.failed["t"] == "no node fits: memory: 0 of 3 nodes have 512 MiB free"
    out = place([req("t", cpus=8, mem=512 * MIB, zone="b")], nodes)
    assert out.failed["t"] == ("no node fits: constraint zone=b: 1 node; "
                               "cpu: 0 of 1 node has 8 cpus free")


def test_spread_prefers_nodes_without_the_job():
    nodes = [node(f"n{i}") for i in range(3)]
    out = place([req(f"t{i}", spread=True) for i in range(3)], nodes)
    assert sorted(out.placed.values()) == ["n0", "n1", "n2"]
    packed = place([req(f"t{i}") for i in range(3)], nodes)
    assert len(set(packed.placed.values())) == 1


def test_spread_counts_existing_tasks():
    nodes = [node("a"), node("b")]
    existing = [Assignment(id="x", job="j", version=1, node="a", cpus=0.1, memory=MIB)]
    assert place([req("t", spread=True)], nodes, existing).placed == {"t": "b"}


def test_allocations_on_down_or_unknown_nodes_are_ignored():
    nodes = [node("a", 1, GIB)]
    existing = [Assignment(id="x", job="j", version=1, node="ghost", cpus=1, memory=GIB)]
    assert place([req("t", 1, GIB)], nodes, existing).placed == {"t": "a"}


def test_cpu_has_no_float_drift():
    nodes = [node("a", 1.0, 64 * GIB)]
    out = place([req(f"t{i}", 0.1, MIB) for i in range(11)], nodes)
    assert len(out.placed) == 10 and len(out.failed) == 1


def test_cluster_free_tracks_placements():
    cl = Cluster([node("a", 2, 4 * GIB)])
    assert cl.place(req("t", 0.5, GIB)) == "a"
    assert cl.free("a") == (1.5, 3 * GIB)


def test_deterministic_for_same_input():
    rng = random.Random(3)
    nodes = [node(f"n{i:03d}", rng.choice([2, 4, 8]), rng.choice([4, 8, 16]) * GIB,
                  zone=rng.choice("ab")) for i in range(200)]
    reqs = [req(f"t{i}", rng.choice([0.1, 0.5, 1]), rng.choice([128, 512, 1024]) * MIB,
                job=f"j{i % 7}", spread=i % 5 == 0, **({"zone": "a"} if i % 3 == 0 else {}))
            for i in range(1000)]
    a, b = place(reqs, nodes), place(list(reqs), list(reversed(nodes)))
    assert a.placed == b.placed and a.failed == b.failed


cluster_nodes = st.lists(
    st.builds(lambda i, c, m, z, up: node(f"n{i}", c, m * GIB, "up" if up else "down",
                                          zone=z),
              st.integers(0, 10**6), st.sampled_from([1, 2, 4]), st.sampled_from([1, 2, 4]),
              st.sampled_from("ab"), st.booleans()),
    min_size=1, max_size=12, unique_by=lambda n: n.name)
requests = st.lists(
    st.builds(lambda i, c, m, p, z, s: req(f"r{i}", c, m * MIB, job=f"j{i % 3}",
                                           ports=[p] if p else [], spread=s,
                                           **({"zone": z} if z else {})),
              st.integers(0, 10**6), st.sampled_from([0.1, 0.25, 0.5, 1.0, 1.5]),
              st.sampled_from([64, 256, 512, 1024, 1536]),
              st.sampled_from([0, 0, 0, 80, 443]), st.sampled_from([None, "a", "b"]),
              st.booleans()),
    max_size=60, unique_by=lambda r: r.key)


@settings(max_examples=150, deadline=None)
@given(nodes=cluster_nodes, reqs=requests)
def test_never_overcommits_or_breaks_rules(nodes, reqs):
    out = place(reqs, nodes)
    by_name = {n.name: n for n in nodes}
    by_key = {r.key: r for r in reqs}
    used_cpu: dict[str, float] = {}
    used_mem: dict[str, int] = {}
    ports: dict[str, list[int]] = {}
    for key, name in out.placed.items():
        r, n = by_key[key], by_name[name]
        assert n.up
        assert all(n.labels.get(k) == v for k, v in r.constraints)
        used_cpu[name] = used_cpu.get(name, 0) + r.cpus
        used_mem[name] = used_mem.get(name, 0) + r.memory
        ports.setdefault(name, []).extend(r.ports)
    for name in used_cpu:
        assert used_cpu[name] <= by_name[name].cpus + 1e-9
        assert used_mem[name] <= by_name[name].memory
        assert len(ports[name]) == len(set(ports[name]))
    assert set(out.placed) | set(out.failed) == set(by_key)
    for key, why in out.failed.items():
        assert why.startswith("no node fits")
        # a failure is real: no node could have taken it in the final state
        r = by_key[key]
        for n in nodes:
            if n.up and all(n.labels.get(k) == v for k, v in r.constraints):
                fits = (used_cpu.get(n.name, 0) + r.cpus <= n.cpus + 1e-9
                        and used_mem.get(n.name, 0) + r.memory <= n.memory
                        and not set(r.ports) & set(ports.get(n.name, [])))
                assert not fits, (key, n.name)


def test_spread_evens_out_beyond_one_per_node():
    nodes = [node(f"n{i}", 64, 64 * GIB) for i in range(5)]
    busy = [Assignment(id="o", job="other", version=1, node="n2", cpus=1, memory=GIB)]
    out = place([req(f"t{i}", 0.1, MIB, spread=True) for i in range(23)], nodes, busy)
    per_node: dict[str, int] = {}
    for n in out.placed.values():
        per_node[n] = per_node.get(n, 0) + 1
    assert sorted(per_node.values()) == [4, 4, 5, 5, 5]


def test_many_copies_with_one_fixed_port_use_one_node_each():
    nodes = [node(f"n{i}") for i in range(50)]
    out = place([req(f"t{i}", 0.1, MIB, ports=[8080]) for i in range(60)], nodes)
    assert len(out.placed) == 50 and len(set(out.placed.values())) == 50
    assert len(out.failed) == 10
