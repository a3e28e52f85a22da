"""The network between Helios's parts is authenticated: with HELIOS_CLUSTER_SECRET set,
a client must prove the same secret (mutual HMAC in the actor handshake) or is refused
with a one-line error, and the cluster keeps serving those who hold it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.common import free_port, unique_name
from tests.integration.procs import HELIOS, Proc, eventually, processes


def cli(addr: str, secret: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELIOS_")}
    env["HELIOS_CONNECT_WAIT"] = "0"
    if secret is not None:
        env["HELIOS_CLUSTER_SECRET"] = secret
    return subprocess.run([*HELIOS, *args, "--conductor", addr], capture_output=True,
                          text=True, timeout=60, env=env)


def test_solo_with_a_cluster_secret_refuses_clients_without_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    addr = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("HELIOS_CLUSTER_SECRET", "correct horse battery staple")
    with processes() as procs:
        solo = Proc("solo", ["solo", "--runtime", "process", "--listen", addr,
                             "--state-dir", str(tmp_path / "state"),
                             "--name", unique_name("secure")], tmp_path).start()
        procs.append(solo)
        eventually(lambda: cli(addr, "correct horse battery staple", "nodes", "--json")
                   .returncode == 0, 30, "solo up", diagnostics=solo.tail)
        nodes = json.loads(cli(addr, "correct horse battery staple", "nodes", "--json").stdout)
        assert len(nodes) == 1 and nodes[0]["status"] == "up"
        for secret in (None, "wrong"):
            r = cli(addr, secret, "nodes", "--json")
            assert r.returncode != 0 and r.stdout == ""
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
            assert "Traceback" not in r.stderr
        # and the cluster still serves those who hold the secret
        assert cli(addr, "correct horse battery staple", "job", "ls", "--json").returncode == 0
