"""The HTTP API (docs/http-api.md) against a real `helios solo` subprocess with the
process runtime: each route answers the document its CLI twin prints, a job sent over
HTTP runs, an invalid one is refused with 422 naming every problem, errors are one JSON
line with the right status, the parser is strict, `/metrics` parses and moves, the event
stream resumes from an index, and a schemathesis property run finds no answer that breaks
the published OpenAPI description."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.common import free_port, unique_name
from tests.helios.http.support import Solo, get_json, ndjson, request, solo_with_http
from tests.integration.procs import eventually, helios, helios_json

ROOT = Path(__file__).resolve().parents[3]
WEB = ROOT / "examples" / "jobs" / "web.yaml"


@pytest.fixture(scope="module")
def solo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Solo]:
    with solo_with_http(tmp_path_factory.mktemp("http-solo")) as s:
        yield s


def sleeper(name: str, count: int = 1) -> dict[str, Any]:
    return {"name": name, "kind": "service", "command": ["sleep", "600"], "count": count,
            "resources": {"cpus": 0.05, "memory": "8M"}, "grace": "0s"}


def running(solo: Solo, name: str, count: int) -> dict[str, Any] | None:
    doc = get_json(f"{solo.http}/v1/jobs/{name}")
    ok = [t for t in doc["tasks"] if t["state"] == "running"]
    return doc if len(ok) == count and doc.get("status") == "running" else None


def metrics(solo: Solo) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    a = request("GET", f"{solo.http}/metrics")
    assert a.status == 200 and a.headers["content-type"].startswith("text/plain")
    out = {}
    for fam in text_string_to_metric_families(a.body.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_a_yaml_job_sent_over_http_runs_and_every_route_matches_its_cli_twin(
        solo: Solo) -> None:
    a = request("POST", f"{solo.http}/v1/jobs", WEB.read_text(), "application/yaml")
    assert a.status == 200, a.body
    assert {k: a.json()[k] for k in ("name", "version", "changed")} == \
        {"name": "web", "version": 1, "changed": True}
    assert not a.json().get("unplaced")  # what `job run` would warn about
    eventually(lambda: running(solo, "web", 2) and len(
        get_json(f"{solo.http}/v1/endpoints/web")) == 2, 60, "web running",
        diagnostics=solo.proc.tail)

    pairs = [("/v1/jobs", ["job", "ls"]), ("/v1/jobs/web", ["job", "status", "web"]),
             ("/v1/nodes", ["nodes"]), ("/v1/endpoints/web", ["endpoints", "web"]),
             ("/v1/leader", ["leader"]), ("/v1/jobs/web/history", ["job", "history", "web"])]
    for path, args in pairs:
        # the same document (compared until both reads fall between two changes)
        eventually(lambda path=path, args=args: get_json(solo.http + path)
                   == helios_json(*args, "--conductor", solo.addr), 20, f"{path} == CLI")

    # the same JSON again, unchanged: version stays, changed is false
    a = request("POST", f"{solo.http}/v1/jobs", WEB.read_text(), "application/yaml")
    assert a.json() == {"name": "web", "version": 1, "changed": False}
    logs = request("GET", f"{solo.http}/v1/jobs/web/logs")
    assert logs.status == 200 and logs.headers["content-type"].startswith("text/plain")


def test_an_invalid_job_is_refused_with_422_naming_every_problem(solo: Solo) -> None:
    bad = {"name": "Bad_Name", "kind": "servic", "count": -1, "resources": {"cpus": "x"}}
    a = request("POST", f"{solo.http}/v1/jobs", bad)
    assert a.status == 422
    doc = a.json()
    paths = {p["path"] for p in doc["problems"]}
    assert {"name", "kind", "count", "resources.cpus"} <= paths, doc
    assert "\n" not in doc["error"] and doc["error"].startswith("job refused, ")
    # the CLI names the same problems
    f = Path(solo.proc.log).parent / "bad.json"
    f.write_text(json.dumps(bad))
    r = helios("job", "run", str(f), "--conductor", solo.addr)
    assert r.returncode != 0
    for p in doc["problems"]:
        assert str(p["reason"]) in r.stderr
    # nothing was created
    assert request("GET", f"{solo.http}/v1/jobs/Bad_Name").status == 404


def test_dispatch_stop_and_delete(solo: Solo) -> None:
    name = unique_name("thumb")
    job = {"name": name, "kind": "parameterized", "payload": "required",
           "command": ["sh", "-c", "echo got $HELIOS_PAYLOAD"],
           "resources": {"cpus": 0.05, "memory": "8M"}}
    assert request("POST", f"{solo.http}/v1/jobs", job).status == 200
    url = f"{solo.http}/v1/jobs/{name}/dispatch"
    first = request("POST", url, {"payload": {"image": "a.png"}, "idempotency_key": "k1"})
    assert first.status == 200, first.body
    again = request("POST", url, {"payload": {"image": "a.png"}, "idempotency_key": "k1"})
    assert first.json()["created"] is True and again.json() == {**first.json(),
                                                                "created": False}
    # the payload rule of the job applies, as from the CLI
    missing = request("POST", url, {})
    assert missing.status == 422 and "payload" in missing.json()["error"]
    assert request("POST", url, {"payload": 1, "nope": 2}).status == 400
    assert request("POST", url, b"{not json", "application/json").status == 400

    svc = unique_name("svc")
    assert request("POST", f"{solo.http}/v1/jobs", sleeper(svc)).status == 200
    eventually(lambda: running(solo, svc, 1), 30, "sleeper running")
    stopped = request("POST", f"{solo.http}/v1/jobs/{svc}/stop")
    assert stopped.status == 200 and stopped.json()["stopped"] is True
    removed = request("DELETE", f"{solo.http}/v1/jobs/{svc}")
    assert removed.status == 200 and removed.json()["removed"] is True
    assert request("GET", f"{solo.http}/v1/jobs/{svc}").status == 404
    assert request("DELETE", f"{solo.http}/v1/jobs/{name}").json()["removed"] is True


def test_errors_are_one_json_line_with_a_status(solo: Solo) -> None:
    cases = [("GET", "/v1/nope", 404), ("PUT", "/v1/jobs", 405),
             ("GET", "/v1/jobs/no-such-job", 404), ("GET", "/v1/jobs/x/history", 404),
             ("POST", "/v1/nodes/no-such/drain", 404), ("DELETE", "/v1/nodes/no-such", 404),
             ("GET", "/v1/events?index=abc", 400), ("GET", "/ui/../../etc/passwd", 404)]
    for method, path, status in cases:
        a = request(method, solo.http + path)
        assert a.status == status, (method, path, a.status, a.body)
        doc = a.json()
        assert set(doc) == {"error"} and "\n" not in doc["error"], doc
    assert request("PUT", f"{solo.http}/v1/jobs").headers["allow"] == "GET, POST"
    a = request("POST", f"{solo.http}/v1/jobs", "name: x", "text/plain")
    assert a.status == 415
    # what a web page elsewhere could make a browser send is refused
    evil_host = request("GET", f"{solo.http}/v1/jobs", headers={"Host": "evil.example"})
    assert evil_host.status == 403 and "forbidden" in evil_host.json()["error"]
    forged = request("POST", f"{solo.http}/v1/jobs/web/stop",
                     headers={"Origin": "http://evil.example"})
    assert forged.status == 403 and "forbidden" in forged.json()["error"]
    host = solo.http.removeprefix("http://")
    same = request("POST", f"{solo.http}/v1/jobs/no-such/stop",
                   headers={"Origin": f"http://{host}"})
    assert same.status == 404
    # the node is up: removing it needs force, as from the CLI
    node = get_json(f"{solo.http}/v1/nodes")[0]["name"]
    assert request("DELETE", f"{solo.http}/v1/nodes/{node}").status == 409


def test_the_parser_is_strict(solo: Solo) -> None:
    host, port = solo.http.removeprefix("http://").split(":")
    for raw in (b"GET /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                b"Content-Length: 4\r\n\r\nabc",
                b"GET /v1/jobs HTTP/1.1\r\nHost x\r\n\r\n",
                b"GET  /v1/jobs HTTP/1.1\r\nHost: x\r\n\r\n"):
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(raw)
            answer = s.recv(4096)
        assert answer.startswith(b"HTTP/1.1 400"), (raw, answer[:100])


def test_metrics_parse_and_move_after_a_deploy(solo: Solo) -> None:
    before = metrics(solo)
    assert before[("helios_is_leader", ())] == 1.0
    assert before[("helios_nodes", (("status", "up"),))] == 1.0
    assert ("helios_reconcile_seconds_count", ()) in before
    for name in ("actors_actors", "actors_mailbox_messages", "actors_connections"):
        assert (name, ()) in before
    name = unique_name("m")
    assert request("POST", f"{solo.http}/v1/jobs", sleeper(name, 2)).status == 200
    eventually(lambda: running(solo, name, 2), 30, "deployed")
    after = eventually(lambda: (lambda m: m if m.get(
        ("helios_tasks", (("job", name), ("state", "running")))) == 2 else None)(
        metrics(solo)), 20, "helios_tasks shows the job")
    assert after[("helios_placements_total", ())] >= before[("helios_placements_total", ())] + 2
    assert after[("helios_reconcile_seconds_count", ())] > \
        before[("helios_reconcile_seconds_count", ())]
    # solo mode shows its node's figures too
    assert after[("helios_node_tasks", (("state", "running"),))] >= 2
    assert request("DELETE", f"{solo.http}/v1/jobs/{name}").status == 200


def test_the_event_stream_resumes_from_an_index_and_matches_the_cli(solo: Solo) -> None:
    name = unique_name("ev")
    assert request("POST", f"{solo.http}/v1/jobs", sleeper(name)).status == 200
    eventually(lambda: running(solo, name, 1), 30, "running")
    everything = ndjson(request("GET", f"{solo.http}/v1/events").body)
    keys = {"index", "time", "topic", "type", "job", "task", "node", "detail"}
    assert all(set(e) == keys for e in everything)
    indexes = [e["index"] for e in everything]
    assert indexes == sorted(set(indexes))
    topics = {e["topic"] for e in everything}
    assert {"leader", "node", "job", "task"} <= topics
    mine = [e for e in everything if e["job"] == name]
    assert [e["type"] for e in mine if e["topic"] == "task"][-1] == "running"
    assert ndjson(request("GET", f"{solo.http}/v1/events?job={name}").body) == mine

    # resume after any index: exactly the later events, none twice
    cut = mine[1]["index"]
    later = ndjson(request("GET", f"{solo.http}/v1/events?index={cut}").body)
    expected = [e for e in everything if e["index"] > cut]
    assert later[:len(expected)] == expected  # (and maybe newer ones)
    # the CLI prints the same lines
    r = helios("events", "--json", "--since", str(cut), "--job", name,
               "--conductor", solo.addr)
    assert r.returncode == 0, r.stderr
    assert ndjson(r.stdout.encode()) == [e for e in ndjson(request(
        "GET", f"{solo.http}/v1/events?index={cut}&job={name}").body)]

    # for people: one line per event, index first
    r = helios("events", "--since", str(cut), "--job", name, "--conductor", solo.addr)
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and len(lines) == len([e for e in mine if e["index"] > cut])
    first = next(e for e in mine if e["index"] > cut)
    assert lines[0].startswith(f"{first['index']} ") and f"job={name}" in lines[0]

    # follow: a stopped job's new events arrive on an open stream
    last = everything[-1]["index"]
    host, port = solo.http.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as s:
        s.sendall(f"GET /v1/events?follow=true&index={last}&job={name} HTTP/1.1\r\n"
                  f"Host: {host}\r\n\r\n".encode())
        assert request("POST", f"{solo.http}/v1/jobs/{name}/stop").status == 200
        got = b""
        while b"stop requested" not in got:
            chunk = s.recv(65536)
            assert chunk, got
            got += chunk
    assert b"HTTP/1.1 200" in got and b"application/x-ndjson" in got


def test_openapi_and_a_schemathesis_run_against_the_live_server(
        solo: Solo, tmp_path: Path) -> None:
    doc = get_json(f"{solo.http}/v1/openapi.json")
    assert doc["openapi"].startswith("3.")
    for path in ("/v1/jobs", "/v1/jobs/{name}", "/v1/jobs/{name}/stop",
                 "/v1/jobs/{name}/history", "/v1/jobs/{name}/logs",
                 "/v1/jobs/{name}/dispatch", "/v1/nodes", "/v1/nodes/{name}",
                 "/v1/nodes/{name}/drain", "/v1/endpoints/{name}", "/v1/leader",
                 "/v1/events"):
        assert path in doc["paths"], path
    st = Path(sys.executable).parent / "schemathesis"
    # Streams that never end (follow) and drain (it would empty the node under test)
    # are left out of the run.
    r = subprocess.run(
        [str(st), "run", f"{solo.http}/v1/openapi.json", "--max-examples", "8",
         "--phases", "coverage,fuzzing", "--exclude-path-regex", "drain|events|logs",
         "--checks", "all", "--exclude-checks",
         "ignored_auth,use_after_free,ensure_resource_availability,positive_data_acceptance",
         "--generation-database", "none", "--seed", "7", "--workers", "1", "--no-color",
         "--request-timeout", "30"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_a_non_loopback_http_address_is_refused_without_insecure(tmp_path: Path) -> None:
    r = helios("solo", "--http", f"0.0.0.0:{free_port()}", "--state-dir", str(tmp_path),
               "--listen", f"127.0.0.1:{free_port()}", timeout=30)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "--insecure" in r.stderr, r.stderr
    r = helios("solo", "--http", "nonsense", "--state-dir", str(tmp_path), timeout=30)
    assert r.returncode == 2 and "HOST:PORT" in r.stderr


def test_helios_events_follow_prints_new_events_as_they_come(solo: Solo) -> None:
    from tests.integration.procs import HELIOS

    name = unique_name("fol")
    start = ndjson(request("GET", f"{solo.http}/v1/events").body)[-1]["index"]
    p = subprocess.Popen([*HELIOS, "events", "--follow", "--json", "--job", name,
                          "--since", str(start), "--conductor", solo.addr],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert request("POST", f"{solo.http}/v1/jobs", sleeper(name)).status == 200
        seen: list[dict[str, Any]] = []
        out = p.stdout
        assert out is not None
        reader = threading.Thread(target=lambda: seen.extend(
            json.loads(line) for line in iter(out.readline, "")), daemon=True)
        reader.start()
        eventually(lambda: any(e["type"] == "running" for e in list(seen)), 30,
                   "the follower printing the task running")
        assert all(e["job"] == name and e["index"] > start for e in seen)
        assert seen[0]["type"] == "submitted"
    finally:
        p.terminate()
        p.wait(10)
    assert request("DELETE", f"{solo.http}/v1/jobs/{name}").status == 200


def test_a_busy_http_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = helios("solo", "--http", f"127.0.0.1:{port}", "--state-dir", str(tmp_path),
                   "--listen", f"127.0.0.1:{free_port()}", "--runtime", "process",
                   timeout=60)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and f"cannot serve HTTP at 127.0.0.1:{port}" in last
    assert "Traceback" not in r.stderr


def test_logs_follow_streams_new_lines(solo: Solo) -> None:
    import http.client

    name = unique_name("talk")
    job = {"name": name, "kind": "service", "count": 1, "grace": "0s",
           "command": ["sh", "-c", "i=0; while true; do echo line $i; i=$((i+1)); "
                                   "sleep 0.2; done"],
           "resources": {"cpus": 0.05, "memory": "8M"}}
    assert request("POST", f"{solo.http}/v1/jobs", job).status == 200
    eventually(lambda: running(solo, name, 1), 30, "running")
    host, port = solo.http.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", f"/v1/jobs/{name}/logs?follow=true")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("content-type").startswith("text/plain")
        lines: list[str] = []
        deadline = time.monotonic() + 30
        while len(lines) < 12 and time.monotonic() < deadline:  # more than one poll's worth
            line = resp.readline().decode()
            if line.strip():
                lines.append(line.strip())
        numbers = [int(x.split()[-1]) for x in lines]
        # in order, none twice, none missed across the server's polls of the node
        assert numbers == list(range(numbers[0], numbers[0] + 12)), lines
    finally:
        conn.close()
    assert request("DELETE", f"{solo.http}/v1/jobs/{name}").status == 200
