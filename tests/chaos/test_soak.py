"""The short chaos soak (issue 18), run in CI: a real 3-server ZooKeeper ensemble, two
conductors and three node daemons on a Docker daemon the soak starts for itself, two
minutes of seeded faults (SIGKILL of nodes, conductors, containers and a ZooKeeper server;
SIGSTOP/SIGCONT of the leader and of nodes; partitions of a node from ZooKeeper or from
the conductors in network namespaces this test makes; restarts of the soak's Docker
daemon; node drains) while services roll, batch jobs run, a per-second
cron job ticks and keyed dispatches are retried. Every checker of tests/chaos/checkers.py
must pass on the recorded history.

The seed is `HELIOS_SOAK_SEED` when set (a seed chosen from outside), else drawn and
printed; a failure prints it with the violations and the fault history, and leaves the
work directory (logs, history.jsonl) for `bench/chaos_soak.py --check`.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.chaos.cluster import BRIDGE_PREFIX, DOCKERD_PREFIX, NS_PREFIX
from tests.chaos.soak import (
    DEFAULT_FAULTS,
    Soak,
    SoakConfig,
    fault_plan,
    op_plan,
    report,
    save,
)
from tests.fixtures.common import service_missing
from tests.fixtures.docker import TEST_LABEL, docker_cli
from tests.fixtures.zookeeper import zookeeper_available

MINUTES = float(os.environ.get("HELIOS_SOAK_MINUTES", "2"))


def test_plans_are_a_function_of_the_seed() -> None:
    """The same seed replays the same faults and operations; another seed does not."""
    assert fault_plan(7, DEFAULT_FAULTS, 50) == fault_plan(7, DEFAULT_FAULTS, 50)
    assert op_plan(7, 50) == op_plan(7, 50)
    assert fault_plan(7, DEFAULT_FAULTS, 50) != fault_plan(8, DEFAULT_FAULTS, 50)
    kinds = {f.kind for f in fault_plan(7, DEFAULT_FAULTS, 200)}
    assert kinds == set(DEFAULT_FAULTS)  # every kind comes up
    assert "drain" in DEFAULT_FAULTS


def _netns_possible() -> bool:
    return os.geteuid() == 0 and all(shutil.which(t) for t in ("ip", "iptables", "nsenter",
                                                                "dockerd"))


@pytest.mark.slow
@pytest.mark.zookeeper
@pytest.mark.docker
def test_short_soak_loses_nothing(tmp_path: Path, docker_test_image: str) -> None:
    if not zookeeper_available():
        service_missing("ZooKeeper")
    if not _netns_possible():
        service_missing("root with ip, iptables, nsenter and dockerd (network namespaces "
                        "for partitions, a Docker daemon of the soak's own)")
    seed = int(os.environ.get("HELIOS_SOAK_SEED") or random.randrange(1, 1_000_000))
    print(f"chaos soak seed {seed} ({MINUTES:g} min); replay: python bench/chaos_soak.py "
          f"--seed {seed} --minutes {MINUTES:g}")
    cfg = SoakConfig(seed=seed, minutes=MINUTES, workdir=tmp_path / "soak",
                     faults=DEFAULT_FAULTS)
    history = Soak(cfg).run()
    save(history, tmp_path / "history.jsonl")
    ok, text = report(history)
    print(text)
    assert ok, f"{text}\nhistory: {tmp_path / 'history.jsonl'}"
    kinds = {e["kind"] for e in history if e.get("type") == "fault"}
    assert kinds, "no fault was injected"
    assert all(k in DEFAULT_FAULTS for k in kinds)
    assert any(e.get("type") == "final" for e in history)
    # nothing is left behind: namespaces, veth pairs, the soak's dockerd and bridge, and
    # no container of the soak went to the shared daemon
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                          timeout=30).stdout
    assert f"{NS_PREFIX}-{os.getpid()}-" not in left, left
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                           timeout=30).stdout
    assert f"{BRIDGE_PREFIX}{os.getpid()}:" not in links, links
    assert not Path(f"/run/{DOCKERD_PREFIX}{os.getpid()}.pid").exists()
    run = next(e["run"] for e in history if e.get("type") == "meta")
    assert not docker_cli("ps", "-aq", "--filter", f"label={TEST_LABEL}=soak-{run}"
                          ).stdout.split()
