"""Scheduler benchmark: placements per second and packing quality on synthetic clusters.

Run:  python -m bench.scheduler_bench            (all sizes)
      python -m bench.scheduler_bench --quick    (1,000 nodes only)

Each case builds a seeded random cluster of mixed node sizes (some labelled by zone) and a
seeded random batch of mixed task sizes (some constrained to a zone, a few with a fixed host
port), places the whole batch with ``helios.conductor.scheduler.place`` and prints:

- placements/s over the whole batch, Cluster construction included;
- quality = nodes used / lower bound, where the lower bound is, for each resource, the
  fewest nodes whose combined capacity covers the placed demand (largest nodes first),
  taking the larger of the two; 1.00 is perfect packing;
- a naive baseline on the same input: best fit scoring every node (O(nodes) per
  placement), timed on a prefix of the batch, so the ratio is meaningful on a noisy machine.

Targets: > 5,000 placements/s at 10,000 nodes; quality < 1.05.
"""

from __future__ import annotations

import argparse
import random
import time

from helios.conductor.scheduler.place import Request, place
from helios.model import NodeInfo

GIB = 1024**3
MIB = 1024**2
NODE_SIZES = [(2, 4 * GIB), (4, 8 * GIB), (4, 16 * GIB), (8, 32 * GIB), (16, 64 * GIB),
              (32, 128 * GIB)]
TASK_CPUS = [0.1, 0.25, 0.5, 1.0, 2.0]
TASK_MEM = [64 * MIB, 128 * MIB, 256 * MIB, 512 * MIB, 1 * GIB, 2 * GIB, 4 * GIB]
ZONES = ["a", "b", "c"]


def make_nodes(n: int, rng: random.Random) -> list[NodeInfo]:
    nodes = []
    for i in range(n):
        cpus, mem = rng.choice(NODE_SIZES)
        labels = {"zone": rng.choice(ZONES)}
        if rng.random() < 0.1:
            labels["disk"] = "ssd"
        nodes.append(NodeInfo(name=f"node-{i:05d}", address=f"10.0.{i // 250}.{i % 250}",
                              cpus=float(cpus), memory=mem, labels=labels))
    return nodes


def make_tasks(n: int, rng: random.Random) -> list[Request]:
    tasks = []
    for i in range(n):
        constraints: tuple[tuple[str, str], ...] = ()
        r = rng.random()
        if r < 0.15:
            constraints = (("zone", rng.choice(ZONES)),)
        elif r < 0.18:
            constraints = (("disk", "ssd"),)
        ports = (8000 + rng.randrange(50),) if rng.random() < 0.02 else ()
        job = f"job-{rng.randrange(max(1, n // 10))}"
        tasks.append(Request(key=f"t{i}", job=job, cpus=rng.choice(TASK_CPUS),
                             memory=rng.choice(TASK_MEM), ports=ports,
                             constraints=constraints, spread=rng.random() < 0.02))
    return tasks


def lower_bound(nodes: list[NodeInfo], cpu_demand: float, mem_demand: int) -> int:
    """Fewest nodes whose combined capacity covers the demand, per resource; the max."""
    def fewest(caps: list[float], demand: float) -> int:
        total, k = 0.0, 0
        for c in sorted(caps, reverse=True):
            if total >= demand:
                break
            total += c
            k += 1
        return k
    return max(fewest([n.cpus for n in nodes], cpu_demand),
               fewest([float(n.memory) for n in nodes], float(mem_demand)))


def naive_best_fit(nodes: list[NodeInfo], tasks: list[Request]) -> float:
    """Placements/s of the obvious loop: score every node, keep the fullest that fits.

    The same policy as the scheduler (best fit) written the straightforward O(nodes)
    way; a first-fit loop would look fast only because it stops at the first empty node.
    """
    free = [[n.cpus, n.memory, set(), n.labels, n.cpus, n.memory] for n in nodes]
    t0 = time.perf_counter()
    for t in tasks:
        best, best_score = None, 0.0
        for f in free:
            if (f[0] >= t.cpus and f[1] >= t.memory and f[2].isdisjoint(t.ports)
                    and all(f[3].get(k) == v for k, v in t.constraints)):
                score = (f[0] - t.cpus) / f[4] + (f[1] - t.memory) / f[5]
                if best is None or score < best_score:
                    best, best_score = f, score
        if best is not None:
            best[0] -= t.cpus
            best[1] -= t.memory
            best[2].update(t.ports)
    return len(tasks) / (time.perf_counter() - t0)


def run_case(n_nodes: int, n_tasks: int, seed: int = 7) -> dict[str, float]:
    rng = random.Random(seed)
    nodes = make_nodes(n_nodes, rng)
    tasks = make_tasks(n_tasks, rng)
    t0 = time.perf_counter()
    result = place(tasks, nodes)
    elapsed = time.perf_counter() - t0
    by_key = {t.key: t for t in tasks}
    placed = [by_key[k] for k in result.placed]
    used = {node for node in result.placed.values()}
    bound = lower_bound(nodes, sum(t.cpus for t in placed), sum(t.memory for t in placed))
    naive_tasks = tasks[: max(100, min(2000, 3_000_000 // n_nodes))]
    naive = naive_best_fit(nodes, naive_tasks)
    return {"nodes": n_nodes, "tasks": n_tasks, "placed": len(placed),
            "failed": len(result.failed), "seconds": elapsed,
            "rate": n_tasks / elapsed, "used": len(used), "bound": bound,
            "quality": len(used) / max(bound, 1), "naive_rate": naive,
            "naive_n": len(naive_tasks)}


def reconcile_case(n_nodes: int, n_jobs: int, count: int, seed: int = 7) -> None:
    """The reconciler end to end: a cold start placing every task, then a no-op pass over
    the converged state (what the conductor pays on every trigger)."""
    from helios.conductor.plan import ClusterState, apply
    from helios.conductor.reconcile import reconcile
    from helios.model import JobRecord, TaskStatus
    from helios.spec import validate

    rng = random.Random(seed)
    nodes = make_nodes(n_nodes, rng)
    jobs = [JobRecord(validate({
        "name": f"job{i}", "image": "x", "count": count,
        "resources": {"cpus": rng.choice(TASK_CPUS), "memory": rng.choice(TASK_MEM)},
        **({"constraints": {"zone": rng.choice(ZONES)}} if rng.random() < 0.15 else {}),
    })) for i in range(n_jobs)]
    state = ClusterState.of(jobs, nodes)
    t0 = time.perf_counter()
    plan = reconcile(state.jobs, state.nodes, state.assignments, state.statuses, 1.0)
    cold = time.perf_counter() - t0
    state = apply(state, plan, 1.0)
    for a in state.assignments.values():
        state.statuses[a.id] = TaskStatus(id=a.id, node=a.node, job=a.job, state="running")
    t0 = time.perf_counter()
    again = reconcile(state.jobs, state.nodes, state.assignments, state.statuses, 2.0)
    warm = time.perf_counter() - t0
    print(f"reconcile {n_nodes} nodes, {n_jobs} jobs x {count}: cold start placed "
          f"{len(plan.place)} ({len(plan.pending)} pending) in {cold:.2f}s = "
          f"{len(plan.place) / cold:,.0f} tasks/s; converged pass {warm:.2f}s, "
          f"changes: {again.has_changes()}")


def stress_cases(seed: int = 7) -> None:
    """Inputs that defeat a naive index: the cluster overloaded 3x (most placements fail),
    one spread job with 3 tasks per node, 12,000 copies of one fixed host port, 500
    distinct constraint signatures. Each must stay far from O(nodes) per placement."""
    rng = random.Random(seed)
    nodes = [NodeInfo(name=f"n{i:05d}", cpus=float(rng.choice([2, 4, 8])),
                      memory=rng.choice([4, 8, 16]) * GIB,
                      labels={"rack": f"r{i % 500}"}) for i in range(10_000)]
    cases = {
        "overloaded 3x": [Request(key=f"t{i}", job=f"j{i % 100}",
                                  cpus=rng.choice([0.5, 1.0, 2.0]),
                                  memory=rng.choice([512, 1024, 2048]) * MIB)
                          for i in range(150_000)],
        "spread, 30k tasks of one job": [Request(key=f"s{i}", job="s", cpus=0.1,
                                                 memory=64 * MIB, spread=True)
                                         for i in range(30_000)],
        "one fixed host port x12k": [Request(key=f"p{i}", job="p", cpus=0.1, memory=64 * MIB,
                                             ports=(8080,)) for i in range(12_000)],
        "500 rack constraints": [Request(key=f"k{i}", job="k", cpus=0.5, memory=512 * MIB,
                                         constraints=(("rack", f"r{i % 500}"),))
                                 for i in range(20_000)],
    }
    for name, reqs in cases.items():
        t0 = time.perf_counter()
        out = place(reqs, nodes)
        dt = time.perf_counter() - t0
        print(f"stress {name:<30} 10000 nodes {len(reqs):>7} tasks: {len(out.placed):>6} "
              f"placed {len(out.failed):>6} failed  {len(reqs) / dt:>9,.0f} /s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1,000-node cases only")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    cases = [(1_000, 10_000)] if args.quick else [(1_000, 10_000), (10_000, 10_000),
                                                  (10_000, 100_000)]
    sizes = ", ".join(f"{c}cpu/{m // GIB}GiB" for c, m in NODE_SIZES)
    print(f"node sizes (uniform mix): {sizes}")
    print(f"task sizes: cpus {TASK_CPUS}, memory {[m // MIB for m in TASK_MEM]} MiB; "
          "15% zone-constrained, 3% disk=ssd, 2% fixed host port, 2% spread")
    print(f"{'nodes':>7} {'tasks':>7} {'placed':>7} {'failed':>6} {'sec':>6} "
          f"{'place/s':>9} {'used':>6} {'bound':>6} {'quality':>7} {'naive/s':>9} {'speedup':>7}")
    for n_nodes, n_tasks in cases:
        r = run_case(n_nodes, n_tasks, args.seed)
        print(f"{r['nodes']:>7} {r['tasks']:>7} {r['placed']:>7} {r['failed']:>6} "
              f"{r['seconds']:>6.2f} {r['rate']:>9,.0f} {r['used']:>6} {r['bound']:>6} "
              f"{r['quality']:>7.3f} {r['naive_rate']:>9,.0f} "
              f"{r['rate'] / r['naive_rate']:>6.1f}x")
    print("naive = best fit scoring every node per task (O(nodes)), timed on a prefix "
          "of the same batch")
    if not args.quick:
        stress_cases(args.seed)
        reconcile_case(10_000, 1_000, 100, args.seed)


if __name__ == "__main__":
    main()
