"""Deploy latency: `helios job run --wait` of a 10-task service, against the raw start of
the same containers, in alternating rounds of one run.

    python bench/deploy_bench.py [--tasks 10] [--rounds 3]

The cluster is `helios solo --runtime docker` (a conductor and a node in one process, on
the embedded store), started here as a subprocess. Figures per round:

- `cli`: wall time of the `helios job run FILE --wait` subprocess, as a user sees it
  (includes the CLI's own start-up, ~0.5-1 s of Python imports on this machine);
- `api`: `job_run` to every task `running`, measured in-process by an actor client that
  polls `job_status` every 20 ms (what Helios itself adds: validation, the fenced write,
  planning, the push, the node's work, the reports);
- `raw`: aiodocker `containers.create` + `start` of the same number of containers (same
  image, command, limits) all at once, the floor any orchestrator pays for Docker.

Ratios api/raw and cli/raw are printed. Containers carry unique labels and are removed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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

from bench.failover_bench import containers, ensure_image, free_port  # noqa: E402
from helios.client import Client  # noqa: E402

BENCH_LABEL = "io.helios.bench"
HELIOS = [sys.executable, "-m", "helios.cli"]


def job(name: str, image: str, n: int) -> dict[str, Any]:
    return {"name": name, "kind": "service", "image": image, "command": ["sleep", "300"],
            "count": n, "resources": {"cpus": 0.05, "memory": "16M"}, "grace": 0}


def raw_round(image: str, n: int, run_id: str, round_no: int) -> float:
    """Create and start n containers concurrently with aiodocker; seconds taken."""
    import aiodocker

    async def go() -> float:
        docker = aiodocker.Docker()
        try:
            async def one(i: int) -> str:
                c = await docker.containers.create(
                    {"Image": image, "Cmd": ["sleep", "300"],
                     "Labels": {BENCH_LABEL: run_id},
                     "HostConfig": {"NanoCpus": 50_000_000, "Memory": 16 << 20,
                                    "MemorySwap": 16 << 20}},
                    name=f"raw-{run_id}-{round_no}-{i}")
                await c.start()
                return c.id

            t0 = time.perf_counter()
            ids = await asyncio.gather(*(one(i) for i in range(n)))
            took = time.perf_counter() - t0
            await asyncio.gather(*(docker.containers.container(c).delete(force=True)
                                   for c in ids))
            return took
        finally:
            await docker.close()

    return asyncio.run(go())


async def api_round(addr: str, spec: dict[str, Any]) -> float:
    async with Client(None, addr) as client:
        t0 = time.perf_counter()
        await client.call("job_run", spec)
        while True:
            st = await client.call("job_status", spec["name"])
            if [t["state"] for t in st["tasks"]] == ["running"] * spec["count"]:
                return time.perf_counter() - t0
            await trio.sleep(0.02)


async def remove(addr: str, name: str, node: str) -> None:
    async with Client(None, addr) as client:
        await client.call("job_rm", name)
        with trio.fail_after(120):
            while containers({"io.helios.node": node}):
                await trio.sleep(0.2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    run_id = uuid.uuid4().hex[:8]
    node = f"deploy-{run_id}"
    image = ensure_image()
    tmp = Path(tempfile.mkdtemp(prefix="helios-deploy-bench-"))
    addr = f"127.0.0.1:{free_port()}"
    log = open(tmp / "solo.log", "ab")  # noqa: SIM115 - closed in finally
    solo = subprocess.Popen([*HELIOS, "solo", "--runtime", "docker", "--listen", addr,
                                      "--state-dir", str(tmp / "state"), "--name", node],
                            stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    rows: dict[str, list[float]] = {"raw": [], "api": [], "cli": []}
    try:
        deadline = time.monotonic() + 30
        while subprocess.run([*HELIOS, "nodes", "--conductor", addr],
                             capture_output=True).returncode:
            if time.monotonic() > deadline:
                raise SystemExit(f"solo did not start; see {tmp / 'solo.log'}")
            time.sleep(0.3)
        print(f"deploy bench: {args.tasks} tasks, {args.rounds} rounds, helios solo "
              f"(docker) at {addr}", flush=True)
        for r in range(args.rounds):
            rows["raw"].append(raw_round(image, args.tasks, run_id, r))
            name = f"api-{run_id}-{r}"
            rows["api"].append(trio.run(api_round, addr, job(name, image, args.tasks)))
            trio.run(remove, addr, name, node)
            name = f"cli-{run_id}-{r}"
            f = tmp / f"{name}.json"
            f.write_text(json.dumps(job(name, image, args.tasks)))
            t0 = time.perf_counter()
            out = subprocess.run([*HELIOS, "job", "run", str(f), "--wait", "--timeout", "120",
                                           "--conductor", addr], capture_output=True,
                                 text=True)
            rows["cli"].append(time.perf_counter() - t0)
            if out.returncode:
                raise SystemExit(f"job run failed: {out.stderr}")
            trio.run(remove, addr, name, node)
            print(f"  round {r + 1}: raw {rows['raw'][-1]:.2f} s, api "
                  f"{rows['api'][-1]:.2f} s, cli {rows['cli'][-1]:.2f} s", flush=True)
        med = {k: statistics.median(v) for k, v in rows.items()}
        print(json.dumps({"tasks": args.tasks, "rounds": args.rounds,
                          **{f"{k}_p50_s": round(v, 2) for k, v in med.items()},
                          "api_over_raw": round(med["api"] / med["raw"], 2),
                          "cli_over_raw": round(med["cli"] / med["raw"], 2)}))
    finally:
        solo.send_signal(signal.SIGTERM)
        try:
            solo.wait(15)
        except subprocess.TimeoutExpired:
            solo.kill()
        log.close()
        ids = containers({"io.helios.node": node}, all_=True) + \
            containers({BENCH_LABEL: run_id}, all_=True)
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=120)


if __name__ == "__main__":
    main()
