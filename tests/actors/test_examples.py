"""Every example script runs as a user would run it, and says what it should."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

EXPECTED = {
    "ping_pong.py": ["pong 0 from pid", "1003 pings handled"],
    "supervision_tree.py": ["after the restart the counter is at 1",
                            "workers/cache    restart=permanent running=True restarts=1"],
    "remote_error.py": ["RemoteError: type=ValueError", "after the restart, parse('7') = 7"],
    "monitor_sigkill.py": ["reason=noconnection"],
}


# Examples of the orchestrator run in their own tests (see tests/helios/).
ELSEWHERE = {"service_client.py"}


def test_every_example_is_covered() -> None:
    assert {p.name for p in EXAMPLES.glob("*.py")} == set(EXPECTED) | ELSEWHERE


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs(script: str) -> None:
    proc = subprocess.run([sys.executable, str(EXAMPLES / script)], capture_output=True,
                          text=True, timeout=60, cwd=EXAMPLES.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for needle in EXPECTED[script]:
        assert needle in proc.stdout, proc.stdout
