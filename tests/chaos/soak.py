"""A chaos soak: kill anything, at any time, and lose nothing (issue 18).

Jepsen's shape on a real Helios cluster (tests/chaos/cluster.py: a 3-server ZooKeeper
ensemble, 2 conductors, 3 node daemons on Docker, each node in a network namespace):

- a **generator** of operations, seeded: services deployed and rolled (each version
  serves its own text), batch jobs, a per-second cron job, dispatches with idempotency
  keys (a keyed dispatch whose answer was lost is retried with its key, and old keys
  are sent again later);
- a **nemesis** of faults, seeded, one at a time: SIGKILL of a node daemon, of the
  leading or the standby conductor, of a container, of one ZooKeeper server; SIGSTOP
  then SIGCONT of the leader or of a node; a node partitioned from ZooKeeper or from the
  conductors; a restart of the Docker daemon (the soak's own, never the shared one); a
  drain of a node (below). After each heal the nemesis waits for the cluster to
  converge (bounded) before the next fault;
- **observers** that record what the cluster says and does: every job's status, the
  containers the Docker daemon runs, the fencing epoch in ZooKeeper and which conductor
  claims to lead under which epoch, a client per service that follows its endpoints and
  counts failed requests, and whether the cluster has converged;
- at the end every fault is healed, the cluster settles, and `final` observations are
  read (statuses, containers, job histories, what the services serve). The checkers of
  tests/chaos/checkers.py judge the history; `figures()` sums it up.

Everything goes into one history (a list of dicts, saved as JSON lines). A failing soak
prints its seed and its fault history; the same seed gives the same sequence of faults
and operations (the targets named by role: the leader, a node picked by the seeded
draw among those alive).

A `drain` fault runs `helios node drain` (the same `node_drain` call) on a node, sometimes
kills the leader a moment later (the new leader must carry the drain on from
`/drain/<node>`), and then lets the nemesis go on with other faults while the drain
proceeds: a background follower waits for it to complete, records `drained`, keeps the
node drained for the fault's hold and re-enables its eligibility (`helios node
eligibility --enable`) so the cluster keeps its capacity. One drain at a time.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

import actors
from helios.cli import Client, CLIError
from helios.coordination import paths
from helios.coordination.zookeeper import open_zookeeper
from helios.endpoints import Resolver
from helios.protocol import conductor_url
from helios.spec import validate
from tests.chaos import checkers
from tests.chaos.cluster import Node, SoakCluster
from tests.integration.traffic import _get

#: every fault the nemesis knows, with the range of seconds it is held
FAULT_KINDS: dict[str, tuple[float, float]] = {
    "kill-node": (0.5, 8.0),
    "kill-leader": (0.5, 6.0),
    "kill-standby": (0.5, 6.0),
    "kill-container": (0.0, 0.0),
    "kill-zookeeper": (1.0, 10.0),
    "stop-leader": (1.0, 15.0),
    "stop-node": (1.0, 15.0),
    "partition-zk": (2.0, 15.0),
    "partition-conductor": (2.0, 15.0),
    "docker-restart": (0.0, 0.0),
    "drain": (3.0, 30.0),
}
#: faults the soak injects unless told otherwise: all of them (the Docker daemon it
#: restarts is its own, cluster.PrivateDockerd)
DEFAULT_FAULTS = tuple(FAULT_KINDS)
NETNS_FAULTS = ("partition-zk", "partition-conductor")

#: how long the nemesis waits for convergence after a heal before it moves on
RECOVERY_WAIT = 90.0
#: bound of the final convergence
SETTLE_WAIT = 240.0
#: bound of a drain under other faults (a drain not complete by then is a violation)
DRAIN_WAIT = 150.0
#: batch deadline given to a drain: batch tasks are moved after it
DRAIN_DEADLINE = 10.0
#: a drain fault kills the leader this soon after starting it when its draw says so
DRAIN_KILL_AFTER = (0.2, 3.0)
#: the per-second cron job's schedule (every 2 s: a container start per tick)
CRON_SCHEDULE = "*/2 * * * * *"
CRON_PERIOD = 2

SERVE = ["sh", "-c", "mkdir -p /tmp/www && echo $V > /tmp/www/index.html"
         " && exec httpd -f -p 8080 -h /tmp/www"]
SMALL = {"cpus": 0.1, "memory": "16M"}


def service_spec(name: str, image: str, value: str, count: int) -> dict[str, Any]:
    return {"name": name, "kind": "service", "image": image, "command": SERVE,
            "env": {"V": value}, "count": count, "resources": SMALL,
            "ports": {"http": {"container": 8080}}, "grace": "1s",
            "health": {"http": {"port": "http", "path": "/"}, "interval": "1s",
                       "timeout": "1s"},
            "update": {"parallel": 1, "deadline": "60s", "auto_rollback": True}}


def batch_spec(name: str, image: str, seconds: int) -> dict[str, Any]:
    return {"name": name, "kind": "batch", "image": image, "count": 2,
            "command": ["sh", "-c", f"sleep {seconds}"], "resources": SMALL,
            "restart": {"policy": "on-failure", "max": 10, "backoff": "1s"}}


def cron_spec(name: str, image: str) -> dict[str, Any]:
    return {"name": name, "kind": "cron", "image": image, "schedule": CRON_SCHEDULE,
            "command": ["sh", "-c", "echo $HELIOS_CRON_TICK"], "resources": SMALL,
            "restart": {"policy": "on-failure", "max": 10, "backoff": "1s"}}


def dispatch_spec(name: str, image: str) -> dict[str, Any]:
    return {"name": name, "kind": "parameterized", "image": image,
            "command": ["sh", "-c", "echo $HELIOS_PAYLOAD"], "resources": SMALL,
            "restart": {"policy": "on-failure", "max": 10, "backoff": "1s"}}


@dataclass(frozen=True)
class Fault:
    """One planned fault: after `gap` seconds, `kind`, held `hold` s, target drawn by
    `pick` (0..1) among the candidates of that moment."""

    gap: float
    kind: str
    hold: float
    pick: float


def fault_plan(seed: int, kinds: tuple[str, ...], n: int = 1000) -> list[Fault]:
    """The nemesis's schedule for `seed` (pure: the same seed, the same faults)."""
    rng = random.Random(f"faults-{seed}")
    out = []
    for _ in range(n):
        kind = rng.choice(kinds)
        lo, hi = FAULT_KINDS[kind]
        out.append(Fault(round(rng.uniform(2.0, 8.0), 2), kind,
                         round(rng.uniform(lo, hi), 2), rng.random()))
    return out


@dataclass(frozen=True)
class Op:
    gap: float
    op: str  # roll | batch | dispatch | redispatch | dispatch-nokey
    pick: float


def op_plan(seed: int, n: int = 1000) -> list[Op]:
    """The generator's schedule for `seed` (pure)."""
    rng = random.Random(f"ops-{seed}")
    ops = ["roll", "roll", "batch", "dispatch", "dispatch", "redispatch", "dispatch-nokey"]
    return [Op(round(rng.uniform(3.0, 10.0), 2), rng.choice(ops), rng.random())
            for _ in range(n)]


@dataclass
class SoakConfig:
    seed: int
    minutes: float
    workdir: Path
    faults: tuple[str, ...] = DEFAULT_FAULTS
    nodes: int = 3
    conductors: int = 2
    services: dict[str, int] = field(default_factory=lambda: {"web-a": 3, "web-b": 2})
    netns: bool = True
    log: Any = print


class Soak:
    """One run: `Soak(config).run()` returns the history (the cluster is gone by then)."""

    def __init__(self, cfg: SoakConfig) -> None:
        self.cfg = cfg
        self.history: list[dict[str, Any]] = []
        self.t0 = time.monotonic()
        self.cluster: SoakCluster | None = None
        self.image = ""
        self.jobs: dict[str, str] = {}       # name -> kind, every job written
        self.values: dict[str, int] = {}     # service -> its version counter
        self.keys: list[str] = []
        self.done = False
        self.converged = trio.Event()
        self.next_op = 0
        self.next_fault = 0
        self.serving: dict[str, Counter[str]] | None = None
        self.batches = 0
        self.system: actors.ActorSystem | None = None
        self.draining: tuple[str, int] | None = None  # (node, fault) a drain holds
        self.open_faults: dict[int, tuple[str, str]] = {}  # started, not healed yet
        self.chaos: trio.Nursery | None = None

    # ------------------------------------------------------------------------ history

    def rec(self, type_: str, **kw: Any) -> dict[str, Any]:
        e = {"t": round(time.monotonic() - self.t0, 3), "wall": round(time.time(), 3),
             "type": type_, **kw}
        self.history.append(e)
        return e

    def say(self, msg: str) -> None:
        self.cfg.log(f"[{time.monotonic() - self.t0:7.1f}s] {msg}")
        sys.stdout.flush()

    # --------------------------------------------------------------------------- run

    def run(self) -> list[dict[str, Any]]:
        from tests.fixtures.docker import ensure_test_image

        self.image = ensure_test_image()
        cfg = self.cfg
        self.cluster = SoakCluster(cfg.workdir, self.image, nodes=cfg.nodes,
                                   conductors=cfg.conductors, netns=cfg.netns)
        self.rec("meta", seed=cfg.seed, minutes=cfg.minutes, faults=list(cfg.faults),
                 run=self.cluster.run_id)
        try:
            self.cluster.start()
            self.say(f"cluster {self.cluster.run_id} started: ZooKeeper "
                     f"{self.cluster.zk_hosts}, conductors {list(self.cluster.conductors)}, "
                     f"nodes {list(self.cluster.nodes)}")
            trio.run(self._main)
        finally:
            self.cluster.stop()
        return self.history

    async def _main(self) -> None:
        assert self.cluster is not None
        store = await open_zookeeper(self.cluster.zk_hosts, self.cluster.root,
                                     session_timeout=10.0)
        try:
            async with Client(self.cluster.zk, None, timeout=5.0) as client, \
                    actors.open_system(name=f"soak-{self.cluster.run_id}") as system, \
                    trio.open_nursery() as nursery:
                self.system = system
                await self._setup(client)
                nursery.start_soon(self._observe_cluster)
                nursery.start_soon(self._observe_epochs, store)
                for job in self.cfg.services:
                    nursery.start_soon(self._traffic, store, job)
                nursery.start_soon(self._check_continuously)
                nursery.start_soon(self._observe_cron)
                with trio.fail_after(SETTLE_WAIT):
                    await self._wait_converged()
                self.say("converged; faults and operations start")
                with trio.move_on_after(self.cfg.minutes * 60):
                    async with trio.open_nursery() as chaos:
                        self.chaos = chaos
                        chaos.start_soon(self._nemesis)
                        chaos.start_soon(self._generator, client)
                self.say("faults stop; healing and settling")
                await trio.to_thread.run_sync(self.cluster.heal_all)
                await self._undrain()
                for fid, (kind, target) in sorted(self.open_faults.items()):
                    # cut short by the end of the soak: healed by heal_all just now
                    self.rec("fault", fault=fid, kind=kind, target=target, phase="heal")
                self.open_faults.clear()
                await self._finish(client)
                self.done = True
                nursery.cancel_scope.cancel()
        finally:
            await store.aclose()

    async def _wait_converged(self) -> None:
        self.converged = trio.Event()
        await self.converged.wait()

    # --------------------------------------------------------------------- operations

    async def _op(self, client: Client, op: str, method: str, *args: Any,
                  invoke: dict[str, Any], result: Any = None, **kwargs: Any) -> Any:
        """Invoke one operation and record its completion: ok, or info (unknown)."""
        self.next_op += 1
        oid = self.next_op
        self.rec("op", id=oid, op=op, phase="invoke", **invoke)
        try:
            with trio.fail_after(40):
                out = await client.call(method, *args, timeout=10.0, **kwargs)
        except (CLIError, actors.ActorError, trio.TooSlowError, OSError) as e:
            self.rec("op", id=oid, op=op, phase="info", job=invoke.get("job"),
                     key=invoke.get("key"), error=f"{type(e).__name__}: {e}"[:300])
            return None
        done = result(out) if result else {}
        self.rec("op", id=oid, op=op, phase="ok", job=invoke.get("job"), **done)
        return out

    async def _job_run(self, client: Client, spec: dict[str, Any], **extra: Any) -> Any:
        self.jobs[spec["name"]] = spec["kind"]
        return await self._op(
            client, "job_run", "job_run", validate(spec).to_dict(),
            invoke={"job": spec["name"], "kind": spec["kind"],
                    "count": spec.get("count", 1),
                    "value": (spec.get("env") or {}).get("V"), **extra},
            result=lambda out: {"version": out.get("version"), "changed": out.get("changed")})

    async def _dispatch(self, client: Client, job: str, key: str | None) -> Any:
        return await self._op(
            client, "dispatch", "job_dispatch", job, payload={"k": key or "none"},
            idempotency_key=key, invoke={"job": job, "key": key},
            result=lambda out: {"key": key, "run": out.get("run"),
                                "created": out.get("created")})

    async def _keyed(self, client: Client, key: str) -> None:
        """Dispatch with `key` until an answer comes (bounded), as a careful client does."""
        for _ in range(8):
            if await self._dispatch(client, "thumb", key) is not None:
                return
            await trio.sleep(2.0)

    async def _setup(self, client: Client) -> None:
        assert self.cluster is not None
        for _ in range(300):  # bounded wait for every node to register
            try:
                nodes = await client.call("nodes", timeout=5.0)
                if sum(n["status"] == "up" for n in nodes) == self.cfg.nodes:
                    break
            except (CLIError, actors.ActorError):
                pass
            await trio.sleep(0.5)
        else:
            raise RuntimeError("nodes never came up:\n" + self.cluster.diagnostics())
        for job, count in self.cfg.services.items():
            self.values[job] = 1
            await self._job_run(client, service_spec(job, self.image, f"{job}-v1", count))
        await self._job_run(client, cron_spec("tick", self.image), period=CRON_PERIOD)
        await self._job_run(client, dispatch_spec("thumb", self.image))

    async def _generator(self, client: Client) -> None:
        rng = random.Random(f"gen-{self.cfg.seed}")
        for op in op_plan(self.cfg.seed):
            await trio.sleep(op.gap)
            if op.op == "roll":
                jobs = sorted(self.cfg.services)
                job = jobs[int(op.pick * len(jobs))]
                self.values[job] += 1
                value = f"{job}-v{self.values[job]}"
                self.say(f"op: roll {job} to {value}")
                await self._job_run(client, service_spec(job, self.image, value,
                                                         self.cfg.services[job]))
            elif op.op == "batch":
                self.batches += 1
                name = f"batch-{self.batches}"
                self.say(f"op: batch {name}")
                await self._job_run(client, batch_spec(name, self.image,
                                                       1 + int(op.pick * 4)))
            elif op.op == "dispatch":
                key = f"k{len(self.keys) + 1}-{rng.randrange(1 << 30):x}"
                self.keys.append(key)
                self.say(f"op: dispatch key {key}")
                await self._keyed(client, key)
            elif op.op == "redispatch" and self.keys:
                key = self.keys[int(op.pick * len(self.keys))]
                self.say(f"op: dispatch again key {key}")
                await self._keyed(client, key)
            elif op.op == "dispatch-nokey":
                self.say("op: dispatch without key")
                await self._dispatch(client, "thumb", None)

    # ------------------------------------------------------------------------- nemesis

    async def _leader(self) -> str | None:
        """The conductor that leads now, asked of each one directly."""
        assert self.cluster is not None
        for name, port in self.cluster.conductor_ports.items():
            info = await self._ask_conductor(port, "leader")
            if info and info.get("leader"):
                return name
        return None

    async def _ask_conductor(self, port: int, method: str) -> Any:
        """Ask one conductor itself (not whoever leads); None if it does not answer."""
        assert self.system is not None
        try:
            with trio.move_on_after(2.0):
                return await self.system.ref(conductor_url(f"127.0.0.1:{port}")).ask(
                    method, timeout=1.5)
        except (actors.ActorError, OSError):
            return None
        return None

    async def _nemesis(self) -> None:
        for fault in fault_plan(self.cfg.seed, self.cfg.faults):
            await trio.sleep(fault.gap)
            await self.inject(fault)
            with trio.move_on_after(RECOVERY_WAIT) as scope:
                await self._wait_converged()
            if scope.cancelled_caught:
                self.say(f"not converged {RECOVERY_WAIT:g}s after the heal; going on")

    async def inject(self, f: Fault) -> None:
        """Apply one fault, hold it, heal it; start and heal are recorded."""
        cl = self.cluster
        assert cl is not None
        kind = f.kind

        def pick(items: list[Any]) -> Any:
            return items[min(len(items) - 1, int(f.pick * len(items)))] if items else None

        self.next_fault += 1
        fid = self.next_fault

        def start(target: str, **kw: Any) -> None:
            self.say(f"fault {fid}: {kind} {target} for {f.hold:g}s")
            self.rec("fault", fault=fid, kind=kind, target=target, phase="start",
                     hold=f.hold, **kw)
            self.open_faults[fid] = (kind, target)

        def heal(target: str) -> None:
            self.rec("fault", fault=fid, kind=kind, target=target, phase="heal")
            self.open_faults.pop(fid, None)

        if kind in ("kill-node", "stop-node", "partition-zk", "partition-conductor"):
            node: Node = pick(sorted(cl.nodes.values(), key=lambda n: n.name))
            if kind == "kill-node":
                start(node.name)
                node.proc.kill()
                await trio.sleep(f.hold)
                node.proc.start()
            elif kind == "stop-node":
                start(node.name)
                node.proc.freeze()
                await trio.sleep(f.hold)
                node.proc.thaw()
            else:
                if node.ns is None:
                    return
                start(node.name)
                node.ns.block(cl.partition_rules(node, "zk" if kind == "partition-zk"
                                                 else "conductor"))
                await trio.sleep(f.hold)
                node.ns.heal()
            heal(node.name)
        elif kind in ("kill-leader", "kill-standby", "stop-leader"):
            leader = await self._leader()
            if leader is None:
                return
            names = sorted(cl.conductors)
            target = leader if kind != "kill-standby" else \
                pick([n for n in names if n != leader])
            if target is None:
                return
            proc = cl.conductors[target]
            start(target)
            if kind == "stop-leader":
                proc.freeze()
                await trio.sleep(f.hold)
                proc.thaw()
            else:
                proc.kill()
                await trio.sleep(f.hold)
                proc.start()
            heal(target)
        elif kind == "kill-container":
            running = sorted(await trio.to_thread.run_sync(cl.running_containers),
                             key=lambda c: c["id"])
            victim = pick(running)
            if victim is None:
                return
            start(f"{victim['job']}/{victim['task']}@{victim['node']}")
            await trio.run_process(["docker", "-H", cl.dockerd.host, "kill", victim["id"]],
                                   capture_stdout=True, capture_stderr=True, check=False)
            heal(victim["task"])
        elif kind == "kill-zookeeper":
            assert cl.ensemble is not None
            server = pick(cl.ensemble.servers)
            start(f"zk{server.server_id}")
            server.kill()
            await trio.sleep(f.hold)
            server.start(wait=False)
            heal(f"zk{server.server_id}")
        elif kind == "docker-restart":
            start("dockerd")
            await trio.to_thread.run_sync(cl.dockerd.restart)
            heal("dockerd")
        elif kind == "drain":
            if self.draining is not None or self.chaos is None:
                return  # one drain at a time
            # a node that runs service containers (the scheduler packs: draining an
            # empty node would test nothing), else any
            try:
                busy = {c["node"] for c in await trio.to_thread.run_sync(
                    cl.running_containers) if c["job"] in self.cfg.services}
            except (RuntimeError, OSError):
                busy = set()
            nodes = sorted(cl.nodes.values(), key=lambda n: n.name)
            node = pick([n for n in nodes if n.name in busy] or nodes)
            # the fault's own draw, reused: about a third of drains lose their leader
            frac = (f.pick * 1000) % 1.0
            kill = frac < 0.35
            start(node.name, leader_kill=kill)
            self.draining = (node.name, fid)
            if await self._drain_call(fid, "drain", node.name, DRAIN_DEADLINE) is None:
                self.say(f"fault {fid}: the drain of {node.name} was not acknowledged")
            if kill:
                await self._kill_leader_during_drain(fid, frac)
            self.chaos.start_soon(self._follow_drain, fid, node.name, f.hold)
        else:
            raise NotImplementedError(f"fault {kind!r} is not implemented yet")

    async def _drain_call(self, fid: int, what: str, node: str, *args: Any) -> Any:
        """`node_drain` (drain, or eligibility with `what="enable"`) until one answer
        comes (bounded; the call is idempotent); recorded under the fault."""
        assert self.cluster is not None
        args = args if what == "drain" else (None, False, True)
        async with Client(self.cluster.zk, None, timeout=10.0) as client:
            for _ in range(20):
                try:
                    with trio.fail_after(30):
                        out = await client.call("node_drain", node, *args, timeout=10.0)
                except (CLIError, actors.ActorError, trio.TooSlowError, OSError) as e:
                    self.rec("fault", fault=fid, kind="drain", target=node,
                             phase=f"{what}-info", error=f"{type(e).__name__}: {e}"[:300])
                    await trio.sleep(2.0)
                    continue
                self.rec("fault", fault=fid, kind="drain", target=node, phase=f"{what}-ok",
                         eligible=out.get("eligible"), draining=out.get("draining"))
                return out
        return None

    async def _kill_leader_during_drain(self, fid: int, frac: float) -> None:
        """SIGKILL the leader while the drain moves tasks; restart it after 0.5-4 s."""
        assert self.cluster is not None
        lo, hi = DRAIN_KILL_AFTER
        await trio.sleep(lo + (hi - lo) * (frac / 0.35))
        leader = await self._leader()
        if leader is None:
            return
        proc = self.cluster.conductors[leader]
        self.say(f"fault {fid}: drain interrupted: kill leader {leader}")
        self.rec("fault", fault=fid, kind="drain", target=leader, phase="leader-kill")
        proc.kill()
        await trio.sleep(0.5 + 3.5 * frac / 0.35)
        proc.start()

    async def _follow_drain(self, fid: int, node: str, hold: float) -> None:
        """While other faults go on: wait for the drain to complete (bounded), record
        it, keep the node drained `hold` s, then enable it again. Cancelled at the end
        of the soak, it leaves the enabling to `_undrain` (after every fault is healed)."""
        assert self.cluster is not None
        complete = False
        async with Client(self.cluster.zk, None, timeout=5.0) as client:
            with trio.move_on_after(DRAIN_WAIT):
                for _ in range(100_000):
                    try:
                        report = await client.call("node_drain_status", node, timeout=5.0)
                    except (CLIError, actors.ActorError):
                        report = {}
                    if report.get("complete"):
                        complete = True
                        break
                    await trio.sleep(1.0)
        if complete:
            self.say(f"fault {fid}: {node} drained")
            self.rec("fault", fault=fid, kind="drain", target=node, phase="drained")
            await trio.sleep(hold)
        else:
            self.say(f"fault {fid}: {node} not drained after {DRAIN_WAIT:g}s")
            self.rec("fault", fault=fid, kind="drain", target=node, phase="stuck")
        await self._undrain()

    async def _undrain(self) -> None:
        """Enable the node a drain fault holds, so the cluster keeps its capacity; the
        drain fault heals here."""
        if self.draining is None:
            return
        node, fid = self.draining
        await self._drain_call(fid, "enable", node)
        self.rec("fault", fault=fid, kind="drain", target=node, phase="heal")
        self.open_faults.pop(fid, None)
        self.draining = None

    # ----------------------------------------------------------------------- observers

    async def _observe_cluster(self) -> None:
        """Statuses, endpoints, nodes and containers, about once a second; a
        `converged` observation after each round."""
        assert self.cluster is not None
        finished: set[str] = set()
        async with Client(self.cluster.zk, None, timeout=3.0) as client:
            for _ in range(10_000_000):  # bounded; ends with the soak
                with trio.move_on_after(15):
                    ok = await self._observe_round(client, finished)
                    self.rec("obs", what="converged", value=ok)
                    if ok:
                        self.converged.set()
                await trio.sleep(1.0)

    async def _observe_round(self, client: Client, finished: set[str]) -> bool:
        assert self.cluster is not None
        ok = True
        live: dict[str, set[str]] = {}
        try:
            nodes = {n["name"]: n["status"] for n in await client.call("nodes", timeout=3.0)}
        except (CLIError, actors.ActorError):
            nodes, ok = {}, False
        for job, kind in list(self.jobs.items()):
            if job in finished or kind in ("cron", "parameterized"):
                continue
            try:
                st = await client.call("job_status", job, timeout=3.0)
            except (CLIError, actors.ActorError):
                ok = False
                continue
            tasks = [{k: t.get(k) for k in ("id", "node", "state", "healthy")}
                     for t in st.get("tasks") or []]
            self.rec("obs", what="status", job=job, version=st.get("version"),
                     status=st.get("status"), rollout=(st.get("rollout") or {}).get("state"),
                     tasks=tasks)
            if kind == "batch" and st.get("status") in ("complete", "failed"):
                finished.add(job)
            if kind != "service":
                continue
            good = {t["id"] for t in tasks if t["state"] == "running" and t["healthy"]
                    and nodes.get(t["node"]) == "up"}
            live[job] = good
            busy = [t for t in tasks if t["state"] in checkers.ACTIVE
                    and t["id"] not in good]
            rollout = (st.get("rollout") or {}).get("state")
            if len(good) != self.cfg.services[job] or busy or \
                    rollout in ("rolling", "rolling back"):
                ok = False
            try:
                eps = await client.call("endpoints", job, timeout=3.0)
                if {e["task"] for e in eps} != good:
                    ok = False
            except (CLIError, actors.ActorError):
                ok = False
        try:  # runs (cron, dispatch) as they go: finished ones are collected later
            jobs = await client.call("job_ls", timeout=3.0)
            self.rec("obs", what="jobs", jobs={j["name"]: j["status"] for j in jobs
                                               if j["kind"] not in ("service",)})
        except (CLIError, actors.ActorError):
            ok = False
        try:
            running = await trio.to_thread.run_sync(self.cluster.running_containers)
        except (RuntimeError, OSError):
            return False
        self.rec("obs", what="containers", running=running)
        for job, good in live.items():
            if {c["task"] for c in running if c["job"] == job} != good or \
                    sum(c["job"] == job for c in running) != len(good):
                ok = False
        return ok and bool(nodes) and all(s == "up" for s in nodes.values())

    async def _observe_cron(self) -> None:
        """The cron job's ticks every 15 s: a job keeps only its newest 100 history
        batches (two every tick here), so the final read alone would miss the start."""
        assert self.cluster is not None
        async with Client(self.cluster.zk, None, timeout=5.0) as client:
            for _ in range(10_000_000):
                await trio.sleep(15.0)
                with trio.move_on_after(20):
                    try:
                        events = await client.call("job_history", "tick", timeout=10.0)
                    except (CLIError, actors.ActorError):
                        continue
                    self.rec("obs", what="history", job="tick", events=[
                        e for e in events if e.get("state") in ("cron fired",
                                                                "cron skipped")])

    async def _observe_epochs(self, store: Any) -> None:
        """The fencing epoch in ZooKeeper, and who claims to lead under which epoch."""
        assert self.cluster is not None
        for _ in range(10_000_000):
            with trio.move_on_after(10):
                try:
                    entry = await store.get(paths.EPOCH)
                    if entry is not None:
                        self.rec("obs", what="epoch", epoch=int(entry.value["epoch"]))
                except Exception as e:  # ZooKeeper mid-fault: just not observed
                    self.say(f"epoch not read: {type(e).__name__}")
                for name, port in list(self.cluster.conductor_ports.items()):
                    if self.cluster.conductors[name].frozen:
                        continue
                    info = await self._ask_conductor(port, "leader")
                    if info and info.get("leader"):
                        self.rec("obs", what="leader", name=name, epoch=info.get("epoch"))
            await trio.sleep(1.0)

    async def _traffic(self, store: Any, job: str) -> None:
        """A client of `job` following its endpoints; counts flushed once a second."""
        ok, failed, last = 0, [], time.monotonic()
        async with Resolver.open(store, job) as resolver:
            for _ in range(100_000_000):
                try:
                    ep = await resolver.next(timeout=10.0)
                except trio.TooSlowError:
                    failed.append(f"{time.time():.1f} no endpoint for 10s")
                    ep = None
                if ep is not None:
                    port = int(ep["ports"]["http"])
                    try:
                        body = await _get(port)
                    except Exception as e:
                        failed.append(f"{time.time():.1f} {ep['task']}@{ep.get('node')} "
                                      f"{port}: {type(e).__name__}: {e}"[:200])
                    else:
                        ok += 1
                        if self.serving is not None:
                            self.serving.setdefault(job, Counter())[body] += 1
                if time.monotonic() - last >= 1.0:
                    self.rec("obs", what="requests", job=job, ok=ok, failed=failed)
                    ok, failed, last = 0, [], time.monotonic()
                await trio.sleep(0.05)

    async def _check_continuously(self) -> None:
        """The checkers that need no final reads, every 20 s while the soak runs: a
        violation is printed when it happens, not only at the end."""
        seen: set[str] = set()
        for _ in range(10_000_000):
            await trio.sleep(20.0)
            for v in checkers.check_all(self.history, only=checkers.CONTINUOUS):
                if str(v) not in seen:
                    seen.add(str(v))
                    self.say(f"VIOLATION {v}")

    # --------------------------------------------------------------------------- finish

    async def _finish(self, client: Client) -> None:
        """Settle, stop the cron job, let runs finish, then read the final state."""
        assert self.cluster is not None
        with trio.move_on_after(SETTLE_WAIT) as scope:
            await self._wait_converged()
        if scope.cancelled_caught:
            self.say("the cluster did not converge after the faults")
            self.rec("obs", what="unsettled")
        await self._op(client, "job_stop", "job_stop", "tick", invoke={"job": "tick"})
        with trio.move_on_after(180):
            for _ in range(1000):
                if await self._runs_finished(client):
                    break
                await trio.sleep(2.0)
        with trio.move_on_after(30):
            await self._wait_converged()
        await self._final_reads(client)

    async def _runs_finished(self, client: Client) -> bool:
        try:
            jobs = await client.call("job_ls", timeout=5.0)
        except (CLIError, actors.ActorError) as e:
            self.say(f"job ls: {e}")
            return False
        busy = {j["name"]: j["status"] for j in jobs if j["kind"] != "service"
                and j["status"] not in ("complete", "failed", "stopped", "template")}
        if busy:
            self.say(f"waiting for {busy}")
        return not busy

    async def _final_reads(self, client: Client) -> None:
        assert self.cluster is not None

        async def call(*args: Any) -> Any:
            for _ in range(10):
                try:
                    return await client.call(*args, timeout=10.0)
                except (CLIError, actors.ActorError) as e:
                    last = e
                    await trio.sleep(1.0)
            raise RuntimeError(f"{args}: {last}")

        for job in sorted(self.jobs):
            try:
                st = await call("job_status", job)
            except RuntimeError:
                continue  # recorded as missing: the checkers say what that means
            self.rec("final", what="status", job=job, version=st.get("version"),
                     status=st.get("status"),
                     tasks=[{k: t.get(k) for k in ("id", "node", "state", "healthy")}
                            for t in st.get("tasks") or []])
        self.rec("final", what="containers",
                 running=await trio.to_thread.run_sync(self.cluster.running_containers))
        runs: set[str] = set()
        for job in ("tick", "thumb"):
            events = await call("job_history", job)
            self.rec("final", what="history", job=job, events=events)
            runs |= {e["run"] for e in events if e.get("run")}
        runs |= {e["run"] for e in self.history
                 if e.get("type") == "op" and e.get("op") == "dispatch" and e.get("run")}
        done = checkers.completed_runs(self.history)
        self.say(f"reading the histories of {len(runs - done)} runs not seen complete")
        for run in sorted(runs - done):
            try:  # once: a collected run has no history left, and that is no error
                events = await client.call("job_history", run, timeout=10.0)
            except (CLIError, actors.ActorError):
                events = []
            self.rec("final", what="history", job=run, events=events)
        self.serving = {}
        await trio.sleep(5.0)
        for job in self.cfg.services:
            self.rec("final", what="served", job=job,
                     bodies=dict(self.serving.get(job, Counter())))


# ------------------------------------------------------------------------------ report

def fault_history(history: list[dict[str, Any]]) -> list[str]:
    return [f"{e['t']:8.1f}s {e['phase']:5s} #{e['fault']} {e['kind']} {e['target']}"
            + (f" ({e['hold']:g}s)" if e["phase"] == "start" else "")
            for e in history if e.get("type") == "fault"]


def report(history: list[dict[str, Any]]) -> tuple[bool, str]:
    """(passed, the text to print): figures, and on failure the seed, the violations
    and the fault history needed to replay it."""
    f = checkers.figures(history)
    meta = next((e for e in history if e.get("type") == "meta"), {})
    lines = [f"chaos soak seed {meta.get('seed')}, {meta.get('minutes')} min, "
             f"run {meta.get('run')}", "faults injected by kind:"]
    for kind, n in sorted(f["faults"].items()):
        r = f["recovery"].get(kind, {})
        lines.append(f"  {kind:20s} {n:4d}   recovery p50 {r.get('p50', math.nan):6.1f}s"
                     f"  p99 {r.get('p99', math.nan):6.1f}s")
    lines.append("requests per service (ok / failed):")
    for job, r in f["requests"].items():
        lines.append(f"  {job:20s} {r['ok']:7d} / {r['failed']}")
    d = f["drains"]
    lines += [f"job changes acknowledged: {f['job_changes_acknowledged']} (service rolls "
              f"started during a fault: {f['rolls_during_faults']}), dispatches "
              f"acknowledged: {f['dispatches']}, cron: {f['cron']}",
              f"drains: {d['started']} started, {d['drained']} completed (in "
              f"{', '.join(f'{x:g}' for x in d['seconds']) or '-'} s), "
              f"{d['leader_kills']} interrupted by a leader kill, "
              f"{d['failed_requests_during']} failed requests while one went on",
              f"lost tasks: {f['lost_tasks']}",
              f"duplicates after convergence: {f['duplicates_after_convergence']}",
              f"double cron fires: {f['double_cron_fires']}",
              f"lost acknowledged writes: {f['lost_acknowledged_writes']}"]
    ok = not f["violations"]
    if not ok:
        lines.append(f"FAILED (seed {meta.get('seed')}): {len(f['violations'])} violations")
        lines += [f"  {v}" for v in f["violations"][:50]]
        lines.append("fault history (replay with the same --seed):")
        lines += ["  " + x for x in fault_history(history)]
    else:
        lines.append("PASSED: every invariant held")
    return ok, "\n".join(lines)


def save(history: list[dict[str, Any]], path: Path) -> None:
    with open(path, "w") as f:
        for e in history:
            f.write(json.dumps(e) + "\n")


def load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
