"""Node daemon benchmark: assignment to running, against raw aiodocker, in one run.

    python bench/node_bench.py [--tasks 20] [--many 50] [--rounds 3]

The node daemon runs as its own process (`python -m helios.node`, docker runtime, no
store), and this script plays the conductor: it asks the node `assign` and records the
`task_events` the node sends back, exactly as a conductor would. Figures:

- assignment to running, `--tasks` tasks of a small image already present (the busybox
  test image, `sleep`), against raw aiodocker `containers.create` + `start` of the same
  containers (same image, command, limits, labels), all concurrently, in alternating
  rounds of the same run; the ratio is node / raw. Target: under 1.25x.
- `--many` tasks started concurrently on one node: time to all running.
- idle RSS of the node daemon with `--many` tasks running (VmRSS after 5 s idle).
  Target: under 80 MB.

Containers carry a unique label and are removed at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import trio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiodocker  # noqa: E402

import actors  # noqa: E402
from helios import protocol  # noqa: E402
from helios.model import Assignment  # noqa: E402
from helios.spec import validate  # noqa: E402

BENCH_LABEL = "io.helios.bench"


def ensure_image() -> str:
    """The busybox test image of tests/fixtures/docker.py (built once, reused)."""
    from tests.fixtures import docker as fx

    digest = hashlib.sha256(fx.BUSYBOX.read_bytes() + fx._IMAGE_LAYOUT_VERSION.encode())
    image = f"{fx.IMAGE_REPO}:{digest.hexdigest()[:12]}"
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode:
        subprocess.run(["docker", "import", "-", image], input=fx._rootfs_tar(), check=True,
                       capture_output=True, timeout=120)
    return image


def cleanup(run_id: str) -> None:
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={BENCH_LABEL}={run_id}"],
                         capture_output=True, text=True).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


# --------------------------------------------------------------------------- raw


async def raw_round(image: str, n: int, run_id: str, round_no: int) -> float:
    """Create and start n containers concurrently with aiodocker; seconds taken."""
    docker = aiodocker.Docker()
    try:
        def config(i: int) -> dict[str, Any]:
            return {"Image": image, "Cmd": ["sleep", "300"],
                    "Labels": {BENCH_LABEL: run_id, "io.helios.node": f"raw-{run_id}",
                               "io.helios.task": f"raw-{round_no}-{i}"},
                    "HostConfig": {"NanoCpus": 100_000_000, "Memory": 16 << 20,
                                   "MemorySwap": 16 << 20, "RestartPolicy": {"Name": "no"},
                                   "LogConfig": {"Type": "json-file", "Config": {}}}}

        async def one(i: int) -> str:
            c = await docker.containers.create(config(i), name=f"raw-{run_id}-{round_no}-{i}")
            await c.start()
            return c.id

        t0 = time.perf_counter()
        ids = await asyncio.gather(*(one(i) for i in range(n)))
        took = time.perf_counter() - t0
        await asyncio.gather(*(docker.containers.container(c).delete(force=True) for c in ids))
        return took
    finally:
        await docker.close()


# --------------------------------------------------------------------------- node


class Conductor(actors.Actor):
    def __init__(self) -> None:
        self.running: dict[str, float] = {}
        self.gone: set[str] = set()
        self.changed = trio.Event()

    @actors.handler
    async def task_events(self, node: str, events: list[dict[str, Any]]) -> None:
        now = time.perf_counter()
        for e in events:
            if e["state"] == "running":
                self.running.setdefault(e["id"], now)
            elif e["state"] in ("stopped", "failed"):
                self.gone.add(e["id"])
        self.changed.set()
        self.changed = trio.Event()


def assignments(node: str, image: str, n: int, tag: str) -> list[dict[str, Any]]:
    spec = validate({"name": f"bench-{tag}", "image": image, "command": ["sleep", "300"],
                     "resources": {"cpus": 0.1, "memory": "16M"}, "grace": 0})
    return [Assignment(id=f"bench-{tag}-{i}", job=spec.name, version=1, node=node, index=i,
                       fingerprint=spec.fingerprint(), spec=spec).to_dict()
            for i in range(n)]


async def until(cond: Any, conductor: Conductor, timeout: float = 180.0) -> None:
    with trio.fail_after(timeout):
        while not cond():
            await conductor.changed.wait()


class NodeProcess:
    def __init__(self, run_id: str, state_dir: str, conductor: str) -> None:
        self.name = f"bench-{run_id}"
        self.log = Path(state_dir) / "node.log"
        args = [sys.executable, "-m", "helios.node", "--name", self.name, "--state-dir",
                state_dir, "--runtime", "docker",
                "--conductor", conductor, f"--container-label={BENCH_LABEL}={run_id}"]
        self.proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE,
                                     stderr=open(self.log, "wb"), text=True)  # noqa: SIM115
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if "ready at" not in line:
            raise RuntimeError(f"node did not start: {line} {self.log.read_text()[-2000:]}")
        self.url = line.rsplit(" ", 1)[-1].strip()

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


async def bench(args: argparse.Namespace, image: str, run_id: str, state_dir: str,
                results: dict[str, list[float]]) -> None:
    async with actors.open_system("bench-conductor", listen="127.0.0.1:0") as system:
        ref = await system.spawn(Conductor, name=protocol.CONDUCTOR_ACTOR)
        # the bench drives the conductor object itself; the registry holds it as an Actor
        conductor: Conductor = system._registry[ref.name].actor  # type: ignore[assignment]
        node = await trio.to_thread.run_sync(NodeProcess, run_id, state_dir,
                                             system.url.split("://", 1)[1])
        try:
            print(f"node daemon pid {node.proc.pid} at {node.url}; image {image}")
            print(f"RSS of the node daemon with no tasks: {node.rss_mb():.1f} MB")
            target = system.ref(node.url)
            gen = 0

            async def assign(tasks: list[dict[str, Any]]) -> None:
                nonlocal gen
                gen += 1
                await target.ask("assign", 1, gen, tasks, timeout=30)

            async def node_round(tag: str, n: int) -> float:
                tasks = assignments(node.name, image, n, tag)
                ids = [t["id"] for t in tasks]
                t0 = time.perf_counter()
                await assign(tasks)
                await until(lambda: all(i in conductor.running for i in ids), conductor)
                return max(conductor.running[i] for i in ids) - t0

            async def clear(tag: str, n: int) -> None:
                ids = [t["id"] for t in assignments(node.name, image, n, tag)]
                await assign([])
                await until(lambda: all(i in conductor.gone for i in ids), conductor)

            for r in range(args.rounds):
                results["raw"].append(await trio.to_thread.run_sync(
                    lambda r=r: asyncio.run(raw_round(image, args.tasks, run_id, r))))
                results["node"].append(await node_round(f"r{r}", args.tasks))
                await clear(f"r{r}", args.tasks)
            results["many"].append(await node_round("many", args.many))
            await trio.sleep(5)
            results["rss"].append(node.rss_mb())
            await clear("many", args.many)
        finally:
            await trio.to_thread.run_sync(node.stop)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=20)
    ap.add_argument("--many", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    image = ensure_image()
    run_id = uuid.uuid4().hex[:8]
    results: dict[str, list[float]] = {"raw": [], "node": [], "many": [], "rss": []}
    with tempfile.TemporaryDirectory(prefix="helios-node-bench-") as state_dir:
        try:
            trio.run(bench, args, image, run_id, state_dir, results)
        finally:
            cleanup(run_id)
    raw, ours = statistics.median(results["raw"]), statistics.median(results["node"])
    print(f"{args.tasks} tasks, assignment -> running (median of {args.rounds}): "
          f"node {ours:.3f} s   raw aiodocker create+start {raw:.3f} s   "
          f"ratio {ours / raw:.2f}x (target < 1.25x)")
    print(f"  rounds: node {[round(x, 3) for x in results['node']]}  "
          f"raw {[round(x, 3) for x in results['raw']]}")
    print(f"{args.many} tasks started concurrently on one node: {results['many'][0]:.3f} s "
          f"to all running")
    print(f"idle RSS of the node daemon with {args.many} tasks: {results['rss'][0]:.1f} MB "
          f"(target < 80 MB)")


if __name__ == "__main__":
    main()
