"""Pure parts of the node: the restart policy state machine and the state directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from helios.node.restart import RestartTracker, describe_exit
from helios.node.state import StateDir, StateDirLocked, write_atomic
from helios.spec import RestartPolicy


def tracker(policy: str = "always", max: int | None = None, backoff: float = 1.0,
            **kw: float) -> RestartTracker:
    return RestartTracker(RestartPolicy(policy=policy, max=max, backoff=backoff), **kw)


def test_backoff_doubles_and_is_capped() -> None:
    t = tracker(backoff=1.0, backoff_cap=5.0)
    delays = [t.on_exit(1, ran_for=0.1, now=i).delay for i in range(5)]
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert t.restarts == 5


def test_stable_run_resets_backoff() -> None:
    t = tracker(backoff=1.0, stable_after=10.0)
    t.on_exit(1, ran_for=0.1, now=0)
    t.on_exit(1, ran_for=0.1, now=1)
    assert t.on_exit(1, ran_for=60.0, now=100).delay == 1.0


def test_on_failure_max_then_failed_and_success_exits() -> None:
    t = tracker("on-failure", max=2, backoff=0.5)
    assert t.on_exit(3, ran_for=0, now=0).restart
    assert t.on_exit(3, ran_for=0, now=1).restart
    d = t.on_exit(3, ran_for=0, now=2)
    assert not d.restart and d.state == "failed"
    assert "exited with code 3" in d.reason and "gave up after 2 restarts" in d.reason
    ok = tracker("on-failure").on_exit(0, ran_for=1, now=0)
    assert not ok.restart and ok.state == "exited"


def test_never_and_batch_success() -> None:
    d = tracker("never").on_exit(2, ran_for=0, now=0)
    assert not d.restart and d.state == "failed" and d.reason == "exited with code 2"
    d = tracker("always").on_exit(0, ran_for=0, now=0, batch=True)
    assert not d.restart and d.state == "exited"
    assert tracker("always").on_exit(0, ran_for=0, now=0).restart  # a service comes back


def test_flapping_detected_within_window() -> None:
    t = tracker(backoff=0.0, flap_restarts=3, flap_window=60.0)
    assert all(t.on_exit(1, ran_for=40, now=float(i)).restart for i in range(3))
    d = t.on_exit(1, ran_for=40, now=3.0)
    assert not d.restart and d.state == "failed" and d.reason.startswith("flapping")
    t2 = tracker(backoff=0.0, flap_restarts=3, flap_window=10.0)
    assert all(t2.on_exit(1, ran_for=40, now=i * 20.0).restart for i in range(10))


def test_describe_exit() -> None:
    assert describe_exit(137) == "killed by SIGKILL (exit code 137)"
    assert describe_exit(1, oom=True).startswith("killed: out of memory")
    assert describe_exit(None) == "the container disappeared"


def test_state_dir_lock_refuses_a_second_daemon(tmp_path: Path) -> None:
    with StateDir(tmp_path) as first:
        with pytest.raises(StateDirLocked) as ei:
            StateDir(tmp_path).lock()
        assert str(os.getpid()) in str(ei.value) and "--state-dir" in str(ei.value)
        first.save_assignments(3, 7, [{"id": "t1"}], "cid")
    with StateDir(tmp_path) as again:  # released on exit
        assert again.load_assignments() == {"epoch": 3, "generation": 7,
                                            "assignments": [{"id": "t1"}],
                                            "cluster_id": "cid"}


def test_atomic_write_leaves_no_temporary_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    write_atomic(path, {"a": 1})
    write_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]
    assert StateDir(tmp_path / "new").load_assignments()["epoch"] == 0
