"""Benchmark: what the trio -> asyncio bridge costs next to Docker itself.

Two figures, in one run, against the real Docker daemon:

1. create + start of N small containers (busybox `sleep`), sequentially:
   raw aiodocker on asyncio (`asyncio.run`) vs `DockerRuntime` from trio (bridge + our
   translation layer). Both remove their containers afterwards (not timed).
2. The bridge's own per-call overhead: `await bridge.run(noop)` from trio vs
   `await noop()` directly on asyncio, and a cheap Docker call (`GET /version`) both ways.

DESIGN.md's budget: a bridge call costs ~135-190 us; Docker calls cost 8-300 ms. The ratio
in (1) should therefore stay close to 1.0.

    python bench/runtime_bench.py [--containers 20] [--rounds 2] [--calls 2000] [--image I]

Without --image it builds the same busybox test image as tests/fixtures/docker.py (needs
/bin/busybox). Every container carries the label io.helios.bench=<run id> and is removed
by this script, by id.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiodocker
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from helios.node.runtime import ContainerSpec, DockerRuntime, PortAllocator
from helios.node.runtime.aio_bridge import AsyncioBridge

BENCH_LABEL = "io.helios.bench"


def ensure_image() -> str:
    """The busybox test image (same recipe and tag as the test fixture)."""
    import hashlib

    from tests.fixtures.docker import _IMAGE_LAYOUT_VERSION, BUSYBOX, IMAGE_REPO, _rootfs_tar

    digest = hashlib.sha256(BUSYBOX.read_bytes() + _IMAGE_LAYOUT_VERSION.encode())
    image = f"{IMAGE_REPO}:{digest.hexdigest()[:12]}"
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True,
                      timeout=60).returncode != 0:
        subprocess.run(["docker", "import", "-", image], input=_rootfs_tar(), check=True,
                       capture_output=True, timeout=120)
    return image


# --------------------------------------------------------------------------- raw asyncio


async def raw_create_start(image: str, n: int, run: str) -> tuple[float, list[str]]:
    """aiodocker directly on asyncio: the floor the bridge is compared with."""
    docker = aiodocker.Docker()
    ids: list[str] = []
    try:
        t0 = time.perf_counter()
        for i in range(n):
            c = await docker.containers.create(
                {"Image": image, "Cmd": ["sleep", "60"],
                 "Labels": {BENCH_LABEL: run},
                 "HostConfig": {"NanoCpus": 100_000_000, "Memory": 32 * 1024 * 1024,
                                "RestartPolicy": {"Name": "no"}}},
                name=f"helios-bench-raw-{run}-{i}")
            await c.start()
            ids.append(c.id)
        elapsed = time.perf_counter() - t0
    finally:
        for cid in ids:
            await docker.containers.container(cid).delete(force=True)
        await docker.close()
    return elapsed, ids


async def raw_call_costs(calls: int) -> tuple[float, float]:
    """Per-call cost of a bare coroutine and of GET /version, on asyncio directly."""
    async def noop() -> None:
        return None

    t0 = time.perf_counter()
    for _ in range(calls):
        await noop()
    noop_cost = (time.perf_counter() - t0) / calls
    docker = aiodocker.Docker()
    try:
        await docker.version()
        samples = []
        for _ in range(max(50, calls // 20)):
            t = time.perf_counter()
            await docker.version()
            samples.append(time.perf_counter() - t)
    finally:
        await docker.close()
    return noop_cost, statistics.median(samples)


# --------------------------------------------------------------------------- trio


async def bridged_create_start(image: str, n: int, run: str) -> float:
    """The same through DockerRuntime (bridge, spec translation, labels, port allocator)."""
    async with DockerRuntime(f"bench-{run}", ports=PortAllocator(21000, 21999)) as rt:
        ids: list[str] = []
        try:
            t0 = time.perf_counter()
            for i in range(n):
                cid = await rt.create(ContainerSpec(
                    name=f"helios-bench-trio-{run}-{i}", image=image,
                    command=["sleep", "60"], cpus=0.1, memory=32 * 1024 * 1024,
                    labels={BENCH_LABEL: run}, job="bench", task=f"t{i}"))
                await rt.start(cid)
                ids.append(cid)
            elapsed = time.perf_counter() - t0
        finally:
            with trio.CancelScope(shield=True):
                for cid in ids:
                    await rt.remove(cid)
    return elapsed


async def bridge_call_costs(calls: int) -> tuple[float, float]:
    """Per-call cost of bridge.run(noop) and of GET /version through the bridge."""
    async def noop() -> None:
        return None

    async with AsyncioBridge() as bridge:
        for _ in range(100):  # warm up
            await bridge.run(noop)
        t0 = time.perf_counter()
        for _ in range(calls):
            await bridge.run(noop)
        noop_cost = (time.perf_counter() - t0) / calls

    async with DockerRuntime(f"bench-{uuid.uuid4().hex[:6]}") as rt:
        await rt.ping()
        samples = []
        for _ in range(max(50, calls // 20)):
            t = time.perf_counter()
            await rt.ping()
            samples.append(time.perf_counter() - t)
    return noop_cost, statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--containers", type=int, default=20)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--image", default=None)
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternate raw/bridged this many times; report the medians")
    args = parser.parse_args()
    image = args.image or ensure_image()
    run = uuid.uuid4().hex[:8]
    n = args.containers

    try:
        raws, trios = [], []
        for r in range(args.rounds):  # alternate, so daemon drift hits both sides alike
            raws.append(asyncio.run(raw_create_start(image, n, f"{run}a{r}"))[0])
            trios.append(trio.run(bridged_create_start, image, n, f"{run}b{r}"))
        raw_s, trio_s = statistics.median(raws), statistics.median(trios)
        raw_noop, raw_version = asyncio.run(raw_call_costs(args.calls))
        bridge_noop, bridge_version = trio.run(bridge_call_costs, args.calls)
    finally:
        # Normally empty: each phase removes its own containers. Only after a failure half
        # way does this find any, and only this run's (filtered on its own label values).
        for value in [f"{run}{side}{r}" for side in "ab" for r in range(args.rounds)]:
            mine = subprocess.run(
                ["docker", "ps", "-aq", "--filter", f"label={BENCH_LABEL}={value}"],
                capture_output=True, text=True, timeout=60).stdout.split()
            if mine:
                subprocess.run(["docker", "rm", "-f", *mine], capture_output=True, timeout=120)

    print(f"create+start of {n} containers (sequential), image {image}, "
          f"median of {args.rounds} alternating rounds")
    print(f"  rounds raw: {', '.join(f'{x:.2f}' for x in raws)} s; "
          f"bridged: {', '.join(f'{x:.2f}' for x in trios)} s")
    print(f"  raw aiodocker (asyncio)        : {raw_s:7.3f} s  ({raw_s / n * 1e3:6.1f} ms each)")
    print(f"  DockerRuntime via trio bridge  : {trio_s:7.3f} s  ({trio_s / n * 1e3:6.1f} ms each)")
    print(f"  ratio bridged / raw            : {trio_s / raw_s:7.3f}")
    print(f"per-call cost ({args.calls} calls)")
    print(f"  asyncio: await noop()          : {raw_noop * 1e6:8.2f} us")
    print(f"  trio: await bridge.run(noop)   : {bridge_noop * 1e6:8.2f} us"
          f"   (bridge overhead {(bridge_noop - raw_noop) * 1e6:.1f} us/call)")
    print(f"  GET /version, asyncio direct   : {raw_version * 1e6:8.1f} us (median)")
    print(f"  GET /version, via bridge       : {bridge_version * 1e6:8.1f} us (median)")


if __name__ == "__main__":
    main()
