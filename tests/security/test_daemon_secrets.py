"""A daemon's secret is not where its tasks can read it, and its files are its own."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.fixtures.common import free_port, unique_name
from tests.integration.procs import Proc, eventually, helios, helios_json, write_job

#: the attack: a task searches every process's environment for the secret
SEARCH = ["sh", "-c", "n=0; for f in /proc/[0-9]*/environ; do "
          "tr '\\0' '\\n' < $f 2>/dev/null | grep -q \"^HELIOS_CLUSTER_SECRET=$WANT\" "
          "&& n=$((n+1)); done; echo found=$n; sleep 30"]


def _found(address: str, job: str) -> str | None:
    logs = helios("job", "logs", job, "--conductor", address, timeout=30)
    return next((line for line in logs.stdout.splitlines() if line.startswith("found=")),
                None)


@pytest.mark.parametrize("how", ["file", "variable"])
def test_a_task_cannot_find_the_cluster_secret_given_in_a_file(tmp_path: Path,
                                                             how: str) -> None:
    secret = unique_name("s3cret-value")
    env = {"HELIOS_HTTP": "off"}
    if how == "file":
        f = tmp_path / "secret"
        f.write_text(secret + "\n")
        f.chmod(0o600)
        env["HELIOS_CLUSTER_SECRET_FILE"] = str(f)
    else:
        env["HELIOS_CLUSTER_SECRET"] = secret
    address = f"127.0.0.1:{free_port()}"
    state = tmp_path / "state"
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        proc = Proc("solo", ["solo", "--listen", address, "--state-dir", str(state),
                             "--runtime", "process", "--name", unique_name("solo")],
                    tmp_path).start()
        try:
            eventually(lambda: helios_json("job", "ls", "--conductor", address) is not None,
                       60, "solo up", diagnostics=proc.tail)
            job = unique_name("snoop")
            r = helios("job", "run", str(write_job(tmp_path / "j.json", {
                "name": job, "command": SEARCH, "env": {"WANT": secret}, "grace": 0})),
                "--conductor", address)
            assert r.returncode == 0, r.stderr
            line = eventually(lambda: _found(address, job), 60, "the task's answer")
            if how == "file":
                assert line == "found=0"
            else:  # without the defence the attack works: the daemon's environment has it
                assert line != "found=0"
            # every file that may hold a secret is the daemon's alone
            for path in [state / "helios.db", *state.rglob("record.json")]:
                assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
            helios("job", "rm", job, "--conductor", address)
        finally:
            proc.stop()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
