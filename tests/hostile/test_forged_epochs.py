"""Epochs are the store's word, never a message's: a node that claims the leader's epoch
is stale cannot depose it (the leader asks the store first), on a real ZooKeeper.

The other half (a forged `assign` with an epoch from the future, refused by a real node)
is in test_solo_attacks.py and tests/helios/node/test_process_node.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from helios.coordination import open_zookeeper
from tests.helios.conductor.conftest import MiniCluster, mini_cluster

pytestmark = pytest.mark.zookeeper


@pytest.fixture
async def zk_cluster(tmp_path: Path, zk_hosts: str, zk_root: str
                     ) -> AsyncIterator[MiniCluster]:
    async with mini_cluster(tmp_path, lambda: open_zookeeper(zk_hosts, zk_root,
                                                             session_timeout=2.0)) as mc:
        yield mc


async def test_a_node_that_calls_every_epoch_stale_deposes_no_leader(
        zk_cluster: MiniCluster, caplog: pytest.LogCaptureFixture) -> None:
    c = await zk_cluster.conductor("c1")
    liar = await zk_cluster.node("liar", forge_stale=True)
    await zk_cluster.wait_for(lambda: _leads(zk_cluster, c), what="c1 leads")
    first = await zk_cluster.ask(c, "leader")
    liar_actor = zk_cluster.nodes["liar"][2]._registry[liar.name].actor
    with trio.fail_after(20):
        while liar_actor.assign_calls < 3:  # the leader keeps trying, backing off
            await trio.sleep(0.05)
    await trio.sleep(1.0)  # the liar goes on being asked: the leader must not stand down
    after = await zk_cluster.ask(c, "leader")
    assert after["leader"] and after["epoch"] == first["epoch"]
    assert any("not standing down" in r.getMessage() for r in caplog.records)


async def _leads(mc: MiniCluster, c: object) -> bool:
    info = await mc.ask(c, "leader")  # type: ignore[arg-type]
    return bool(info.get("leader"))
