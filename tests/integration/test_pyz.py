"""The one-file install: `bash scripts/build-pyz` builds `dist/helios.pyz`, and that one
file, copied into an empty directory and run by a Python with no Helios and none of its
dependencies importable (`-I`, and `-S` where the interpreter's own site-packages might
hold them; no virtual environment, a bare environment), runs a solo cluster that
serves `examples/jobs/hello.yaml`, and answers `node --help` and `conductor --help`.
Slow (the build installs shiv and the dependencies from PyPI).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.fixtures.common import free_port
from tests.integration.procs import Proc

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def clean_python() -> list[str]:
    """An interpreter that cannot import trio by itself: the system's python3 when it is
    bare, else this one with its site-packages switched off (-S)."""
    for candidate in ("/usr/bin/python3", sys.executable):
        if not Path(candidate).exists():
            continue
        probe = subprocess.run([candidate, "-I", "-c", "import trio"], capture_output=True,
                               env={"PATH": "/usr/bin:/bin"})
        if probe.returncode != 0:
            version = subprocess.run([candidate, "-c", "import sys; print(sys.version_info"
                                      " >= (3, 11))"], capture_output=True, text=True)
            if version.stdout.strip() == "True":
                return [candidate, "-I"]
    return [sys.executable, "-I", "-S"]


def test_the_zipapp_runs_a_solo_cluster_from_a_clean_directory(tmp_path: Path) -> None:
    built = tmp_path / "build" / "helios.pyz"
    r = subprocess.run(["bash", str(REPO / "scripts" / "build-pyz")], capture_output=True,
                       text=True, timeout=600, env=dict(os.environ, OUT=str(built)))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert built.is_file()

    home = tmp_path / "clean"
    home.mkdir()
    shutil.copy(built, home / "helios.pyz")
    shutil.copy(REPO / "examples" / "jobs" / "hello.yaml", home / "hello.yaml")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "SHIV_ROOT": str(home / ".shiv")}
    py = [*clean_python(), str(home / "helios.pyz")]

    def helios(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*py, *args], capture_output=True, text=True, cwd=home,
                              env=env, timeout=timeout)

    for cmd in ("node", "conductor", "solo"):
        r = helios(cmd, "--help")
        assert r.returncode == 0 and "Usage" in r.stdout, r.stderr
    addr = f"127.0.0.1:{free_port()}"
    solo = Proc("solo", ["solo", "--listen", addr, "--state-dir", str(home / "state"),
                         "--runtime", "process"], home, command=py, env=env, cwd=home)
    try:
        solo.start()
        r = helios("job", "run", "hello.yaml", "--wait", "--timeout", "90", "--conductor",
                   addr)
        assert r.returncode == 0, r.stderr + solo.tail()
        eps = json.loads(helios("endpoints", "hello", "--json", "--conductor", addr).stdout)
        assert len(eps) == 2
        for ep in eps:
            with urllib.request.urlopen(f"http://{ep['host']}:{ep['ports']['http']}/",
                                        timeout=10) as resp:
                assert resp.status == 200
        r = helios("job", "rm", "hello", "--conductor", addr)
        assert r.returncode == 0, r.stderr
        tasks_dir = home / "state" / "node" / "process"
        deadline = time.monotonic() + 60
        while any(tasks_dir.glob("*/record.json")) and time.monotonic() < deadline:
            time.sleep(0.2)  # the node stops and removes its tasks
        assert not any(tasks_dir.glob("*/record.json"))
    finally:
        solo.stop(timeout=30)
        _kill_tasks(home / "state")
    # nothing of the build or the run landed in the repository
    assert not (REPO / "build").exists()


def _kill_tasks(state: Path) -> None:
    """Stop, by their recorded PIDs, task processes a failed run left behind."""
    for record in state.glob("node/process/*/record.json"):
        try:
            pid = json.loads(record.read_text()).get("pid")
            if pid:
                os.killpg(int(pid), signal.SIGKILL)
        except (OSError, ValueError):
            pass
