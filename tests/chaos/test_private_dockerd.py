"""The soak's own Docker daemon (tests/chaos/cluster.py `PrivateDockerd`): it runs the
busybox test image with a port published on the host's loopback, a restart (the
`docker-restart` fault) stops its containers and brings it back, and stopping it leaves
nothing behind; the shared daemon is never touched (same PID before and after)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.chaos.cluster import PrivateDockerd, _pid_alive
from tests.fixtures.common import free_port, service_missing
from tests.fixtures.docker import ensure_test_image


def _get(port: int, timeout: float = 30.0) -> bytes:
    """GET / on 127.0.0.1:port, retried until it answers (bounded)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
                if data:
                    return data
        except OSError as e:
            last = e
        time.sleep(0.3)
    raise AssertionError(f"127.0.0.1:{port} never answered: {last}")


def _shared_dockerd_pid() -> int | None:
    """The machine's daemon, by its default pidfile (other soaks run daemons too)."""
    try:
        return int(Path("/var/run/docker.pid").read_text().strip())
    except (OSError, ValueError):
        return None


@pytest.mark.slow
@pytest.mark.docker
def test_the_soaks_own_dockerd_serves_restarts_and_leaves_nothing(tmp_path: Path,
                                                                  docker_test_image: str
                                                                  ) -> None:
    if os.geteuid() != 0 or not shutil.which("dockerd"):
        service_missing("root and dockerd (the soak starts a Docker daemon of its own)")
    shared = _shared_dockerd_pid()
    d = PrivateDockerd(tmp_path, os.getpid(), subnet=251)
    image = ensure_test_image()
    try:
        d.start(image)
        assert d.proc is not None and d.proc.pid != shared
        port = free_port()
        name = f"pdt-{os.getpid()}"
        d.cli("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080", image, "sh",
              "-c", "mkdir -p /w && echo own > /w/index.html && exec httpd -f -p 8080 -h /w")
        assert b"own" in _get(port)
        # the shared daemon does not know the container
        assert subprocess.run(["docker", "inspect", name], capture_output=True,
                              check=False).returncode != 0
        first = d.proc.pid
        d.restart()
        assert d.proc.pid != first and not _pid_alive(first)
        state = d.cli("inspect", "-f", "{{.State.Running}}", name).stdout.strip()
        assert state == b"false"  # no live-restore: a restart stops its containers
        d.cli("start", name)
        assert b"own" in _get(port)
        last = d.proc.pid
    finally:
        d.remove_containers("io.helios.test=none-such")  # nothing matches: no error
        d.cli("rm", "-f", f"pdt-{os.getpid()}", check=False)
        d.stop()
    assert not _pid_alive(last)
    assert not d.pidfile.exists() and not d.sock.exists() and not d.exec_root.exists()
    assert not d.data_root.exists()
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                           check=True).stdout
    assert f"{d.bridge}:" not in links and f"{d.bridge}@" not in links
    assert _shared_dockerd_pid() == shared
