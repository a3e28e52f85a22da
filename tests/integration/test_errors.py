"""Errors a user meets first, each one line on stderr that names the address or the fix,
from real `helios` processes: a malformed or wrong `--conductor`, a node's address given
as a conductor's, a busy port, ZooKeeper unreachable (said once, then quiet retries, and
SIGTERM still stops the daemon at once). The times are printed by
`bench/errors_bench.py`; here every wait is only a bound."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tests.fixtures.common import free_port, unique_name
from tests.integration.procs import Proc, eventually, helios


def one_line(r) -> str:  # type: ignore[no-untyped-def]
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def test_malformed_and_wrong_conductor_addresses() -> None:
    line = one_line(helios("job", "ls", "--conductor", "notanaddress", timeout=10))
    assert "--conductor 'notanaddress' is not HOST:PORT" in line
    port = free_port()
    line = one_line(helios("job", "ls", "--conductor", f"127.0.0.1:{port}", timeout=10))
    assert f"cannot reach the conductor at 127.0.0.1:{port}" in line


def test_busy_port_names_the_address(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        addr = f"127.0.0.1:{s.getsockname()[1]}"
        line = one_line(helios("solo", "--runtime", "process", "--listen", addr,
                               "--state-dir", str(tmp_path / "s"), timeout=30))
    assert line == f"error: cannot listen on {addr}: address already in use"


@pytest.mark.slow
def test_zookeeper_unreachable_said_once_and_sigterm_is_quick(tmp_path: Path) -> None:
    zk = f"127.0.0.1:{free_port()}"  # nothing listens there
    name = unique_name("n")
    node_addr = f"127.0.0.1:{free_port()}"
    c = Proc("c", ["conductor", "--zk", zk, "--listen", f"127.0.0.1:{free_port()}"],
             tmp_path).start()
    n = Proc("n", ["node", "--zk", zk, "--name", name, "--runtime", "process",
                   "--listen", node_addr, "--state-dir", str(tmp_path / name)],
             tmp_path).start()
    try:
        for p in (c, n):
            eventually(lambda p=p: "ZooKeeper unreachable at " + zk in p.log.read_text(),
                       15, "the unreachable line", diagnostics=p.tail)
        eventually(lambda: helios("job", "ls", "--conductor", node_addr,
                                  timeout=10).stderr.startswith("error: no conductor"),
                   15, "the node up")
        line = one_line(helios("job", "ls", "--conductor", node_addr, timeout=10))
        assert f"no conductor at {node_addr}" in line and "node" in line
        time.sleep(3)  # several more attempts: still one line each, no kazoo noise
        for p in (c, n):
            text = p.log.read_text()
            assert text.count("ZooKeeper unreachable") == 1, text
            assert "kazoo" not in text and "Traceback" not in text, text
    finally:
        for p in (c, n):
            p.stop(timeout=5)  # SIGTERM; a stop that hangs would SIGKILL and fail below
    assert c.proc is not None and n.proc is not None
    assert c.proc.returncode == 0 and n.proc.returncode == 0
