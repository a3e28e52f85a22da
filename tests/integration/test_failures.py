"""Failures a user can see, that end, and that exit non-zero, against a real `helios solo
--runtime process`: a crash-looping service backs off by its reschedule policy (placements
per minute bounded) with the wait and its reason in `job status`; `job run --wait` exits 2
for a failed, rolled-back or unplaceable version and for a failed batch, 0 for a healthy
one; `job run` without --wait warns about a task that fits nowhere; `job plan` changes
nothing."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.common import unique_name
from tests.integration.procs import (
    eventually,
    helios,
    helios_json,
    processes,
    start_solo,
    write_job,
)


@pytest.fixture(scope="module")
def solo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with processes() as procs:
        _, addr = start_solo(procs, tmp_path_factory.mktemp("solo-failures"), "process")
        yield addr


def service(name: str, command: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "service", "command": ["sh", "-c", command], "count": 1,
            "resources": {"cpus": 0.05, "memory": "16M"}, "grace": "0s",
            "update": {"min_healthy_time": "1s"}, **extra}


#: a `--wait` piped to a file prints the rollout's progress on stderr, one timestamped
#: line per change (helios/progress.py); the outcome is the last line
PROGRESS = re.compile(r"\d\d:\d\d:\d\d ")


def one_error_line(stderr: str) -> str:
    """The one error line a failed command ends with; before it, only progress lines."""
    lines = [line for line in stderr.strip().splitlines()
             if not PROGRESS.match(line)]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert stderr.strip().splitlines()[-1] == lines[0], stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.slow
def test_a_crash_loop_backs_off_and_says_why(solo: str, tmp_path: Path) -> None:
    name = unique_name("crash")
    f = write_job(tmp_path / "crash.json", service(
        name, "echo boom; exit 3", restart={"policy": "on-failure", "max": 1,
                                            "backoff": "0.1s"},
        reschedule={"delay": "2s", "max_delay": "4s"}))
    r = helios("job", "run", str(f), "--wait", "--timeout", "60", "--conductor", solo)
    assert r.returncode == 2, r.stdout + r.stderr
    line = one_error_line(r.stderr)
    assert f"job {name}: slot 0 rescheduling in" in line and "failed" in line, line

    # (between two waits the slot runs its next try: read until a wait is seen)
    st = eventually(lambda: (lambda d: d if d["reschedule"] else None)(
        helios_json("job", "status", name, "--conductor", solo)), 15, "a reschedule wait")
    assert st["reschedule"][0]["reason"].startswith("rescheduling in")
    assert st["reschedule"][0]["wait"] <= 4
    eventually(lambda: "slot 0 waits: rescheduling in" in helios(
        "job", "status", name, "--conductor", solo).stdout, 15, "the wait in job status")

    # Watch 12 s: delays 2, 4, 4, ... allow at most one placement per 2 s (plus the
    # one under way), where without the policy it was placed again at once, many per s.
    start = time.time()
    time.sleep(12)  # the behaviour: how many placements 12 s of real time allow
    hist = helios_json("job", "history", name, "--conductor", solo)
    placed = [e for e in hist if e["state"] == "placed" and e["time"] >= start]
    assert 1 <= len(placed) <= 12 / 2 + 1, placed
    assert any(e["state"] == "reschedule" for e in hist)
    assert helios("job", "rm", name, "--conductor", solo).returncode == 0


def test_unplaceable_job_warns_at_once_and_wait_exits_2(solo: str, tmp_path: Path) -> None:
    name = unique_name("huge")
    f = write_job(tmp_path / "huge.json", service(name, "sleep 600",
                                                  resources={"cpus": 64, "memory": "16M"}))
    r = helios("job", "run", str(f), "--conductor", solo)
    assert r.returncode == 0, r.stderr  # registered, as in Nomad
    assert r.stderr.startswith(f"warning: job {name}: 1 task cannot be placed:"), r.stderr
    assert "cpu" in r.stderr.lower()
    assert helios_json("job", "status", name, "--conductor", solo)["version"] == 1
    f2 = write_job(tmp_path / "huge2.json", service(name, "sleep 601",
                                                    resources={"cpus": 64, "memory": "16M"}))
    r = helios("job", "run", str(f2), "--wait", "--conductor", solo, timeout=60)
    assert r.returncode == 2  # after PLACEMENT_GRACE, not the 300 s --timeout
    lines = [line for line in r.stderr.strip().splitlines() if not PROGRESS.match(line)]
    assert lines[0].startswith(f"warning: job {name}: 1 task cannot be placed"), r.stderr
    assert len(lines) == 2 and "cannot be placed" in lines[1] and \
        lines[1].startswith("error: "), r.stderr
    assert helios("job", "rm", name, "--conductor", solo).returncode == 0


def test_rolled_back_version_exits_2_and_healthy_exits_0(solo: str, tmp_path: Path) -> None:
    name = unique_name("roll")
    ok = write_job(tmp_path / "v1.json", service(name, "sleep 600"))
    r = helios("job", "run", str(ok), "--wait", "--timeout", "60", "--conductor", solo)
    assert r.returncode == 0, r.stderr
    bad = write_job(tmp_path / "v2.json", service(name, "exit 3",
                                                  restart={"policy": "never"}))
    r = helios("job", "run", str(bad), "--wait", "--timeout", "60", "--conductor", solo)
    assert r.returncode == 2, r.stdout + r.stderr
    line = one_error_line(r.stderr)
    assert "rollout of v2 failed" in line and "rolled back" in line, line
    assert helios("job", "rm", name, "--conductor", solo).returncode == 0


def test_failed_batch_exits_2(solo: str, tmp_path: Path) -> None:
    name = unique_name("fails")
    f = write_job(tmp_path / "b.json", {**service(name, "exit 3"), "kind": "batch",
                                        "restart": {"policy": "never"}})
    r = helios("job", "run", str(f), "--wait", "--timeout", "60", "--conductor", solo)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "1 task(s) failed" in one_error_line(r.stderr)


def test_job_plan_changes_nothing(solo: str, tmp_path: Path) -> None:
    name = unique_name("plan")
    f = write_job(tmp_path / "p.json", service(name, "sleep 600"))
    out = helios_json("job", "plan", str(f), "--conductor", solo)
    assert out["changed"] and out["version"] == 1 and len(out["place"]) == 1
    r = helios("job", "status", name, "--conductor", solo)
    assert r.returncode != 0 and f"no job named '{name}'" in r.stderr
    assert helios("job", "run", str(f), "--wait", "--conductor", solo).returncode == 0
    f3 = write_job(tmp_path / "p3.json", service(name, "sleep 600", count=3))
    human = helios("job", "plan", str(f3), "--conductor", solo)
    assert human.returncode == 0 and "would become version 2 (changes: count)" in human.stdout
    assert human.stdout.count("+ place") == 2
    st = helios_json("job", "status", name, "--conductor", solo)
    assert st["version"] == 1 and len(st["tasks"]) == 1
    assert helios("job", "rm", name, "--conductor", solo).returncode == 0


@pytest.mark.docker
@pytest.mark.slow
def test_a_missing_image_backs_off_under_docker(tmp_path: Path, docker_registry: Any) -> None:
    """The issue's loop (177 history events in 10 s): a pull of an image that exists
    nowhere fails its task, and the slot waits by the policy before the next try. The
    image names the test's own registry on loopback, so no pull leaves the machine."""
    name = unique_name("nope")
    f = write_job(tmp_path / "nope.json", {
        "name": name, "image": f"{docker_registry.host}/helios/doesnotexist:9", "count": 1,
        "resources": {"cpus": 0.05, "memory": "16M"},
        "reschedule": {"delay": "2s", "max_delay": "4s"}})
    with processes() as procs:
        p, addr = start_solo(procs, tmp_path, "docker")
        r = helios("job", "run", str(f), "--wait", "--timeout", "60", "--conductor", addr)
        assert r.returncode == 2, r.stdout + r.stderr + p.tail()
        line = one_error_line(r.stderr)
        assert "rescheduling in" in line and "doesnotexist" in line, line
        start = time.time()
        time.sleep(10)  # the behaviour: how many placements 10 s of real time allow
        hist = helios_json("job", "history", name, "--conductor", addr)
        recent = [e for e in hist if e["time"] >= start]
        placed = [e for e in recent if e["state"] == "placed"]
        assert 1 <= len(placed) <= 10 / 2 + 1, placed
        assert len(recent) <= 10 * len(placed) + 5, recent  # was 177 in 10 s
        assert helios("job", "rm", name, "--conductor", addr).returncode == 0


def test_logs_of_a_job_without_tasks_say_so(solo: str, tmp_path: Path) -> None:
    name = unique_name("quiet")
    f = write_job(tmp_path / "q.json", service(name, "echo hi; sleep 600"))
    assert helios("job", "run", str(f), "--wait", "--conductor", solo).returncode == 0
    r = helios("job", "logs", name, "--conductor", solo)
    assert r.returncode == 0 and r.stdout.strip() == "hi", r.stderr
    assert helios("job", "stop", name, "--conductor", solo).returncode == 0
    eventually(lambda: not helios_json("job", "status", name, "--conductor", solo)["tasks"],
               30, "tasks gone")
    r = helios("job", "logs", name, "--conductor", solo)
    assert r.returncode == 1 and r.stdout == ""
    assert f"job {name} has no tasks, so no logs" in one_error_line(r.stderr)
    st = helios_json("job", "status", name, "--conductor", solo)
    assert st["rollout"]["state"] == "stopped"  # not "rolling" after job stop
    assert helios("job", "rm", name, "--conductor", solo).returncode == 0


def test_scale_versions_revert_and_inspect(solo: str, tmp_path: Path) -> None:
    name = unique_name("ver")
    f = write_job(tmp_path / "v.json", service(name, "sleep 600"))
    assert helios("job", "run", str(f), "--wait", "--conductor", solo).returncode == 0
    r = helios("job", "scale", name, "2", "--wait", "--conductor", solo)
    assert r.returncode == 0, r.stderr
    assert f"job {name} updated to version 2" in r.stdout
    st = helios_json("job", "status", name, "--conductor", solo)
    assert st["version"] == 2 and len(st["tasks"]) == 2
    vs = helios_json("job", "versions", name, "--conductor", solo)
    assert [(v["version"], v["current"], v["changes"]) for v in vs] == [
        (2, True, ["count"]), (1, False, ["created"])]
    r = helios("job", "revert", name, "1", "--wait", "--json", "--conductor", solo)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["version"] == 3
    spec = helios_json("job", "inspect", name, "--conductor", solo)
    assert spec["version"] == 3 and spec["spec"]["count"] == 1
    assert "count: 1" in helios("job", "inspect", name, "--conductor", solo).stdout
    eventually(lambda: len(helios_json("job", "status", name, "--conductor",
                                       solo)["tasks"]) == 1, 30, "scaled back to 1")
    r = helios("job", "revert", name, "99", "--conductor", solo)
    assert "has no version 99 kept (kept: 1, 2, 3)" in one_error_line(r.stderr)
    assert helios("job", "rm", name, "--conductor", solo).returncode == 0


def test_dispatch_wait_exit_codes_and_text_payloads(solo: str, tmp_path: Path) -> None:
    name = unique_name("disp")
    f = write_job(tmp_path / "d.json", {
        "name": name, "kind": "parameterized",
        "command": ["sh", "-c", 'test "$HELIOS_PAYLOAD" = "hello world"'],
        "resources": {"cpus": 0.05, "memory": "16M"}, "restart": {"policy": "never"}})
    assert helios("job", "run", str(f), "--conductor", solo).returncode == 0
    ok = helios("job", "dispatch", name, "--payload", "hello world", "--wait", "--json",
                "--conductor", solo)
    assert ok.returncode == 0, ok.stderr  # a text payload, not JSON, is accepted
    assert json.loads(ok.stdout)["status"]["status"] == "complete"
    bad = helios("job", "dispatch", name, "--payload", "other", "--wait", "--conductor", solo)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "1 task(s) failed" in one_error_line(bad.stderr)
    assert helios("job", "rm", name, "--conductor", solo).returncode == 0
