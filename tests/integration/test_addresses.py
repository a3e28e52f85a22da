"""Addresses that work across machines, and names that are one daemon's own, with real
`helios` processes, ZooKeeper and Docker:

- two nodes on two loopback addresses (127.0.0.2, 127.0.0.3, standing in for two
  machines) publish their tasks' ports on, and register endpoints with, their own
  advertised address, where a client reaches each service;
- a node whose name a live daemon of the cluster already has refuses to start, in one
  line, and leaves that daemon's containers alone;
- a second `helios solo` on the same Docker host gets a node name of its own (kept in its
  state directory) and leaves the first one's containers alone.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.common import free_port, unique_name
from tests.fixtures.docker import node_containers
from tests.integration.procs import (
    Proc,
    eventually,
    helios,
    helios_json,
    processes,
    start_solo,
    write_job,
)
from tests.integration.test_cluster import conductor, containers, diag

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SERVE = ["sh", "-c", "mkdir -p /tmp/www && echo $HOSTNAME > /tmp/www/index.html"
         " && exec httpd -f -p 8080 -h /tmp/www"]


def web(name: str, image: str, count: int, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": image, "command": SERVE, "count": count,
            "resources": {"cpus": 0.1, "memory": "16M"},
            "ports": {"http": {"container": 8080}}, "grace": "0s",
            "health": {"tcp": {"port": "http"}, "interval": "1s", "timeout": "1s"}, **extra}


def node_at(name: str, host: str, zk: str, tmp: Path, labels: dict[str, str],
            state: str | None = None) -> Proc:
    args = ["node", "--zk", zk, "--name", name, "--cpus", "1", "--memory", "1G",
            "--runtime", "docker", "--state-dir", str(tmp / (state or name)),
            "--listen", f"{host}:{free_port()}", "--advertise", host,
            "--session-timeout", "2", "--label", f"addr={host}"]
    for k, v in labels.items():
        args += ["--container-label", f"{k}={v}"]
    return Proc(f"{name}-{state or 'a'}", args, tmp).start()


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=3) as r:
        return r.read().decode().strip()


@pytest.mark.zookeeper
def test_each_node_publishes_on_its_own_address(zk_hosts: str, zk_root: str, tmp_path: Path,
                                                docker_test_image: str,
                                                docker_labels: dict[str, str]) -> None:
    zk = f"{zk_hosts}{zk_root}"
    job = unique_name("web")
    with processes() as procs:
        procs.append(conductor("c1", zk, tmp_path))
        for host in ("127.0.0.2", "127.0.0.3"):
            procs.append(node_at(unique_name("n"), host, zk, tmp_path, docker_labels))
        eventually(lambda: len([n for n in helios_json("nodes", "--zk", zk)
                                if n["status"] == "up"]) == 2, 60, "2 nodes up",
                   diagnostics=lambda: diag(procs))
        f = write_job(tmp_path / "web.json", web(job, docker_test_image, 2, spread=True))
        r = helios("job", "run", str(f), "--wait", "--timeout", "90", "--zk", zk, timeout=120)
        assert r.returncode == 0, r.stderr + diag(procs)
        eps = eventually(lambda: (lambda e: e if len(e) == 2 else None)(
            helios_json("endpoints", job, "--zk", zk)), 30, "2 endpoints")
        nodes = {n["name"]: n["labels"]["addr"] for n in helios_json("nodes", "--zk", zk)}
        assert sorted(e["host"] for e in eps) == ["127.0.0.2", "127.0.0.3"]
        for e in eps:
            assert e["host"] == nodes[e["node"]]  # each at its own node's address
            port = e["ports"]["http"]
            assert get(f"http://{e['host']}:{port}/")  # served there ...
            with pytest.raises(OSError):                # ... and only there
                get(f"http://127.0.0.1:{port}/")


@pytest.mark.zookeeper
def test_a_node_with_a_live_name_is_refused(zk_hosts: str, zk_root: str, tmp_path: Path,
                                            docker_test_image: str,
                                            docker_labels: dict[str, str]) -> None:
    zk = f"{zk_hosts}{zk_root}"
    job = unique_name("web")
    name = unique_name("n")
    with processes() as procs:
        procs.append(conductor("c1", zk, tmp_path))
        first = node_at(name, "127.0.0.1", zk, tmp_path, docker_labels)
        procs.append(first)
        eventually(lambda: helios_json("nodes", "--zk", zk), 60, "node up",
                   diagnostics=lambda: diag(procs))
        f = write_job(tmp_path / "web.json", web(job, docker_test_image, 1))
        r = helios("job", "run", str(f), "--wait", "--timeout", "90", "--zk", zk, timeout=120)
        assert r.returncode == 0, r.stderr + diag(procs)
        before = containers(docker_labels)
        assert len(before) == 1

        second = node_at(name, "127.0.0.1", zk, tmp_path, docker_labels, state="other")
        procs.append(second)
        assert second.proc is not None
        code = second.proc.wait(30)
        assert code != 0
        lines = [ln for ln in second.log.read_text().splitlines() if ln.startswith("error:")]
        assert len(lines) == 1 and f"node {name} is already running" in lines[0], \
            second.tail()
        assert "Traceback" not in second.log.read_text()
        assert containers(docker_labels) == before  # the first one's container is untouched
        assert first.alive()


def test_a_second_solo_leaves_the_first_alone(tmp_path: Path,
                                              docker_test_image: str) -> None:
    names: list[str] = []
    try:
        with processes() as procs:
            one, addr1 = start_solo(procs, tmp_path, "docker", state="one")
            (n1,) = [n["name"] for n in helios_json("nodes", "--conductor", addr1)]
            names.append(n1)
            assert (tmp_path / "one" / "node-name").read_text().strip() == n1
            f = write_job(tmp_path / "web.json", web("web", docker_test_image, 1))
            r = helios("job", "run", str(f), "--wait", "--timeout", "90", "--conductor",
                       addr1, timeout=120)
            assert r.returncode == 0, r.stderr + one.tail()
            before = node_containers(n1)
            assert len(before) == 1

            _, addr2 = start_solo(procs, tmp_path, "docker", state="two")
            (n2,) = [n["name"] for n in helios_json("nodes", "--conductor", addr2)]
            names.append(n2)
            assert n2 != n1
            # nothing to wait for: the point is that nothing happens to n1's container
            # while the second node adopts or removes what it considers its own
            time.sleep(3)
            assert node_containers(n1) == before
            st = json.loads(helios("job", "status", "web", "--json", "--conductor",
                                   addr1).stdout)
            assert [t["state"] for t in st["tasks"]] == ["running"]
            assert helios("job", "rm", "web", "--conductor", addr1).returncode == 0
            eventually(lambda: not node_containers(n1), 60, "container removed")
    finally:
        for n in names:
            ids = node_containers(n)
            if ids:
                subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=60)
