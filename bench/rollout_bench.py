"""Rolling update: time to roll a 10-task http service to a new version with
`update.parallel` 1 and 3, against the raw start of the same containers, and the failed
requests of a client during it (target: zero).

    python bench/rollout_bench.py [--tasks 10] [--parallel 1,3] [--rounds 1]

A real cluster: its own ZooKeeper (tests/fixtures/zookeeper.py, stopped by PID), one
`helios conductor` and two `helios node` processes with the Docker runtime (own port
ranges, a unique container label). The service is busybox httpd serving its version,
with an http health check (first checks every 250 ms). A client follows the service's
healthy endpoints through ZooKeeper (`helios.endpoints.Resolver`) and sends HTTP
requests to their 127.0.0.1 host ports all the time (tests/integration/traffic.py).

Figures per rollout (parallel p):

- `helios`: `job_run` of the new version to `job status` showing the rollout complete
  (every slot a healthy new task, no old task left), polled every 20 ms by an actor
  client;
- `raw_all`: aiodocker create + start of the same number of containers (same image,
  command, limits, published port) all at once: the floor any orchestrator pays Docker;
- `raw_rolling`: the same containers started in batches of p, each batch waiting until
  its httpd answers on its host port: the floor of a start-first rolling update that
  waits for health, without any orchestration (no scheduling, no ZooKeeper, no drain);
- `failed`: requests of the client that failed during the rollout (and `ok`); the
  JSON sums them over the rounds.

Ratios helios/raw_rolling and helios/raw_all are printed. What Helios adds per batch:
the reconcile pass that notices health (reports are pushed, so ~one node report and one
fenced write), the push of the new assignment, and the health check interval.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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

from bench.failover_bench import (  # noqa: E402
    BENCH_LABEL,
    Daemon,
    containers,
    ensure_image,
    free_port,
)
from helios.client import Client  # noqa: E402

SERVE = ["sh", "-c", "mkdir -p /tmp/www && echo $V > /tmp/www/index.html"
         " && exec httpd -f -p 8080 -h /tmp/www"]


def service(name: str, image: str, n: int, version: str, parallel: int) -> dict[str, Any]:
    return {"name": name, "kind": "service", "image": image, "command": SERVE,
            "env": {"V": version}, "count": n,
            "resources": {"cpus": 0.1, "memory": "16M"},
            "ports": {"http": {"container": 8080}}, "grace": "0.5s",
            "health": {"http": {"port": "http", "path": "/"}, "interval": "1s",
                       "timeout": "1s"},
            "update": {"parallel": parallel, "deadline": "120s", "auto_rollback": True}}


# ----------------------------------------------------------------------------- raw


async def _http_ok(port: int) -> bool:
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), 1.0)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(b"GET / HTTP/1.0\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 1.0)
        return b" 200 " in data.split(b"\r\n", 1)[0] + b" "
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()


def raw_round(image: str, n: int, batch: int | None, run_id: str, tag: str) -> float:
    """Create and start n httpd containers with aiodocker: all at once (`batch` None), or
    `batch` at a time, each batch waiting until its servers answer. Seconds taken."""
    import aiodocker

    async def go() -> float:
        docker = aiodocker.Docker()
        ids: list[str] = []
        try:
            async def one(i: int) -> tuple[str, int]:
                c = await docker.containers.create(
                    {"Image": image, "Cmd": SERVE, "Env": [f"V=raw{i}"],
                     "Labels": {BENCH_LABEL: run_id},
                     "ExposedPorts": {"8080/tcp": {}},
                     "HostConfig": {"NanoCpus": 100_000_000, "Memory": 16 << 20,
                                    "MemorySwap": 16 << 20,
                                    "PortBindings": {"8080/tcp": [
                                        {"HostIp": "127.0.0.1", "HostPort": ""}]}}},
                    name=f"raw-{run_id}-{tag}-{i}")
                ids.append(c.id)
                await c.start()
                if batch is None:
                    return c.id, 0
                info = await c.show()
                port = int(info["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"])
                for _ in range(2000):  # bounded: ~100 s
                    if await _http_ok(port):
                        break
                    await asyncio.sleep(0.05)
                return c.id, port

            t0 = time.perf_counter()
            if batch is None:
                await asyncio.gather(*(one(i) for i in range(n)))
            else:
                for lo in range(0, n, batch):
                    await asyncio.gather(*(one(i) for i in range(lo, min(n, lo + batch))))
            return time.perf_counter() - t0
        finally:
            await asyncio.gather(*(docker.containers.container(c).delete(force=True)
                                   for c in ids), return_exceptions=True)
            await docker.close()

    return asyncio.run(go())


# ----------------------------------------------------------------------------- helios


async def rollout(conductor: str, spec: dict[str, Any], version_no: int) -> float:
    """job_run of `spec`, then until its rollout is complete; seconds."""
    def complete(doc: dict[str, Any]) -> bool:
        ro = doc.get("rollout") or {}
        return (doc["version"] >= version_no and ro.get("state") == "complete"
                and ro.get("old") == 0 and ro.get("updated") == spec["count"])

    async with Client(None, conductor) as client:
        t0 = time.perf_counter()
        out = await client.call("job_run", spec)
        assert out["version"] == version_no, out
        with trio.fail_after(300):
            while True:
                doc = await client.call("job_status", spec["name"])
                if complete(doc):
                    return time.perf_counter() - t0
                await trio.sleep(0.02)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=10)
    ap.add_argument("--parallel", default="1,3")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    parallels = [int(p) for p in args.parallel.split(",")]
    run_id = uuid.uuid4().hex[:8]
    logdir = Path(tempfile.mkdtemp(prefix="helios-rollout-bench-"))
    image = ensure_image()

    from tests.fixtures.zookeeper import start_zookeeper
    from tests.integration.traffic import ServiceClient

    server = start_zookeeper(logdir / "zk")
    root = f"/helios-bench-{run_id}"
    zk = f"{server.hosts}{root}"
    daemons: list[Daemon] = []
    rows: dict[str, list[float]] = {}
    failed: dict[int, int] = {}
    answered: dict[int, int] = {}
    try:
        caddr = f"127.0.0.1:{free_port()}"
        daemons.append(Daemon("conductor", ["conductor", "--zk", zk, "--listen", caddr,
                                            "--name", "c1", "--session-timeout", "4"],
                              logdir).start())
        for i, ports in enumerate(("23000-23499", "23500-23999")):
            name = f"rb{i}-{run_id}"
            daemons.append(Daemon(name, [
                "node", "--zk", zk, "--name", name, "--cpus", "4", "--memory", "2G",
                "--runtime", "docker", "--state-dir", str(logdir / name),
                "--session-timeout", "4", "--port-range", ports,
                "--container-label", f"{BENCH_LABEL}={run_id}"], logdir).start())
        job = f"web-{run_id}"
        print(f"rollout bench: {args.tasks} tasks, parallel {parallels}, "
              f"{args.rounds} round(s), 2 docker nodes; logs in {logdir}", flush=True)

        async def nodes_up() -> None:
            async with Client(None, caddr) as client:
                with trio.fail_after(60):
                    while True:
                        try:
                            ns = await client.call("nodes")
                            if len([n for n in ns if n["status"] == "up"]) == 2:
                                return
                        except Exception:
                            pass
                        await trio.sleep(0.2)

        trio.run(nodes_up)
        version = 1
        trio.run(rollout, caddr, service(job, image, args.tasks, "v1", 1), version)
        with ServiceClient(server.hosts, root, job) as client:
            for r in range(args.rounds):
                for p in parallels:
                    rows.setdefault("raw_all", []).append(
                        raw_round(image, args.tasks, None, run_id, f"a{r}{p}"))
                    rows.setdefault(f"raw_rolling_p{p}", []).append(
                        raw_round(image, args.tasks, p, run_id, f"r{r}{p}"))
                    before_fail, before_ok = len(client.traffic.failures), client.traffic.ok
                    version += 1
                    took = trio.run(rollout, caddr, service(job, image, args.tasks,
                                                             f"v{version}", p), version)
                    rows.setdefault(f"helios_p{p}", []).append(took)
                    bad = len(client.traffic.failures) - before_fail
                    good = client.traffic.ok - before_ok
                    failed[p] = failed.get(p, 0) + bad
                    answered[p] = answered.get(p, 0) + good
                    print(f"  round {r + 1} parallel {p}: helios {took:.2f} s, raw rolling "
                          f"{rows[f'raw_rolling_p{p}'][-1]:.2f} s, raw all "
                          f"{rows['raw_all'][-1]:.2f} s; client {good} ok, "
                          f"{bad} failed", flush=True)
        t = client.traffic
        med = {k: statistics.median(v) for k, v in rows.items()}
        out: dict[str, Any] = {"tasks": args.tasks, "rounds": args.rounds}
        for p in parallels:
            out[f"parallel_{p}"] = {
                "helios_p50_s": round(med[f"helios_p{p}"], 2),
                "raw_rolling_p50_s": round(med[f"raw_rolling_p{p}"], 2),
                "raw_all_p50_s": round(med["raw_all"], 2),
                "helios_over_raw_rolling": round(med[f"helios_p{p}"]
                                                 / med[f"raw_rolling_p{p}"], 2),
                "helios_over_raw_all": round(med[f"helios_p{p}"] / med["raw_all"], 2),
                "requests_ok": answered[p], "requests_failed": failed[p]}
        out["client_error"] = repr(t.error) if t.error else None
        print(json.dumps(out))
        total_failed = sum(failed.values())
        print(f"target zero failed requests: {'met' if total_failed == 0 else 'MISSED'}"
              + ("" if not t.failures else f"; first: {t.failures[0]}"))
    finally:
        for d in reversed(daemons):
            d.stop()
        ids = containers({BENCH_LABEL: run_id}, all_=True)
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=120)
        server.stop()


if __name__ == "__main__":
    main()
