"""Secrets end to end, as real processes: `helios conductor` and `helios node` on a real
ZooKeeper with real Docker (and the process runtime), the CLI as a user runs it.

A secret's value must reach the task and nothing else: every znode under the test's
root, the conductor's and the node's DEBUG logs, the CLI's JSON output and the node's
state directory are scanned for it."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.common import free_port, unique_name
from tests.fixtures.zookeeper import znode_data
from tests.integration.procs import Proc, eventually, helios, processes, write_job

from .conftest import PKI
from .procs import one_line_error, secure_solo

pytestmark = [pytest.mark.zookeeper, pytest.mark.slow]


def conductor(zk: str, tmp: Path, key: Path) -> Proc:
    return Proc("conductor", ["-v", "conductor", "--zk", zk, "--listen",
                              f"127.0.0.1:{free_port()}", "--name", unique_name("c"),
                              "--session-timeout", "2", "--failover-grace", "0.5",
                              "--secret-key-file", str(key)], tmp).start()


def node(zk: str, tmp: Path, name: str, runtime: str, labels: dict[str, str]) -> Proc:
    args = ["-v", "node", "--zk", zk, "--name", name, "--cpus", "2", "--memory", "1G",
            "--runtime", runtime, "--state-dir", str(tmp / name), "--session-timeout", "2"]
    for k, v in labels.items():
        args += ["--container-label", f"{k}={v}"]
    return Proc("node", args, tmp).start()


def cli_json(*args: str) -> Any:
    r = helios(*args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), r.stdout


def set_secret(tmp: Path, zk: str, name: str, value: str) -> dict[str, Any]:
    """`helios secret set NAME --from-file F`; F is removed again (it is no Helios file)."""
    f = tmp / "value.txt"
    f.write_text(value + "\n")
    try:
        return cli_json("secret", "set", name, "--from-file", str(f), "--zk", zk)[0]
    finally:
        f.unlink()


def files_under(*roots: Path) -> Iterator[tuple[Path, bytes]]:
    for root in roots:
        for dirpath, _dirs, names in os.walk(root):
            for n in names:
                p = Path(dirpath, n)
                if p.is_file() and not p.is_symlink():
                    yield p, p.read_bytes()


def container_env(job: str, labels: dict[str, str]) -> list[list[str]]:
    """The Env of every running container of `job` (docker inspect)."""
    args = ["docker", "ps", "-q", "--filter", f"label=io.helios.job={job}"]
    for k, v in labels.items():
        args += ["--filter", f"label={k}={v}"]
    ids = subprocess.run(args, capture_output=True, text=True, timeout=30,
                         check=True).stdout.split()
    if not ids:
        return []
    out = subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    return [c["Config"]["Env"] or [] for c in json.loads(out)]


@pytest.mark.docker
def test_a_secret_reaches_the_container_and_appears_nowhere_else(
        zk_hosts: str, zk_root: str, tmp_path: Path, docker_test_image: str,
        docker_labels: dict[str, str]) -> None:
    zk = f"{zk_hosts}{zk_root}"
    key = tmp_path / "keys" / "secret.key"
    key.parent.mkdir()
    assert helios("secret", "keygen", str(key)).returncode == 0
    assert key.stat().st_mode & 0o777 == 0o600
    values = ["first-" + secrets.token_hex(12), "second-" + secrets.token_hex(12)]
    job, name = unique_name("db"), unique_name("n")
    spec = {"name": job, "kind": "service", "image": docker_test_image,
            "command": ["sleep", "600"], "resources": {"cpus": 0.1, "memory": "16M"},
            "env": {"PLAIN": "visible", "DB_PASSWORD": {"secret": "db-password"}},
            "grace": "1s"}
    f = write_job(tmp_path / "job.json", spec)
    outputs: list[str] = []
    with processes() as procs:
        procs.append(conductor(zk, tmp_path, key))
        procs.append(node(zk, tmp_path, name, "docker", docker_labels))
        eventually(lambda: any(n["status"] == "up" for n in cli_json("nodes", "--zk", zk)[0]),
                   60, "the node up", diagnostics=lambda: procs[0].tail() + procs[1].tail())

        # a job naming an unknown secret is refused, naming it
        line = one_line_error(helios("job", "run", str(f), "--zk", zk))
        assert "'db-password'" in line and "helios secret set" in line, line

        out = set_secret(tmp_path, zk, "db-password", values[0])
        assert out["name"] == "db-password" and out["rolled"] == []
        r = helios("job", "run", str(f), "--wait", "--timeout", "120", "--zk", zk,
                   timeout=150)
        assert r.returncode == 0, r.stderr + procs[1].tail()
        outputs.append(r.stdout + r.stderr)
        envs = container_env(job, docker_labels)
        assert len(envs) == 1 and f"DB_PASSWORD={values[0]}" in envs[0], envs
        assert "PLAIN=visible" in envs[0]

        # changing the secret rolls the job onto the new value
        out = set_secret(tmp_path, zk, "db-password", values[1])
        assert out["changed"] is True and out["rolled"] == [job], out
        eventually(lambda: [e for e in container_env(job, docker_labels)
                            if f"DB_PASSWORD={values[1]}" in e]
                   and len(container_env(job, docker_labels)) == 1, 120,
                   "the job rolled onto the new value", diagnostics=procs[1].tail)
        status, raw = cli_json("job", "status", job, "--zk", zk)
        assert status["version"] == 2, status
        outputs.append(raw)
        for args in (("job", "inspect", job), ("job", "history", job),
                     ("job", "versions", job), ("job", "ls"), ("secret", "ls")):
            outputs.append(cli_json(*args, "--zk", zk)[1])
        assert [s["name"] for s in json.loads(outputs[-1])] == ["db-password"]
        events = helios("events", "--json", "--zk", zk)  # one JSON document a line
        assert events.returncode == 0 and '"submitted"' in events.stdout, events.stderr
        outputs.append(events.stdout)
        # a secret in use cannot be removed
        assert "used by job" in one_line_error(helios("secret", "rm", "db-password",
                                                      "--zk", zk))
        held = znode_data(zk_hosts, zk_root)
    logs = [(p.log, p.log.read_bytes()) for p in procs]  # after they stopped: all flushed

    assert any(b"db-password" in data for _, data in held)  # the scan sees the references
    assert any(b"DEBUG" in data for _, data in logs)  # the daemons logged at DEBUG
    for value in values:
        v = value.encode()
        assert not [p for p, data in held if v in data], "a value is in ZooKeeper"
        assert not [str(p) for p, data in logs if v in data], "a value is in a log"
        assert not [o for o in outputs if value in o], "a value is in CLI output"
        assert not [str(p) for p, data in files_under(tmp_path / name) if v in data], \
            "a value is in the node's state directory"


def test_a_root_node_runs_process_tasks_as_nobody_with_the_secret_in_memory_only(
        zk_hosts: str, zk_root: str, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test needs root (the node daemon switches users only as root)")
    zk = f"{zk_hosts}{zk_root}"
    key = tmp_path / "secret.key"
    assert helios("secret", "keygen", str(key)).returncode == 0
    value = "proc-" + secrets.token_hex(12)
    job, name = unique_name("p"), unique_name("n")
    f = write_job(tmp_path / "job.json", {
        "name": job, "kind": "service", "resources": {"cpus": 0.1, "memory": "16M"},
        "command": ["sh", "-c", 'id -u; printf %s "$DB_PASSWORD" | sha256sum; sleep 600'],
        "env": {"DB_PASSWORD": {"secret": "db-password"}}, "grace": "1s"})
    with processes() as procs:
        procs.append(conductor(zk, tmp_path, key))
        procs.append(node(zk, tmp_path, name, "process", {}))
        eventually(lambda: any(n["status"] == "up" for n in cli_json("nodes", "--zk", zk)[0]),
                   60, "the node up", diagnostics=lambda: procs[1].tail())
        set_secret(tmp_path, zk, "db-password", value)
        r = helios("job", "run", str(f), "--wait", "--timeout", "60", "--zk", zk, timeout=90)
        assert r.returncode == 0, r.stderr + procs[1].tail()

        def output() -> str | None:
            out = helios("job", "logs", job, "--zk", zk).stdout
            return out if "-" in out and len(out.split()) >= 3 else None

        text = eventually(output, 30, "the task's output")
        lines = text.split()
        assert lines[0] == "65534", text  # nobody, not root
        assert lines[1] == hashlib.sha256(value.encode()).hexdigest(), text
        records = list((tmp_path / name).rglob("record.json"))
        assert records and all(r.stat().st_mode & 0o777 == 0o600 for r in records)
        assert all("DB_PASSWORD" not in json.loads(r.read_text())["env"] for r in records)
        assert not [str(p) for p, data in files_under(tmp_path / name)
                    if value.encode() in data]
    assert not [p.name for p in procs if value.encode() in p.log.read_bytes()]


def test_a_reader_cannot_set_or_list_secrets(tmp_path: Path, pki: PKI) -> None:
    with secure_solo(tmp_path, pki) as solo:
        solo.bootstrap()
        line = one_line_error(solo.cli("secret", "set", "x", "--value", "v", token="ro"))
        assert "forbidden" in line and "secret_set" in line and "operator" in line, line
        assert "forbidden" in one_line_error(solo.cli("secret", "ls", token="ro"))
        assert solo.cli("secret", "set", "x", "--value", "v", token="ops").returncode == 0
        assert [s["name"] for s in solo.json("secret", "ls", token="ops")] == ["x"]
        # rewrapping (after a key rotation) is for management
        assert "forbidden" in one_line_error(solo.cli("secret", "rewrap", token="ops"))
        assert solo.json("secret", "rewrap", token="mgmt") == {"key": "k1", "rewrapped": []}
        # solo made its own key file, 0600, with zero configuration
        key = tmp_path / "solo-state" / "secret.key"
        assert key.stat().st_mode & 0o777 == 0o600


def test_a_node_says_its_runtime_explicitly() -> None:
    r = helios("node", "--zk", "127.0.0.1:1", "--name", "n1", "--runtime", "auto")
    line = one_line_error(r)
    assert "--runtime process" in line and "helios solo" in line, line
