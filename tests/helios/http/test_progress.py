"""`helios job run --wait` shows the rollout moving: a live display on a terminal, plain
lines (one per change) when piped. The renderings are checked on rich consoles writing to
memory; the piped form also through the real command against `helios solo`."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from helios.progress import WaitProgress, summary
from tests.fixtures.common import unique_name
from tests.helios.http.support import solo_with_http
from tests.integration.procs import helios


def doc(updated: int, old: int, states: list[str], version: int = 2) -> dict[str, Any]:
    return {"name": "web", "kind": "service", "version": version,
            "tasks": [{"id": f"t{i}", "node": "n1", "state": s, "healthy": None}
                      for i, s in enumerate(states)],
            "rollout": {"version": version, "state": "rolling" if old else "complete",
                        "updated": updated, "total": 2, "old": old, "parallel": 1}}


STEPS = [doc(0, 2, ["running", "running", "starting"]),
         doc(0, 2, ["running", "running", "starting"]),
         doc(1, 1, ["running", "stopping", "running"]),
         doc(2, 0, ["running", "running"])]


def test_summary_names_the_rollout_and_the_tasks() -> None:
    line, done, total = summary(STEPS[2], "service")
    assert (done, total) == (1, 2)
    assert line == ("web v2: rollout v2 rolling: 1 of 2 updated, 1 old left; "
                    "tasks: 2 running, 1 stopping")
    batch = {"name": "b", "version": 1, "tasks": [{"state": "exited"}, {"state": "running"}]}
    assert summary(batch, "batch")[1:] == (1, 2)


def test_piped_output_is_one_plain_line_per_change() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    with WaitProgress(console, "service") as p:
        assert not p.live
        for d in STEPS:
            p.update(d)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3  # the repeated document printed nothing
    assert "\x1b" not in out.getvalue()
    assert lines[0].endswith("rollout v2 rolling: 0 of 2 updated, 2 old left; "
                             "tasks: 2 running, 1 starting")
    assert "2 of 2 updated" in lines[-1]


def test_a_terminal_gets_a_live_bar() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160)
    with WaitProgress(console, "service") as p:
        assert p.live
        for d in STEPS:
            p.update(d)
    text = out.getvalue()
    assert "\x1b[" in text and "2/2" in text and "━" in text
    assert "rollout v2 complete" in text


def test_job_run_wait_piped_prints_the_rollout(tmp_path: Path) -> None:
    name = unique_name("web")
    job = {"name": name, "kind": "service", "command": ["sleep", "600"], "count": 2,
           "grace": "0s", "resources": {"cpus": 0.05, "memory": "8M"}}
    f = tmp_path / "job.json"
    with solo_with_http(tmp_path) as solo:
        f.write_text(json.dumps(job))
        r = helios("job", "run", str(f), "--wait", "--conductor", solo.addr)
        assert r.returncode == 0, r.stderr
        assert f"{name} v1: rollout v1" in r.stderr and "\x1b" not in r.stderr
        f.write_text(json.dumps({**job, "env": {"V": "2"}}))
        r = helios("job", "run", str(f), "--wait", "--conductor", solo.addr)
        assert r.returncode == 0, r.stderr
        lines = [ln for ln in r.stderr.splitlines() if f"{name} v2" in ln]
        assert lines and all("rollout v2" in ln for ln in lines), r.stderr
        assert len(lines) == len(set(ln.split(" ", 1)[1] for ln in lines))
