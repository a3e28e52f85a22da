"""ZooKeeper ACLs with real daemons on a real ZooKeeper: `helios conductor` and `helios
node` load their credentials, every znode they create carries digest ACLs, and a node's
credential can neither rewrite `/jobs` nor bump `/conductors/epoch`. Without credentials
(the defence off) the same node can do both."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from kazoo.client import KazooClient
from kazoo.security import Permissions

from helios.coordination import NotAuthorized, open_zookeeper, paths
from helios.coordination.acl import (
    conductor_credential,
    issue_node_credential,
    parse_credential,
)
from helios.coordination.election import current_epoch
from helios.coordination.store import Set
from tests.fixtures.common import free_port
from tests.integration.procs import HELIOS, Proc, eventually, processes

from .procs import clean_env

pytestmark = [pytest.mark.zookeeper, pytest.mark.slow]

SECRET = "a-cluster-secret-of-some-length"


def _walk(client: KazooClient, path: str) -> list[str]:
    out = [path]
    for child in client.get_children(path):
        out += _walk(client, f"{path.rstrip('/')}/{child}")
    return out


def _start_cluster(procs: list[Proc], zk: str, tmp_path: Path, defended: bool,
                   nodes: list[str]) -> Callable[..., Any]:
    """Start a conductor and process-runtime nodes, each with its ZooKeeper credential
    when `defended`; return a caller of `helios ... --json` (no credential of its own)."""
    import subprocess

    cond_env = clean_env({"HELIOS_ZK_CREDENTIAL": f"conductor:{SECRET}"} if defended else {})
    procs.append(Proc("c1", ["conductor", "--zk", zk, "--listen",
                             f"127.0.0.1:{free_port()}", "--name", "c1",
                             "--session-timeout", "2"], tmp_path, env=cond_env).start())
    for n in nodes:
        line = issue_node_credential(SECRET, n)
        env = clean_env({"HELIOS_ZK_CREDENTIAL": line} if defended else {})
        procs.append(Proc(n, ["node", "--zk", zk, "--name", n, "--runtime", "process",
                              "--state-dir", str(tmp_path / n), "--session-timeout", "2"],
                          tmp_path, env=env).start())

    def cli(*args: str) -> Any:
        r = subprocess.run([*HELIOS, *args, "--json", "--zk", zk], capture_output=True,
                           text=True, timeout=60, env=clean_env())
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    return cli


@pytest.mark.parametrize("defended", [False, True], ids=["no-credentials", "credentials"])
def test_a_nodes_credential_can_neither_rewrite_jobs_nor_bump_the_epoch(
        zk_hosts: str, zk_root: str, tmp_path: Path, defended: bool) -> None:

    zk = f"{zk_hosts}{zk_root}"
    node_line = issue_node_credential(SECRET, "n1")
    with processes() as procs:
        cli = _start_cluster(procs, zk, tmp_path, defended, ["n1"])
        diag = lambda: "\n".join(p.tail(30) for p in procs)  # noqa: E731
        # a client without any credential still finds the leader (world-readable)
        eventually(lambda: [n for n in cli("nodes") if n["status"] == "up"], 60, "n1 up",
                   diagnostics=diag)
        job = tmp_path / "web.json"
        job.write_text(json.dumps({"name": "web", "kind": "service", "count": 1,
                                   "command": ["sleep", "600"]}))
        cli("job", "run", str(job))
        eventually(lambda: cli("job", "status", "web")["tasks"][0]["state"] == "running",
                   60, "web running", diagnostics=diag)
        if defended:
            _every_znode_has_acls(zk_hosts, zk_root)
        trio.run(_node_attacks, zk_hosts, zk_root, node_line, defended)
        if defended:  # and the cluster is unharmed
            assert cli("job", "status", "web")["tasks"][0]["state"] == "running"
    if defended:  # the fixture cannot delete what the ACLs protect
        trio.run(_delete_as_conductor, zk_hosts, zk_root)


def _every_znode_has_acls(hosts: str, root: str) -> None:
    cred = conductor_credential(SECRET)
    client = KazooClient(hosts=hosts, auth_data=list(cred.auth))
    client.start(timeout=10)
    try:
        znodes = _walk(client, root)
        assert len(znodes) > 10
        for path in znodes:
            acls, _ = client.get_acls(path)
            rel = path[len(root):].lstrip("/")
            world = [a for a in acls if a.id.scheme == "world"]
            if rel in ("conductors/leader", "cluster-id"):
                assert [a.perms for a in world] == [Permissions.READ], (path, acls)
            elif rel:
                assert not world, (path, acls)
            if rel:
                assert any(a.id.id == cred.conductor_id and a.perms == Permissions.ALL
                           for a in acls), (path, acls)
    finally:
        client.stop()
        client.close()


async def _node_attacks(hosts: str, root: str, node_line: str, defended: bool) -> None:
    store = await open_zookeeper(hosts, root, session_timeout=4.0,
                                 credential=parse_credential(node_line) if defended else None)
    try:
        job = (await store.get(paths.job("web"))).value
        epoch = await current_epoch(store)
        bumped = {**(await store.get(paths.EPOCH)).value, "epoch": epoch + 100}
        attempts = {
            "rewrite /jobs/web": lambda: store.set(paths.job("web"), {**job, "evil": True}),
            "create /jobs/evil": lambda: store.create(paths.job("evil"), {}),
            "bump the epoch": lambda: store.transaction([Set(paths.EPOCH, bumped)]),
            "set the epoch": lambda: store.set(paths.EPOCH, bumped),
            "move the leader": lambda: store.set("/conductors/leader", {"url": "tcp://evil"}),
        }
        for what, attempt in attempts.items():
            if defended:
                with pytest.raises(NotAuthorized):
                    await attempt()
            else:  # the attack works without ACLs
                await attempt()
                await trio.sleep(0)
            assert what
        if defended:
            assert await current_epoch(store) == epoch
            assert (await store.get(paths.job("web"))).value == job
        else:
            assert await current_epoch(store) > epoch
    finally:
        await store.aclose()


async def _delete_as_conductor(hosts: str, root: str) -> None:
    store = await open_zookeeper(hosts, root, session_timeout=4.0,
                                 credential=conductor_credential(SECRET))
    try:
        await store.delete("/", recursive=True)
    finally:
        await store.aclose()


@pytest.mark.parametrize("defended", [False, True], ids=["no-credentials", "credentials"])
def test_a_nodes_credential_can_neither_withdraw_nor_fake_another_nodes_endpoints(
        zk_hosts: str, zk_root: str, tmp_path: Path, defended: bool) -> None:
    """Two node daemons publish the endpoints of a service spread over both. With
    credentials, the conductor made each node its own `/services/<job>/<node>` and n2's
    credential can neither delete n1's endpoint nor plant one in n1's directory (or a
    directory of a node name it picks). Without credentials (the defence off) both
    attacks work, and a client following the service is fooled."""

    from helios.endpoints import list_endpoints

    zk = f"{zk_hosts}{zk_root}"
    with processes() as procs:
        cli = _start_cluster(procs, zk, tmp_path, defended, ["n1", "n2"])
        diag = lambda: "\n".join(p.tail(30) for p in procs)  # noqa: E731
        eventually(lambda: len([n for n in cli("nodes") if n["status"] == "up"]) == 2, 60,
                   "n1 and n2 up", diagnostics=diag)
        job = tmp_path / "api.json"
        job.write_text(json.dumps({"name": "api", "kind": "service", "count": 2,
                                   "spread": True, "command": ["sleep", "600"],
                                   "ports": {"http": {"container": 8000}}}))
        cli("job", "run", str(job))
        eventually(lambda: len(cli("endpoints", "api")) == 2, 60, "both tasks running",
                   diagnostics=diag)

        def published() -> Any:
            e = trio.run(_list_as_reader, zk_hosts, zk_root, list_endpoints)
            return e if len(e) == 2 else None

        eps = eventually(published, 60, "both endpoints published", diagnostics=diag)
        assert {e["node"] for e in eps} == {"n1", "n2"}, eps
        victim = next(e for e in eps if e["node"] == "n1")
        trio.run(_endpoint_attacks, zk_hosts, zk_root, issue_node_credential(SECRET, "n2"),
                 victim["task"], defended)
        after = trio.run(_list_as_reader, zk_hosts, zk_root, list_endpoints)
        if defended:  # the cluster's view is unharmed
            assert after == eps, after
        else:  # n1's endpoint is gone and clients are sent to the attacker
            assert victim["task"] not in {e["task"] for e in after}, after
            assert {e["host"] for e in after if e["node"] == "n1"} == {"evil.example"}
    if defended:
        trio.run(_delete_as_conductor, zk_hosts, zk_root)


async def _endpoint_attacks(hosts: str, root: str, n2_line: str, victim: str,
                            defended: bool) -> None:
    store = await open_zookeeper(hosts, root, session_timeout=4.0,
                                 credential=parse_credential(n2_line) if defended else None)
    fake = {"task": "api-fake", "node": "n1", "host": "evil.example", "ports": {"http": 1}}
    try:
        attempts = {
            "withdraw n1's endpoint": lambda: store.delete(paths.service("api", "n1",
                                                                         victim)),
            "plant one in n1's directory": lambda: store.create(
                paths.service("api", "n1", "api-fake"), fake, ephemeral=False),
            "make a directory for n3": lambda: store.create(paths.service_node("api", "n3")),
        }
        for what, attempt in attempts.items():
            if defended:
                with pytest.raises(NotAuthorized):
                    await attempt()
            else:
                await attempt()
            assert what
    finally:
        await store.aclose()


async def _list_as_reader(hosts: str, root: str, list_endpoints: Any) -> Any:
    cred = conductor_credential(SECRET)
    store = await open_zookeeper(hosts, root, session_timeout=4.0, credential=cred)
    try:
        return await list_endpoints(store, "api")
    finally:
        await store.aclose()
