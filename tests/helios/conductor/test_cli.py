"""The `helios` command as users run it, against `helios solo` subprocesses: the JSON
shapes of docs/json.md, refusal of bad job files, one-line errors, solo mode with
the process runtime and with Docker."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.common import free_port, unique_name
from tests.integration.procs import Proc, eventually, helios, processes, write_job

ROOT = Path(__file__).resolve().parents[3]
WEB = ROOT / "examples" / "jobs" / "web.yaml"
BATCH = ROOT / "examples" / "jobs" / "batch.yaml"

TASK_KEYS = {"id", "node", "state", "healthy", "container", "ports"}
NODE_KEYS = {"name", "status", "address", "cpus", "memory", "cpus_free", "memory_free",
             "labels", "tasks", "eligible", "draining"}  # eligible, draining: CONTRACT §7
ENDPOINT_KEYS = {"task", "node", "host", "ports"}


def assert_one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def solo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A `helios solo --runtime process` on its own port; yields its address."""
    tmp = tmp_path_factory.mktemp("solo")
    addr = f"127.0.0.1:{free_port()}"
    with processes() as procs:
        p = Proc("solo", ["solo", "--runtime", "process", "--listen", addr,
                          "--state-dir", str(tmp / "state"), "--name", unique_name("solo")],
                 tmp).start()
        procs.append(p)
        eventually(lambda: helios("nodes", "--conductor", addr, "--json").returncode == 0
                   and json.loads(helios("nodes", "--conductor", addr, "--json").stdout),
                   30, "solo up", diagnostics=p.tail)
        yield addr


def test_solo_process_runs_web_and_json_shapes(solo: str) -> None:
    r = helios("job", "run", str(WEB), "--wait", "--timeout", "60", "--conductor", solo)
    assert r.returncode == 0, r.stderr
    assert "running" in r.stdout

    st = json.loads(helios("job", "status", "web", "--json", "--conductor", solo).stdout)
    assert {"name", "kind", "version", "tasks"} <= set(st)
    assert (st["name"], st["kind"], st["version"]) == ("web", "service", 1)
    assert len(st["tasks"]) == 2
    for t in st["tasks"]:
        assert set(t) == TASK_KEYS
        assert t["state"] == "running" and t["healthy"] is True
        assert isinstance(t["ports"]["http"], int)

    nodes = json.loads(helios("nodes", "--json", "--conductor", solo).stdout)
    assert len(nodes) == 1 and set(nodes[0]) == NODE_KEYS
    n = nodes[0]
    assert n["status"] == "up" and n["tasks"] == 2
    assert isinstance(n["cpus"], float) and isinstance(n["memory"], int)
    assert n["cpus_free"] == pytest.approx(n["cpus"] - 0.2)

    eps = json.loads(helios("endpoints", "web", "--json", "--conductor", solo).stdout)
    assert len(eps) == 2 and all(set(e) == ENDPOINT_KEYS for e in eps)
    assert {e["ports"]["http"] for e in eps} == {t["ports"]["http"] for t in st["tasks"]}

    ls = json.loads(helios("job", "ls", "--json", "--conductor", solo).stdout)
    web = next(j for j in ls if j["name"] == "web")
    assert (web["kind"], web["count"], web["running"]) == ("service", 2, 2)

    hist = json.loads(helios("job", "history", "web", "--json", "--conductor", solo).stdout)
    assert [e["state"] for e in hist].count("running") >= 2

    human = helios("job", "status", "web", "--conductor", solo)
    assert human.returncode == 0 and "running" in human.stdout

    # unchanged file: nothing to do; stop, then rm
    again = json.loads(helios("job", "run", str(WEB), "--json", "--conductor", solo).stdout)
    assert again == {"name": "web", "version": 1, "changed": False}
    assert helios("job", "stop", "web", "--conductor", solo).returncode == 0
    eventually(lambda: json.loads(helios("job", "status", "web", "--json", "--conductor",
                                         solo).stdout)["tasks"] == [], 30, "web stopped")
    assert helios("job", "rm", "web", "--conductor", solo).returncode == 0
    line = assert_one_line_error(helios("job", "status", "web", "--conductor", solo))
    assert "no job named 'web'" in line


def test_batch_runs_to_completion_with_logs(solo: str) -> None:
    r = helios("job", "run", str(BATCH), "--wait", "--timeout", "60", "--conductor", solo)
    assert r.returncode == 0, r.stderr
    st = json.loads(helios("job", "status", "crunch", "--json", "--conductor", solo).stdout)
    assert [t["state"] for t in st["tasks"]] == ["exited"] * 3
    logs = helios("job", "logs", "crunch", "--conductor", solo)
    assert logs.returncode == 0 and logs.stdout.count("done") == 3
    one = st["tasks"][0]["id"]
    logs1 = helios("job", "logs", "crunch", "--task", one, "--conductor", solo)
    assert logs1.stdout.splitlines() == ["start", "done"]


def test_bad_job_file_names_every_problem_and_changes_nothing(solo: str,
                                                              tmp_path: Path) -> None:
    before = helios("job", "ls", "--json", "--conductor", solo).stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: Bad_Name\nkind: servic\ncount: -1\n"
                   "resources: {memory: 64Q}\nrestrat: {}\n")
    line = assert_one_line_error(helios("job", "run", str(bad), "--conductor", solo))
    for path in ("name:", "kind:", "count:", "resources.memory:", "restrat:"):
        assert path in line, line
    assert helios("job", "ls", "--json", "--conductor", solo).stdout == before
    line = assert_one_line_error(helios("job", "run", str(tmp_path / "missing.yaml"),
                                        "--conductor", solo))
    assert "missing.yaml" in line
    js = write_job(tmp_path / "bad.json", {"name": "ok", "count": "three"})
    line = assert_one_line_error(helios("job", "run", str(js), "--conductor", solo))
    assert "count:" in line


def test_node_rm_refuses_an_up_node_and_an_unknown_one(solo: str) -> None:
    (node,) = json.loads(helios("nodes", "--json", "--conductor", solo).stdout)
    line = assert_one_line_error(helios("node", "rm", node["name"], "--conductor", solo))
    assert "is up" in line and "--force" in line
    line = assert_one_line_error(helios("node", "rm", "nosuch", "--conductor", solo))
    assert "no node named 'nosuch'" in line
    assert json.loads(helios("nodes", "--json", "--conductor", solo).stdout) != []


def test_gc_flags_are_checked_before_anything_starts() -> None:
    line = assert_one_line_error(helios("conductor", "--zk", "127.0.0.1:1",
                                        "--gc-run-retention", "soon"))
    assert "--gc-run-retention" in line
    line = assert_one_line_error(helios("solo", "--gc-keep-runs", "-1"))
    assert "--gc-keep-runs" in line


def test_unreachable_conductor_is_one_line() -> None:
    port = free_port()
    quick = {"HELIOS_CONNECT_WAIT": "0.2"}
    line = assert_one_line_error(helios("job", "ls", "--conductor", f"127.0.0.1:{port}",
                                        env=quick))
    assert f"127.0.0.1:{port}" in line
    line = assert_one_line_error(helios("nodes", env={"HELIOS_CONDUCTOR":
                                                      f"127.0.0.1:{port}", **quick}))
    assert "cannot reach" in line
    r = helios("job", "frobnicate")
    assert_one_line_error(r)
    assert r.returncode == 2


def test_unreachable_zookeeper_is_one_line() -> None:
    line = assert_one_line_error(helios("job", "ls", "--zk", f"127.0.0.1:{free_port()}",
                                        timeout=60))
    assert "ZooKeeper" in line


@pytest.mark.docker
def test_solo_docker_runs_a_job(tmp_path: Path, docker_test_image: str) -> None:
    addr = f"127.0.0.1:{free_port()}"
    name = unique_name("solo")
    job = {"name": "hello", "kind": "service", "image": docker_test_image,
           "command": ["httpd", "-f", "-p", "8080", "-h", "/www"], "count": 1,
           "resources": {"cpus": 0.1, "memory": "16M"},
           "ports": {"http": {"container": 8080}},
           "health": {"http": {"port": "http", "path": "/"}, "interval": "1s",
                      "timeout": "1s"}, "grace": "1s"}
    f = write_job(tmp_path / "hello.json", job)
    try:
        with processes() as procs:
            p = Proc("solo-docker", ["solo", "--runtime", "docker", "--listen", addr,
                                     "--state-dir", str(tmp_path / "state"), "--name", name],
                     tmp_path).start()
            procs.append(p)
            eventually(lambda: helios("nodes", "--conductor", addr).returncode == 0, 30,
                       "solo up", diagnostics=p.tail)
            r = helios("job", "run", str(f), "--wait", "--timeout", "90", "--conductor",
                       addr, timeout=120)
            assert r.returncode == 0, r.stderr + p.tail()
            st = json.loads(helios("job", "status", "hello", "--json", "--conductor",
                                   addr).stdout)
            assert [t["state"] for t in st["tasks"]] == ["running"]
            assert st["tasks"][0]["healthy"] is True and st["tasks"][0]["container"]
            assert helios("job", "rm", "hello", "--conductor", addr).returncode == 0
            eventually(lambda: not _containers(name), 60, "container removed")
    finally:
        ids = _containers(name, all_=True)
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=60)


def _containers(node: str, all_: bool = False) -> list[str]:
    args = ["docker", "ps", "-q", "--filter", f"label=io.helios.node={node}"]
    if all_:
        args.insert(2, "-a")
    return subprocess.run(args, capture_output=True, text=True, timeout=30).stdout.split()
