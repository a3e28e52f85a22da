"""`helios_docker_request_seconds` on a node that runs tasks in Docker: `helios solo
--runtime docker` shows its node's figures at the conductor's `/metrics`, and the histogram
counts the Docker requests a deploy made."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.common import free_port, unique_name
from tests.helios.http.support import get_json, request
from tests.integration.procs import Proc, eventually, processes

pytestmark = pytest.mark.docker


def _containers(node: str) -> list[str]:
    out = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=io.helios.node={node}"],
                         capture_output=True, text=True, timeout=60)
    return out.stdout.split()


def docker_counts(url: str) -> dict[str, float]:
    body = request("GET", f"{url}/metrics").body.decode()
    return {s.labels["op"]: s.value for fam in text_string_to_metric_families(body)
            for s in fam.samples if s.name == "helios_docker_request_seconds_count"}


def test_docker_requests_are_timed(tmp_path: Path, docker_test_image: str) -> None:
    name = unique_name("solo")
    http = f"http://127.0.0.1:{free_port()}"
    job = {"name": "timed", "kind": "service", "image": docker_test_image,
           "command": ["sleep", "600"], "count": 1, "grace": "0s",
           "resources": {"cpus": 0.1, "memory": "16M"}}
    try:
        with processes() as procs:
            p = Proc("solo-docker", ["solo", "--runtime", "docker", "--listen",
                                     f"127.0.0.1:{free_port()}", "--http",
                                     http.removeprefix("http://"), "--state-dir",
                                     str(tmp_path / "state"), "--name", name],
                     tmp_path).start()
            procs.append(p)
            eventually(lambda: get_json(f"{http}/v1/nodes"), 30, "solo up",
                       diagnostics=p.tail)
            assert request("POST", f"{http}/v1/jobs", job).status == 200
            eventually(lambda: [t["state"] for t in get_json(f"{http}/v1/jobs/timed")[
                "tasks"]] == ["running"], 90, "running", diagnostics=p.tail)
            counts = docker_counts(http)
            assert counts.get("create", 0) >= 1 and counts.get("start", 0) >= 1, counts
            assert request("DELETE", f"{http}/v1/jobs/timed").status == 200
            eventually(lambda: not _containers(name), 60, "container removed")
    finally:
        ids = _containers(name)
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=60)
