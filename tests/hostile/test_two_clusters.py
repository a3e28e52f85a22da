"""Two clusters on one Docker daemon, each with a node of the same name: neither node
adopts or removes the other's containers (they carry `io.helios.cluster`).

Without the cluster label, the second cluster's node lists the first one's container by
`io.helios.node` alone, finds no assignment for it, and removes it as an orphan."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.common import unique_name
from tests.fixtures.docker import docker_cli
from tests.fixtures.zookeeper import delete_root
from tests.integration.procs import eventually, helios_json, processes, write_job
from tests.integration.test_cluster import conductor, node

pytestmark = [pytest.mark.zookeeper, pytest.mark.docker, pytest.mark.slow]


@contextmanager
def _roots_removed(hosts: str, roots: list[str]) -> Iterator[None]:
    try:
        yield
    finally:
        for root in roots:
            delete_root(hosts, root)


def _running(job: str, zk: str) -> dict[str, Any] | None:
    s = helios_json("job", "status", job, "--zk", zk)
    tasks = [t for t in s["tasks"] if t["state"] == "running" and t["container"]]
    return tasks[0] if tasks else None


def test_same_node_name_in_two_clusters_leaves_each_others_containers(
        zk_hosts: str, tmp_path: Path, docker_labels: dict[str, str],
        docker_test_image: str) -> None:
    roots = ["/" + unique_name("cluster-a"), "/" + unique_name("cluster-b")]
    zk_a, zk_b = (zk_hosts + r for r in roots)
    shared = unique_name("n")
    job = {"name": "sleeper", "image": docker_test_image, "command": ["sleep", "300"],
           "grace": 0, "resources": {"cpus": 0.1, "memory": "16M"}}
    with processes() as procs, _roots_removed(zk_hosts, roots):
        tmp_a, tmp_b = tmp_path / "a", tmp_path / "b"
        tmp_a.mkdir()
        tmp_b.mkdir()
        procs.append(conductor("ca", zk_a, tmp_a))
        procs.append(node(shared, zk_a, tmp_a, docker_labels))
        helios_json("job", "run", str(write_job(tmp_a / "j.json", job)), "--zk", zk_a)
        task_a = eventually(lambda: _running("sleeper", zk_a), 60, "cluster A's task")

        procs.append(conductor("cb", zk_b, tmp_b))
        procs.append(node(shared, zk_b, tmp_b, docker_labels))
        helios_json("job", "run", str(write_job(tmp_b / "j.json", job)), "--zk", zk_b)
        task_b = eventually(lambda: _running("sleeper", zk_b), 60, "cluster B's task")
        assert task_b["container"] != task_a["container"]

        labels = docker_cli("inspect", "-f", '{{index .Config.Labels "io.helios.cluster"}}',
                            task_a["container"], task_b["container"]).stdout.split()
        assert len(set(labels)) == 2 and all(labels)
        time.sleep(4)  # several reconciliation passes of both nodes
        node_a, node_b = procs[1], procs[3]
        for task, zk, other in ((task_a, zk_a, node_b), (task_b, zk_b, node_a)):
            cid = task["container"][:12]
            # the other cluster's node never as much as tried to remove it
            assert cid not in other.log.read_text(errors="replace"), other.tail()
            state = docker_cli("inspect", "-f", "{{.State.Running}}", task["container"],
                               check=False)
            if state.stdout.strip() != "true":
                # only its own cluster may have replaced it (a session lost under load)
                events = [e["state"] for e in helios_json("job", "history", "sleeper",
                                                          "--zk", zk)
                          if e.get("task") == task["id"]]
                assert "lost" in events or "stop" in events, (task, events)
