"""A cluster PKI made with Helios's own tooling (`helios.security.tls`), shared by the
security tests: a CA, certificates for conductors, nodes and people, and the bad ones an
attacker would bring (another CA's, an expired one)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest

import actors
from helios.security import tls


@dataclass
class PKI:
    ca_dir: Path
    out: Path
    other_ca_dir: Path

    @property
    def ca(self) -> str:
        return str(self.ca_dir / tls.CA_CERT)

    def files(self, role: str, name: str) -> tuple[str, str]:
        cert, key = tls.cert_paths(role, name, self.out)
        if not cert.exists():
            tls.create_cert(role, name, ca_dir=self.ca_dir, out_dir=self.out)
        return str(cert), str(key)

    def env(self, role: str, name: str) -> dict[str, str]:
        """HELIOS_TLS_* for a process holding `role` `name`."""
        cert, key = self.files(role, name)
        return {"HELIOS_TLS_CERT": cert, "HELIOS_TLS_KEY": key, "HELIOS_TLS_CA": self.ca}

    def config(self, role: str, name: str) -> actors.TLSConfig:
        cert, key = self.files(role, name)
        return actors.tls_config(cert, key, self.ca)

    def foreign(self, role: str, name: str) -> actors.TLSConfig:
        """A certificate of the right shape from another CA (trusting that CA only)."""
        out = self.out / "foreign"
        cert, key = tls.cert_paths(role, name, out)
        if not cert.exists():
            tls.create_cert(role, name, ca_dir=self.other_ca_dir, out_dir=out)
        return actors.tls_config(str(cert), str(key), str(self.other_ca_dir / tls.CA_CERT))

    def foreign_env(self, role: str, name: str) -> dict[str, str]:
        self.foreign(role, name)
        cert, key = tls.cert_paths(role, name, self.out / "foreign")
        return {"HELIOS_TLS_CERT": str(cert), "HELIOS_TLS_KEY": str(key),
                "HELIOS_TLS_CA": str(self.other_ca_dir / tls.CA_CERT)}

    def expired_env(self, role: str, name: str) -> dict[str, str]:
        """A certificate of this CA that expired yesterday."""
        out = self.out / "expired"
        cert, key = tls.cert_paths(role, name, out)
        if not cert.exists():
            tls.create_cert(role, name, ca_dir=self.ca_dir, out_dir=out, days=1,
                            not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=2))
        return {"HELIOS_TLS_CERT": str(cert), "HELIOS_TLS_KEY": str(key),
                "HELIOS_TLS_CA": self.ca}


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    base = tmp_path_factory.mktemp("pki")
    tls.create_ca(base / "ca")
    tls.create_ca(base / "other-ca")
    return PKI(base / "ca", base / "certs", base / "other-ca")


def kill_process_tasks(root: Path) -> None:
    """Stop what the process runtime started under `root` (it outlives its node daemon
    on purpose: the next daemon adopts it). Each task's command PID is in its
    `exit_code.pid`; only a process whose parent is that task's wrapper is killed."""
    import os
    import signal

    for pid_file in root.rglob("exit_code.pid"):
        try:
            pid = int(pid_file.read_text().split()[0])
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{ppid}/cmdline", "rb") as f:
                wrapper = f.read()
        except (OSError, ValueError, IndexError):
            continue
        if str(pid_file.with_suffix("")).encode() in wrapper:
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(autouse=True)
def _no_tasks_left(tmp_path: Path) -> object:
    yield
    kill_process_tasks(tmp_path)
