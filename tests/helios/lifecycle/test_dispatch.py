"""Dispatch of parameterized jobs on both backends: idempotency keys, payload rules and
limits, fencing; and the node-side payload file."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import trio

from helios.conductor.dispatch import (
    MAX_PAYLOAD_BYTES,
    PAYLOAD_ENV,
    DispatchError,
    PayloadTooLarge,
    dispatch,
    key_path,
)
from helios.coordination import StaleEpoch, Store, leadership, paths
from helios.model import JobRecord
from helios.node.payload import PAYLOAD_CONTAINER_PATH, PAYLOAD_FILE_ENV, materialise_payload
from tests.helios.coordination.conftest import Backend
from tests.helios.lifecycle.conftest import job

NOW = 1_790_000_000.0


def template(rule: str = "optional", name: str = "thumb") -> JobRecord:
    return job(name, "parameterized", payload=rule)


async def runs_of(store: Store, parent: str) -> dict[str, JobRecord]:
    out = {}
    for name in await store.children(paths.JOBS):
        entry = await store.get(paths.job(name))
        if entry is not None and entry.value.get("parent") == parent:
            out[name] = JobRecord.from_dict(entry.value)
    return out


async def test_same_key_twice_gives_one_run(store: Store) -> None:
    async with leadership(store, "c") as term:
        first = await dispatch(term, template(), {"img": "a.png"}, "k-1", now=NOW)
        again = await dispatch(term, template(), {"img": "a.png"}, "k-1", now=NOW + 5)
    assert first.to_dict() == {"job": "thumb", "run": first.run, "created": True}
    assert again.to_dict() == {"job": "thumb", "run": first.run, "created": False}
    assert first.record is not None and again.record is None
    runs = await runs_of(store, "thumb")
    assert list(runs) == [first.run]
    run = runs[first.run]
    assert run.spec.kind == "batch" and run.parent == "thumb" and run.created == NOW
    assert json.loads(run.spec.env[PAYLOAD_ENV]) == {"img": "a.png"}
    assert (await store.get(key_path("thumb", "k-1"))).value["run"] == first.run


async def test_different_keys_and_no_key_give_separate_runs(store: Store) -> None:
    out = [await dispatch(store, template(), "x", key, now=NOW)
           for key in ("k-1", "k-2", None, None, "")]
    assert all(o.created for o in out)
    assert len({o.run for o in out}) == 5
    assert len(await runs_of(store, "thumb")) == 5


async def test_the_same_key_on_another_template_is_another_run(store: Store) -> None:
    a = await dispatch(store, template(name="a"), None, "k", now=NOW)
    b = await dispatch(store, template(name="b"), None, "k", now=NOW)
    assert a.created and b.created and a.run != b.run


async def test_concurrent_dispatches_with_one_key_create_one_run(backend: Backend) -> None:
    stores = [await backend.open() for _ in range(4)]
    results = []
    async with leadership(stores[0], "c") as term:
        async with trio.open_nursery() as n:
            for s in stores:
                for _ in range(3):
                    async def go(s: Store = s) -> None:
                        results.append(await dispatch(s, template(), "p", "order-42", now=NOW))
                    n.start_soon(go)
        assert (await dispatch(term, template(), "p", "order-42", now=NOW)).created is False
    assert sum(r.created for r in results) == 1
    assert len({r.run for r in results}) == 1
    assert len(await runs_of(stores[0], "thumb")) == 1


async def test_a_key_outlives_its_run_record(store: Store) -> None:
    first = await dispatch(store, template(), None, "k", now=NOW)
    await store.delete(paths.job(first.run))         # the run was cleaned up
    again = await dispatch(store, template(), None, "k", now=NOW + 60)
    assert (again.run, again.created) == (first.run, False)
    assert await runs_of(store, "thumb") == {}


@pytest.mark.parametrize(("rule", "payload", "error"), [
    ("required", None, "requires a payload"),
    ("required", "", "requires a payload"),
    ("forbidden", "x", "takes no payload"),
    ("forbidden", {"a": 1}, "takes no payload"),
    ("optional", b"\xff\xfe", "not UTF-8"),
    ("optional", {"n": float("nan")}, "not text or JSON"),
    ("optional", "a\x00b", "NUL"),
])
async def test_payload_rules(store: Store, rule: str, payload: object, error: str) -> None:
    with pytest.raises(DispatchError, match=error):
        await dispatch(store, template(rule), payload, "k", now=NOW)
    assert await runs_of(store, "thumb") == {}
    assert not await store.exists(key_path("thumb", "k"))


@pytest.mark.parametrize(("rule", "payload", "env"), [
    ("optional", None, None),
    ("forbidden", None, None),
    ("required", "plain text", "plain text"),
    ("optional", {"b": [1, 2], "a": "é"}, '{"b":[1,2],"a":"é"}'),
    ("optional", 42, "42"),
    ("optional", b"bytes", "bytes"),
])
async def test_payload_reaches_the_run_env(store: Store, rule: str, payload: object,
                                           env: str | None) -> None:
    out = await dispatch(store, template(rule), payload, None, now=NOW)
    assert out.record is not None
    assert out.record.spec.env.get(PAYLOAD_ENV) == env
    stored = (await runs_of(store, "thumb"))[out.run]
    assert stored.spec.env.get(PAYLOAD_ENV) == env


async def test_oversized_payload_is_refused(store: Store) -> None:
    big = "x" * (MAX_PAYLOAD_BYTES + 1)
    with pytest.raises(PayloadTooLarge, match=f"{MAX_PAYLOAD_BYTES + 1} bytes, over the limit"):
        await dispatch(store, template(), big, "k", now=NOW)
    assert await runs_of(store, "thumb") == {}
    # exactly at the limit (in UTF-8 bytes) goes through, and fits in the store
    at_limit = "é" * (MAX_PAYLOAD_BYTES // 2)
    out = await dispatch(store, template(), at_limit, "k", now=NOW)
    assert out.created
    with pytest.raises(PayloadTooLarge):
        await dispatch(store, template(), "é" * (MAX_PAYLOAD_BYTES // 2 + 1), None, now=NOW)


async def test_only_parameterized_templates_are_dispatched(store: Store) -> None:
    with pytest.raises(DispatchError, match="only parameterized"):
        await dispatch(store, job("b", "batch"), None, None, now=NOW)
    with pytest.raises(DispatchError, match="stopped"):
        await dispatch(store, template().replace(stopped=True), None, None, now=NOW)
    with pytest.raises(DispatchError, match="over 1024"):
        await dispatch(store, template(), None, "k" * 2000, now=NOW)


async def test_a_deposed_leader_dispatches_nothing(backend: Backend) -> None:
    a, b = await backend.open(), await backend.open()
    async with leadership(a, "a") as old:
        pass
    async with leadership(b, "b"):
        with pytest.raises(StaleEpoch):
            await dispatch(old, template(), None, "k", now=NOW)
    assert await runs_of(b, "thumb") == {}
    assert not await b.exists(key_path("thumb", "k"))


def test_materialise_payload(tmp_path: Path) -> None:
    assert materialise_payload({"A": "1"}, tmp_path / "t1", container=False) == {}
    env = {PAYLOAD_ENV: '{"img":"a.png"}'}
    got = materialise_payload(env, tmp_path / "t2", container=False)
    path = Path(got[PAYLOAD_FILE_ENV])
    assert path == tmp_path / "t2" / "payload"
    assert path.read_text() == '{"img":"a.png"}'
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = materialise_payload({PAYLOAD_ENV: "v2"}, tmp_path / "t2", container=True)
    assert again == {PAYLOAD_FILE_ENV: PAYLOAD_CONTAINER_PATH}
    assert path.read_text() == "v2"
    assert sorted(p.name for p in (tmp_path / "t2").iterdir()) == ["payload"]
