"""Diffing the leader's cache into fenced writes, on the embedded store: the fewest ops,
node stamps, statuses left to nodes, and a deposed leader's writes refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from helios.conductor.plan import ClusterState
from helios.conductor.snapshot import load_snapshot
from helios.conductor.store_writer import (
    Persisted,
    Writer,
    chunks,
    diff_ops,
    service_dir_ops,
)
from helios.coordination import open_embedded, paths
from helios.coordination.election import leadership
from helios.coordination.errors import StaleEpoch
from helios.coordination.guard import init_cluster
from helios.coordination.store import Create, Delete, Set
from helios.model import Assignment, JobRecord, TaskStatus
from helios.spec import validate

SPEC = validate({"name": "web", "image": "x", "count": 2,
                 "resources": {"cpus": 0.5, "memory": "32M"}})


def task(i: int, node: str = "n1", desired: str = "run") -> Assignment:
    return Assignment(id=f"web-{i}", job="web", version=1, node=node, index=i,
                      desired=desired, fingerprint=SPEC.fingerprint(), spec=SPEC)


def test_diff_writes_only_changes_and_stamps_touched_nodes() -> None:
    old = ClusterState.of(jobs=[JobRecord(SPEC)], assignments=[task(0)])
    new = old.copy()
    new.assignments["web-1"] = task(1, "n2")
    new.assignments["web-0"] = task(0).replace(desired="stop")
    new.statuses["web-1"] = TaskStatus(id="web-1", node="n2", job="web", state="running")
    dirs = {paths.assignments("n1")}
    ops, status_deletes = diff_ops(old, new, dirs, {"epoch": 3, "generation": 7})
    kinds = [(type(o).__name__, o.path) for o in ops]
    assert ("Set", paths.assignments("n1")) in kinds
    assert ("Create", paths.assignments("n2")) in kinds
    assert ("Create", paths.assignment("n2", "web-1")) in kinds
    assert ("Set", paths.assignment("n1", "web-0")) in kinds
    assert not any(p.startswith(paths.STATUS) for _, p in kinds)  # statuses: the nodes'
    assert status_deletes == []
    stamp = next(o for o in ops if isinstance(o, Set) and o.path == paths.assignments("n1"))
    assert stamp.value == {"epoch": 3, "generation": 7}
    # a directory is created before the task inside it
    assert kinds.index(("Create", paths.assignments("n2"))) < \
        kinds.index(("Create", paths.assignment("n2", "web-1")))
    # nothing changed: nothing to write
    assert diff_ops(new, new, dirs | {paths.assignments("n2")}) == ([], [])
    # removing a task and its status
    gone = new.copy()
    del gone.assignments["web-0"]
    del gone.statuses["web-1"]
    ops, status_deletes = diff_ops(new, gone, dirs)
    assert Delete(paths.assignment("n1", "web-0")) in ops
    assert status_deletes == [paths.status("n2", "web-1")]


def test_chunks_respect_op_and_byte_limits() -> None:
    ops = [Create(f"/x/{i}", {"v": "a" * 100}) for i in range(450)]
    parts = chunks(ops, max_ops=200)
    assert [len(p) for p in parts] == [200, 200, 50]
    assert [o for p in parts for o in p] == ops
    assert all(len(p) < 100 for p in chunks(ops, max_ops=1000, max_bytes=10_000))


async def test_flush_round_trips_and_deposed_leader_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    async with await open_embedded(db) as s1, await open_embedded(db) as s2:
        await init_cluster(s1)
        async with leadership(s1, "old") as term:
            w = Writer(term, Persisted())
            state = ClusterState.of(jobs=[JobRecord(SPEC)], assignments=[task(0), task(1)])
            n = await w.flush(state, stamp={"epoch": term.epoch, "generation": 1})
            assert n == 4  # job, node dir, two tasks
            assert await w.flush(state) == 0  # level: nothing new
            snap = await load_snapshot(s1)
            assert set(snap.state.assignments) == {"web-0", "web-1"}
            assert snap.state.jobs["web"].spec == SPEC
            assert (await s1.get(paths.assignments("n1"))).value == {
                "epoch": term.epoch, "generation": 1}
            # a newer leader claims (the old one's session still lives: it has not noticed)
            await s1.delete(term.node)
            async with leadership(s2, "new") as newer:
                assert newer.epoch > term.epoch
                changed = state.copy()
                changed.assignments["web-2"] = task(2)
                with pytest.raises(StaleEpoch):
                    await w.flush(changed)
                assert not await s2.exists(paths.assignment("n1", "web-2"))


async def test_writer_repairs_a_cache_that_disagrees_with_the_store(tmp_path: Path) -> None:
    async with await open_embedded(tmp_path / "s.db") as store:
        await init_cluster(store)
        async with leadership(store, "c") as term:
            # the cache thinks the job is absent, but the store has it: Create -> Set
            await store.create(paths.job("web"), {"junk": True})
            w = Writer(term, Persisted())
            state = ClusterState.of(jobs=[JobRecord(SPEC, version=2)], assignments=[task(0)])
            await w.flush(state)
            assert (await store.get(paths.job("web"))).value["version"] == 2
            # and a task deleted behind its back is simply gone
            await store.delete(paths.assignment("n1", "web-0"))
            gone = state.copy()
            del gone.assignments["web-0"]
            await w.flush(gone)
            assert not await store.exists(paths.assignment("n1", "web-0"))


SERVICE = validate({"name": "api", "image": "x", "count": 2,
                    "ports": {"http": {"container": 80}}})


def api(i: int, node: str) -> Assignment:
    return Assignment(id=f"api-{i}", job="api", version=1, node=node, index=i,
                      fingerprint=SERVICE.fingerprint(), spec=SERVICE)


def test_a_node_given_a_service_gets_its_endpoint_directory_first() -> None:
    """The conductor makes `/services/<job>/<node>` (nodes may not: ACLs) once, before
    the assignment that needs it; batch jobs and known directories get none."""
    old = ClusterState.of(jobs=[JobRecord(SPEC), JobRecord(SERVICE)])
    new = old.copy()
    new.assignments["api-0"] = api(0, "n1")
    new.assignments["api-1"] = api(1, "n2")
    new.assignments["web-0"] = task(0, "n3")  # no ports: nothing to publish
    dirs = {paths.SERVICES, paths.service_node("api", "n2")}
    ops = service_dir_ops(old, new, dirs)
    assert [o.path for o in ops] == [paths.services("api"), paths.service_node("api", "n1")]
    assert all(isinstance(o, Create) for o in ops)
    assert paths.service_node("api", "n1") in dirs
    assert service_dir_ops(old, new, dirs) == []  # made once
    # moving a task to another node makes that node's directory
    moved = new.copy()
    moved.assignments["api-0"] = api(0, "n4")
    assert service_dir_ops(new, moved, dirs) == [Create(paths.service_node("api", "n4"))]


async def test_the_writer_makes_endpoint_directories_before_assignments(
        tmp_path: Path) -> None:
    """(One it cannot make, a refused ACL, does not keep the assignments from being
    written: tests/integration/test_rollout_gates.py.)"""
    async with await open_embedded(tmp_path / "s.db") as store:
        await init_cluster(store)
        async with leadership(store, "c") as term:
            w = Writer(term, Persisted())
            state = ClusterState.of(jobs=[JobRecord(SERVICE)],
                                    assignments=[api(0, "n1"), api(1, "n2")])
            await w.flush(state)
            assert await store.children(paths.services("api")) == ["n1", "n2"]
            assert await store.exists(paths.assignment("n2", "api-1"))


async def test_a_failed_flush_does_not_count_its_directories_as_made(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    async with await open_embedded(db) as s1, await open_embedded(db) as s2:
        await init_cluster(s1)
        async with leadership(s1, "old") as term:
            w = Writer(term, Persisted())
            state = ClusterState.of(jobs=[JobRecord(SERVICE)], assignments=[api(0, "n1")])
            await s1.delete(term.node)
            async with leadership(s2, "new"):  # deposed: the flush fails
                with pytest.raises(StaleEpoch):
                    await w.flush(state)
            assert paths.service_node("api", "n1") not in w.persisted.dirs
