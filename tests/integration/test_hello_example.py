"""`examples/jobs/hello.yaml`, the README's first job, runs where the README says: under
Docker in `local/busybox:1`, built by `examples/make-busybox-image.sh` (no registry), as
it does under the process runtime (examples/quickstart.sh, test_quickstart.py)."""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.fixtures.common import unique_name
from tests.fixtures.docker import node_containers
from tests.integration.procs import eventually, helios, helios_json, processes, start_solo

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.docker
@pytest.mark.slow
def test_hello_runs_under_docker(tmp_path: Path, docker_available: None) -> None:
    built = subprocess.run(["bash", str(ROOT / "examples" / "make-busybox-image.sh")],
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0 and "built local/busybox:1" in built.stdout, built.stderr
    node = unique_name("solo")
    try:
        with processes() as procs:
            p, addr = start_solo(procs, tmp_path, "docker", name=node)
            r = helios("job", "run", str(ROOT / "examples" / "jobs" / "hello.yaml"),
                       "--wait", "--timeout", "90", "--conductor", addr, timeout=120)
            assert r.returncode == 0, r.stderr + p.tail()
            eps = helios_json("endpoints", "hello", "--conductor", addr)
            assert len(eps) == 2
            url = f"http://{eps[0]['host']}:{eps[0]['ports']['http']}/"
            with urllib.request.urlopen(url, timeout=5) as resp:
                assert resp.status == 200 and b"hello from" in resp.read()
            assert helios("job", "rm", "hello", "--conductor", addr).returncode == 0
            eventually(lambda: not node_containers(node), 60, "containers removed")
    finally:
        ids = node_containers(node, all_=True)
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=60)
