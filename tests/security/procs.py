"""A `helios solo` with mutual TLS, and clients holding various identities, as real
processes (started the way a user does, stopped by PID)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fixtures.common import free_port
from tests.integration.procs import HELIOS, Proc, eventually, processes

from .conftest import PKI


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test's environment without any Helios identity, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HELIOS_TLS", "HELIOS_TOKEN", "HELIOS_CLUSTER_SECRET",
                                "HELIOS_CONDUCTOR", "HELIOS_ZK"))}
    env["HELIOS_CONNECT_WAIT"] = "0"
    return {**env, **(extra or {})}


@dataclass
class SecureSolo:
    pki: PKI
    addr: str
    http: str
    tmp: Path
    proc: Proc
    tokens: dict[str, str] = field(default_factory=dict)

    def cli(self, *args: str, token: str | None = None, identity: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`helios ARGS --conductor ADDR` as a person with a cli certificate (or
        `identity`: other HELIOS_TLS_* or none) and `token` (a name in `tokens`)."""
        env = clean_env(self.pki.env("cli", "alice") if identity is None else identity)
        extra: list[str] = []
        if token is not None:
            file = self.tmp / f"{token}.token"
            file.write_text(self.tokens.get(token, token) + "\n")
            extra = ["--token-file", str(file)]
        return subprocess.run([*HELIOS, *args, "--conductor", self.addr, *extra],
                              capture_output=True, text=True, timeout=timeout, env=env)

    def json(self, *args: str, token: str | None = None) -> Any:
        r = self.cli(*args, "--json", token=token)
        assert r.returncode == 0, r.stderr + self.proc.tail()
        return json.loads(r.stdout)

    def bootstrap(self) -> None:
        """ACLs on; tokens "mgmt" (management), "ops" (operator), "ro" (reader)."""
        self.tokens["mgmt"] = self.json("acl", "bootstrap")["secret"]
        for name, role in (("ops", "operator"), ("ro", "reader")):
            self.tokens[name] = self.json("acl", "token", "create", "--name", name,
                                          "--role", role, token="mgmt")["secret"]


def one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode != 0 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


@contextmanager
def secure_solo(tmp: Path, pki: PKI, name: str = "solo") -> Iterator[SecureSolo]:
    addr, http = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    with processes() as procs:
        proc = Proc(name, ["solo", "--runtime", "process", "--listen", addr, "--http", http,
                           "--state-dir", str(tmp / f"{name}-state"), "--name", name],
                    tmp, env=clean_env(pki.env("conductor", "solo"))).start()
        procs.append(proc)
        solo = SecureSolo(pki, addr, http, tmp, proc)
        eventually(lambda: solo.cli("nodes", "--json").returncode == 0, 30, "solo up",
                   diagnostics=proc.tail)
        yield solo


def job_file(tmp: Path, name: str) -> Path:
    path = tmp / f"{name}.json"
    path.write_text(json.dumps({"name": name, "kind": "service", "count": 1,
                                "command": ["sleep", "600"],
                                "resources": {"cpus": 0.1, "memory": "16M"}}))
    return path
