"""A real node and real Docker receiving secret values the way the leader pushes them
(`"secrets"` beside each assignment): the values reach the container and pull
credentials, a task whose values did not come waits `pending` naming the secret, and
the node writes no value to its state directory. The conductor above is the tests'
fake (helios.secrets.resolve.ConductorSecrets.attach is what adds `"secrets"`)."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.common import unique_name
from tests.fixtures.docker import docker_cli, remove_containers
from tests.helios.node.conftest import assignment, node_running

pytestmark = pytest.mark.docker


@pytest.fixture
def node_kw(docker_labels: dict[str, str]) -> Iterator[dict[str, Any]]:
    name = unique_name("node")
    yield {"name": name, "container_labels": docker_labels}
    remove_containers(f"io.helios.node={name}")


def state_files(root: Path) -> Iterator[tuple[Path, bytes]]:
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            p = Path(dirpath, n)
            if p.is_file() and not p.is_symlink():
                yield p, p.read_bytes()


async def test_values_reach_the_container_only_when_pushed_and_never_the_node_files(
        tmp_path: Path, node_kw: dict[str, Any], docker_test_image: str,
        docker_registry_auth: Any) -> None:
    reg = docker_registry_auth
    ref = reg.push(docker_test_image, f"helios/{unique_name('private')}:1")
    value = "pw-" + secrets.token_hex(12)
    creds = json.dumps({"username": reg.username, "password": reg.password})
    try:
        async with node_running(tmp_path / "state", **node_kw) as node:
            a = assignment(node.name, {
                "name": "private", "image": ref, "command": ["sleep", "300"], "grace": 0,
                "env": {"DB_PASSWORD": {"secret": "db", "rev": "01"}},
                "registry_auth": {"secret": "regcred", "rev": "02"}})
            # as read from the store (a node that restarted without a conductor)
            await node.assign([a])
            s = await node.wait_state(a["id"], "pending")
            s = await node.wait_for(a["id"], lambda s: "not delivered" in s["reason"],
                                    what="a reason naming the secret")
            assert "'db'" in s["reason"] or "'regcred'" in s["reason"], s
            # the leader's push brings the values
            await node.assign([a | {"secrets": {"db": value, "regcred": creds}}])
            s = await node.wait_state(a["id"], "running", timeout=60)
            env = json.loads(docker_cli("inspect", s["container"]).stdout)[0]["Config"]["Env"]
            assert f"DB_PASSWORD={value}" in env
            saved = [p for p, data in state_files(tmp_path / "state")]
            assert saved  # the scan sees the node's files
            assert not [str(p) for p, data in state_files(tmp_path / "state")
                        if value.encode() in data or reg.password.encode() in data]
    finally:
        docker_cli("rmi", ref, check=False)
