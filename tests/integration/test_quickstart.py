"""The README's first command, exactly as a newcomer runs it, on a copy of this checkout.

It creates its own virtual environment and installs the project from PyPI's packages, so
it is the slowest test here (~1 min); it is what proves the quick start works.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_script_runs_a_solo_cluster_end_to_end(tmp_path: Path) -> None:
    copy = tmp_path / "helios"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(
        ".venv", ".git", "__pycache__", ".pytest_cache", ".hypothesis", "*.egg-info"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELIOS_")}
    proc = subprocess.run(["bash", "examples/quickstart.sh"], cwd=copy, env=env,
                          capture_output=True, text=True, timeout=600)
    out = proc.stdout
    assert proc.returncode == 0, (out[-3000:], proc.stderr[-3000:])
    assert "hello: running (2 of 2 tasks running)" in out
    assert "-> 200 OK" in out
    assert "solo cluster stopped" in out
    # nothing the demo started is left running (if something is, stop it, by PID, and fail)
    found = subprocess.run(["pgrep", "-f", str(copy)], capture_output=True, text=True)
    pids = [int(p) for p in found.stdout.split()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert pids == [], "the quickstart left processes running"
