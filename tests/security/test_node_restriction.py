"""Node restriction on a real cluster (`helios conductor`, two `helios node`, real
ZooKeeper, the process runtime): node n1's certificate can neither report for node n2's
task nor make n2 obey a forged assignment; and a peer announcing n2's URL receives
nothing the conductor sends n2.

Each attack is shown first against the same cluster without TLS (the defence off: no
identities, every peer a daemon), where it works, then with mutual TLS, where it is
refused and changes nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import trio

import actors
from helios.spec import validate
from tests.fixtures.common import free_port
from tests.integration.procs import Proc, eventually, processes

from .conftest import PKI
from .procs import clean_env

pytestmark = [pytest.mark.zookeeper, pytest.mark.slow]


class Cluster:
    def __init__(self, zk: str, tmp: Path, pki: PKI | None) -> None:
        self.zk, self.tmp, self.pki = zk, tmp, pki
        self.procs: list[Proc] = []
        self.conductor = f"127.0.0.1:{free_port()}"

    def env(self, role: str, name: str) -> dict[str, str]:
        return clean_env(self.pki.env(role, name) if self.pki else {})

    def start(self) -> None:
        self.procs.append(Proc("c1", ["conductor", "--zk", self.zk, "--listen",
                                      self.conductor, "--name", "c1",
                                      "--session-timeout", "2", "--failover-grace", "0.5"],
                               self.tmp, env=self.env("conductor", "c1")).start())
        for name, zone in (("n1", "a"), ("n2", "b")):
            self.procs.append(Proc(name, [
                "node", "--zk", self.zk, "--name", name, "--runtime", "process",
                "--state-dir", str(self.tmp / name), "--label", f"zone={zone}",
                "--cpus", "2", "--memory", "1G", "--session-timeout", "2"],
                self.tmp, env=self.env("node", name)).start())

    def cli(self, *args: str) -> Any:
        import subprocess

        from tests.integration.procs import HELIOS

        r = subprocess.run([*HELIOS, *args, "--json", "--conductor", self.conductor],
                           capture_output=True, text=True, timeout=60,
                           env=self.env("cli", "admin"))
        assert r.returncode == 0, r.stderr + self.diag()
        return json.loads(r.stdout)

    def diag(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.tail(30)}" for p in self.procs)

    def attacker(self) -> Any:
        """The actor system an attacker holding node n1's certificate opens."""
        tls = self.pki.config("node", "n1") if self.pki else None
        return actors.open_system("n1", tls=tls)


def _job(tmp: Path, name: str, zone: str, marker: str | None = None) -> dict[str, Any]:
    # the marker goes in the task's working directory: a root node runs process tasks as
    # nobody, who may write there and nowhere in the test's (root-only) tmp_path
    command = ["sleep", "600"] if marker is None else \
        ["sh", "-c", f"touch {marker}; sleep 600"]
    return {"name": name, "kind": "service", "count": 1, "command": command,
            "constraints": {"zone": zone}, "resources": {"cpus": 0.1, "memory": "16M"},
            "restart": {"policy": "never"}}


@pytest.mark.parametrize("defended", [False, True], ids=["without-tls", "with-tls"])
def test_a_node_cannot_report_for_another_or_make_it_obey_a_forged_assignment(
        zk_hosts: str, zk_root: str, tmp_path: Path, pki: PKI, defended: bool) -> None:
    c = Cluster(f"{zk_hosts}{zk_root}", tmp_path, pki if defended else None)
    with processes() as procs:
        c.start()
        procs.extend(c.procs)
        eventually(lambda: sum(n["status"] == "up" for n in c.cli("nodes")) == 2, 60,
                   "2 nodes up", diagnostics=c.diag)
        spec = tmp_path / "victim.json"
        spec.write_text(json.dumps(_job(tmp_path, "victim", "b")))
        c.cli("job", "run", str(spec))

        def running() -> Any:
            tasks = c.cli("job", "status", "victim")["tasks"]
            return tasks[0] if tasks and tasks[0]["state"] == "running" else None

        task = eventually(running, 60, "the victim task running on n2", diagnostics=c.diag)
        assert task["node"] == "n2"
        n2 = next(n for n in c.cli("nodes") if n["name"] == "n2")
        epoch = c.cli("leader")["epoch"]
        marker = "pwned"

        def marked() -> bool:
            return any((tmp_path / "n2").rglob(marker))
        forged = {"id": "evil-0001", "job": "evil", "version": 1, "node": "n2",
                  "spec": validate(_job(tmp_path, "evil", "b", marker)).to_dict()}
        failure = {"id": task["id"], "job": "victim", "state": "failed",
                   "reason": "forged by n1", "updated": time.time() + 5}
        outcome: dict[str, Any] = {}

        hijacked: list[Any] = []

        class FakeNode(actors.Actor):
            @actors.handler
            async def assign(self, *args: Any) -> dict[str, Any]:
                hijacked.append(args)
                return {"accepted": True}

        async def attack() -> None:
            async with c.attacker() as evil, c.attacker() as hijacker:
                # it announces n2's URL: what the conductor sends n2 must still reach n2
                hijacker.url = f"tcp://{n2['address']}"
                await hijacker.spawn(FakeNode, name="node")
                await hijacker.lookup(f"tcp://{c.conductor}/conductor")
                # the conductor now has work for n2, while the hijacker is connected
                await trio.to_thread.run_sync(lambda: c.cli("job", "run", str(second)))
                await trio.to_thread.run_sync(lambda: eventually(
                    lambda: any(t["state"] == "running" for t in
                                c.cli("job", "status", "second")["tasks"]), 60,
                    "the second job running on n2", diagnostics=c.diag))
                conductor = evil.ref(f"tcp://{c.conductor}/conductor")
                node = evil.ref(f"tcp://{n2['address']}/node")
                for what, ref, args in (
                        ("report as n2", conductor, ("task_events", "n2", [failure])),
                        ("report as n1", conductor, ("task_events", "n1", [failure])),
                        ("forged assign", node, ("assign", epoch, 10**9, [forged]))):
                    try:
                        outcome[what] = await ref.ask(*args, timeout=10)
                    except actors.RemoteError as e:
                        outcome[what] = e

        second = tmp_path / "second.json"
        second.write_text(json.dumps(_job(tmp_path, "second", "b")))
        trio.run(attack)
        assert not hijacked  # routing never follows an announced URL (with or without TLS)
        tasks = c.cli("job", "status", "second")["tasks"]
        # (undefended, the forged assign also stops n2's copy, and the slot may be
        # waiting out its reschedule delay with no task at all)
        assert all(t["node"] == "n2" for t in tasks), tasks
        if defended:
            assert tasks and tasks[0]["node"] == "n2"
        if not defended:
            # the attacks work: the forged failure fails the real task, and n2 runs the
            # forged assignment's command
            assert not isinstance(outcome["report as n2"], Exception), outcome
            assert not isinstance(outcome["forged assign"], Exception), outcome
            eventually(marked, 30, "n2 runs the forged command",
                       diagnostics=c.diag)
            # (its slot may then wait out its reschedule delay with no task at all)
            eventually(lambda: not any(t["id"] == task["id"] and t["state"] == "running"
                                       for t in c.cli("job", "status", "victim")["tasks"]),
                       30, "the victim task failed by the forged report")
            return
        for what in ("report as n2", "forged assign"):
            assert isinstance(outcome[what], actors.Forbidden), (what, outcome)
        assert "only for itself" in str(outcome["report as n2"])
        assert "needs a conductor certificate" in str(outcome["forged assign"])
        # about a task not its own, a node is not heard (dropped by the conductor)
        assert outcome["report as n1"] == 0  # reports taken: none
        time.sleep(2)  # time for a report that was heard to act: nothing may change
        after = c.cli("job", "status", "victim")["tasks"]
        assert [(t["id"], t["node"], t["state"]) for t in after] == \
            [(task["id"], "n2", "running")]
        assert not marked()
        log = (tmp_path / "c1.log").read_text()
        assert "not assigned to it, ignored" in log
