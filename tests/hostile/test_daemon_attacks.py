"""Every attack of the hostile-input issue against real daemons on loopback: a
`helios solo`, and a `helios conductor` + `helios node` pair on a real ZooKeeper (the
attacks that address one actor run against whichever process holds it). Each test
asserts three things: the daemon lives, another client's `job ls` still answers, and the
attack's effect is refused.

Where the attack works on an unguarded piece, `tests/actors/test_hostile.py` shows it
(a bare msgspec decoder's RecursionError, a remote Stop ending an actor without a policy,
a dripped frame keeping a connection alive under the old liveness rule); run against
the code before this defence, each test here fails (see the issue's closing note).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.common import free_port, unique_name
from tests.hostile import attacks
from tests.integration.procs import Proc, eventually, helios, helios_json, write_job

pytestmark = pytest.mark.zookeeper

#: short enough for a test to watch a limit act; every other limit keeps its default
LIMITS = "frame_timeout=3,handshake_timeout=3"


@dataclass
class Target:
    """One daemon under attack: where to send the attack, which public actor it holds,
    and where another client asks `job ls`."""

    kind: str
    proc: Proc
    address: str
    actor: str
    conductor: str  # the address `job ls` goes to

    def job_ls(self) -> list[dict[str, Any]]:
        return helios_json("job", "ls", "--conductor", self.conductor, timeout=30)

    def assert_serving(self) -> None:
        """Alive, answering another client, and no actor crashed (a crash would be the
        attack reaching a handler, restarted by a supervisor)."""
        assert self.proc.alive(), self.proc.tail()
        assert isinstance(self.job_ls(), list)
        assert "crashed" not in self.log(), self.proc.tail()

    def log(self) -> str:
        return self.proc.log.read_text(errors="replace")

    def rss(self) -> int:
        return attacks.rss_bytes(self.proc.pid)


def _start(proc: Proc) -> Proc:
    os.environ["HELIOS_LIMITS"] = LIMITS
    try:
        return proc.start()
    finally:
        del os.environ["HELIOS_LIMITS"]


@pytest.fixture(scope="module")
def solo_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    tmp = tmp_path_factory.mktemp("hostile-solo")
    address = f"127.0.0.1:{free_port()}"
    proc = _start(Proc("solo", ["solo", "--listen", address, "--state-dir",
                                str(tmp / "state"), "--runtime", "process",
                                "--name", unique_name("solo")], tmp))
    try:
        t = Target("solo", proc, address, "conductor", address)
        eventually(lambda: t.job_ls() is not None, 60, "solo answering",
                   diagnostics=proc.tail)
        yield t
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def pair_targets(tmp_path_factory: pytest.TempPathFactory, zk_hosts: str
                 ) -> Iterator[tuple[Target, Target]]:
    from tests.fixtures.zookeeper import delete_root

    tmp = tmp_path_factory.mktemp("hostile-pair")
    zk = zk_hosts + "/" + unique_name("hostile")
    c_addr, n_addr = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    name = unique_name("n")
    procs = [_start(Proc("conductor", ["conductor", "--zk", zk, "--listen", c_addr,
                                       "--session-timeout", "4"], tmp)),
             _start(Proc("node", ["node", "--zk", zk, "--name", name, "--listen", n_addr,
                                  "--runtime", "process", "--state-dir", str(tmp / name),
                                  "--session-timeout", "4"], tmp))]
    try:
        c = Target("conductor", procs[0], c_addr, "conductor", c_addr)
        n = Target("node", procs[1], n_addr, "node", c_addr)
        eventually(lambda: [x for x in helios_json("nodes", "--conductor", c_addr)
                            if x["status"] == "up"], 60, "the node up",
                   diagnostics=lambda: procs[0].tail() + procs[1].tail())
        yield c, n
    finally:
        for p in reversed(procs):
            p.stop()
        delete_root(zk_hosts, zk.removeprefix(zk_hosts))


@pytest.fixture(params=["solo", "conductor", "node"])
def target(request: pytest.FixtureRequest) -> Target:
    if request.param == "solo":
        return request.getfixturevalue("solo_target")  # type: ignore[no-any-return]
    c, n = request.getfixturevalue("pair_targets")
    return c if request.param == "conductor" else n  # type: ignore[no-any-return]


@pytest.fixture(params=["solo", "conductor"])
def conductor_target(request: pytest.FixtureRequest) -> Target:
    if request.param == "solo":
        return request.getfixturevalue("solo_target")  # type: ignore[no-any-return]
    return request.getfixturevalue("pair_targets")[0]  # type: ignore[no-any-return]


@pytest.fixture(params=["solo", "node"])
def node_target(request: pytest.FixtureRequest) -> Target:
    if request.param == "solo":
        return request.getfixturevalue("solo_target")  # type: ignore[no-any-return]
    return request.getfixturevalue("pair_targets")[1]  # type: ignore[no-any-return]


def _frames_text(data: bytes | None) -> str:
    return (data or b"").decode("latin-1")


def test_a_deeply_nested_frame_closes_one_connection(target: Target) -> None:
    before = attacks.connect(target.address)
    before.sendall(attacks.nested_tell(100_000, before_hello=True))
    assert attacks.closed_by_peer(before) is not None  # a stranger's frame: cut off
    after = attacks.handshake(target.address)
    after.sendall(attacks.nested_tell(100_000))
    goodbye = attacks.closed_by_peer(after)
    assert "nested too deeply" in _frames_text(goodbye)
    target.assert_serving()


def test_a_large_frame_before_the_handshake_is_refused_on_its_header(target: Target) -> None:
    rss = target.rss()
    sock = attacks.connect(target.address)
    frame = attacks.empty_lists_frame()
    try:
        sock.sendall(frame[:1 << 20])
    except OSError:
        pass  # cut off mid-send: that is the point
    goodbye = attacks.closed_by_peer(sock)
    assert "exceeds the limit of 4096" in _frames_text(goodbye)
    assert target.rss() - rss < 16 << 20
    target.assert_serving()


@pytest.mark.parametrize("method", ["$call", "$stop", "$down", "", "leading"])
def test_system_and_private_methods_are_refused(target: Target, method: str) -> None:
    sock = attacks.handshake(target.address)
    reply = attacks.ask(sock, target.actor, method, None)
    # refused by the authorization table, which lists handlers, before any lookup
    assert reply["e"] == "forbidden" and "not in the authorization table" in reply["msg"]
    sock.sendall(attacks.frame({"k": "t", "to": target.actor, "m": method, "a": [None]}))
    sock.close()
    target.assert_serving()


@pytest.mark.parametrize("actor", ["conductor-sup", "conductor", "node"])
def test_a_wire_stop_or_kill_is_forbidden(target: Target, actor: str) -> None:
    sock = attacks.handshake(target.address)
    for i, kill in enumerate((False, True)):
        sock.sendall(attacks.frame({"k": "s", "id": 10 + i, "to": actor, "kill": kill}))
        (reply,) = attacks.read_frames(sock, 1)
        assert reply["e"] == "forbidden", reply
        assert "not allowed from another process" in reply["msg"]
    sock.close()
    time.sleep(0.5)  # time for a stop that got through to take effect: it must not
    target.assert_serving()


def test_internal_actors_are_unreachable(target: Target) -> None:
    sock = attacks.handshake(target.address)
    reply = attacks.ask(sock, "conductor-sup", "which_children")
    assert reply["e"] == "forbidden" and "internal" in reply["msg"]
    sock.close()
    target.assert_serving()


def test_a_peer_that_never_reads_its_replies_is_cut_off(target: Target) -> None:
    rss = target.rss()
    sock = attacks.handshake(target.address)
    sent = attacks.lookup_flood(sock, 1_000_000)
    assert attacks.closed_by_peer(sock, timeout=20) is not None
    assert sent < 1_000_000 or target.proc.alive()
    eventually(lambda: "peer does not read" in target.log(), 10, "the reason in the log")
    growth = target.rss() - rss
    assert growth < 64 << 20, f"RSS grew by {growth >> 20} MiB"
    target.assert_serving()


def test_dripped_partial_frames_are_cut_off_and_bounded(target: Target) -> None:
    rss = target.rss()
    socks = [attacks.drip_connection(target.address) for _ in range(30)]
    peak = target.rss()
    open_ = list(socks)
    deadline = time.monotonic() + 15  # frame_timeout is 3 s here
    while open_ and time.monotonic() < deadline:
        open_ = [s for s in open_ if attacks.drip(s)]
        peak = max(peak, target.rss())
        time.sleep(0.5)
    assert not open_, f"{len(open_)} dripping connections still open"
    assert peak - rss < 96 << 20, f"RSS grew by {(peak - rss) >> 20} MiB"
    for s in socks:
        s.close()
    target.assert_serving()


def test_many_strangers_that_never_finish_the_handshake(target: Target) -> None:
    socks = []
    for _ in range(200):
        s = attacks.connect(target.address)
        s.sendall(attacks.frame(attacks.hello())[:10])  # a Hello that never completes
        socks.append(s)
    target.assert_serving()  # while they hang
    assert all(attacks.closed_by_peer(s, timeout=15) is not None for s in socks)
    for s in socks:
        s.close()
    target.assert_serving()


def test_oversized_event_reasons_never_block_other_writes(conductor_target: Target,
                                                          tmp_path: Path) -> None:
    target = conductor_target
    job = unique_name("big")
    r = helios("job", "run", str(write_job(tmp_path / "j.json", {
        "name": job, "command": ["sleep", "300"], "grace": 0})),
        "--conductor", target.address)
    assert r.returncode == 0, r.stderr
    status = eventually(lambda: (lambda s: s if s["tasks"] and s["tasks"][0]["state"]
                                 == "running" else None)(
        helios_json("job", "status", job, "--conductor", target.address)), 60, "running")
    task = status["tasks"][0]
    sock = attacks.handshake(target.address)
    huge = [{"id": task["id"], "node": task["node"], "job": job, "state": state,
             "reason": "x" * 600_000, "updated": time.time() + i}
            for i, state in enumerate(("failed", "running"))]
    reply = eventually(lambda: (lambda r: r if r.get("t") != "NotLeader" else None)(
        attacks.ask(sock, "conductor", "task_events", task["node"], huge)), 30,
        "a leader to take the events")  # a loaded machine may cost a 4 s session
    assert not reply.get("e"), reply
    sock.close()
    # The next write, and a new job, go through; history keeps the events, clipped.
    other = unique_name("after")
    r = helios("job", "run", str(write_job(tmp_path / "k.json", {
        "name": other, "command": ["sleep", "300"], "grace": 0})),
        "--conductor", target.address)
    assert r.returncode == 0, r.stderr
    hist = eventually(lambda: [e for e in helios_json(
        "job", "history", job, "--conductor", target.address) if len(e["reason"]) > 900],
        30, "the clipped events in history")
    assert all(len(e["reason"]) < 2000 for e in hist)
    for name in (job, other):
        helios("job", "rm", name, "--conductor", target.address)
    target.assert_serving()


def test_a_forged_epoch_is_refused_and_moves_nothing(node_target: Target,
                                                     tmp_path: Path) -> None:
    target = node_target
    at = target.conductor
    job = unique_name("epoch")
    helios("job", "run", str(write_job(tmp_path / "j.json", {
        "name": job, "command": ["sleep", "300"], "grace": 0})), "--conductor", at)
    running = eventually(lambda: (lambda s: s if s["tasks"] and s["tasks"][0]["state"]
                                  == "running" else None)(
        helios_json("job", "status", job, "--conductor", at)), 60, "running")
    leader = helios_json("leader", "--conductor", at)
    sock = attacks.handshake(target.address)
    reply = attacks.ask(sock, "node", "assign", 2**63 - 1, 0, [])
    assert reply["e"] == "remote" and reply["t"] == "UnverifiedEpoch", reply
    assert "newer than the store's epoch" in reply["msg"]
    sock.close()
    time.sleep(2)  # time for a believed epoch to act (stop the task): nothing may change
    after = helios_json("job", "status", job, "--conductor", at)
    assert after["tasks"][0]["id"] == running["tasks"][0]["id"]
    assert after["tasks"][0]["state"] == "running"
    assert helios_json("leader", "--conductor", at)["epoch"] == leader["epoch"]
    helios("job", "rm", job, "--conductor", at)
    target.assert_serving()


def test_limits_come_from_the_environment_and_bad_ones_are_one_line(tmp_path: Path) -> None:
    r = helios("solo", "--listen", f"127.0.0.1:{free_port()}", "--state-dir",
               str(tmp_path / "s"), "--runtime", "process", timeout=30,
               env={"HELIOS_LIMITS": "max_frame=banana"})
    assert r.returncode != 0
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "max_frame must be a int" in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    json.dumps(lines)  # printable
