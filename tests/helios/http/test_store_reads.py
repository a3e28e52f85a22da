"""Reads with no leader: a conductor that does not lead and knows no leader answers `GET`
of jobs, a job, its history and nodes from the store (marked `X-Helios-Stale: true`),
the same documents the leader gave, while a write is refused with 503. The store is the
one a real `helios solo` left behind; the conductor runs in this process but never
contends (only its front actor is spawned)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

import actors
from helios import protocol
from helios.conductor.conductor import Conductor
from helios.conductor.front import ConductorActor
from helios.coordination import open_embedded
from helios.http import app, forward, serve_http
from tests.fixtures.common import unique_name
from tests.helios.http.support import get_json, request, solo_with_http
from tests.integration.procs import eventually


def record_cluster(tmp: Path, name: str) -> dict[str, Any]:
    """Run a job in a solo, stop it, and return what the leader answered."""
    with solo_with_http(tmp, keep_jobs=True) as solo:
        job = {"name": name, "kind": "service", "command": ["sleep", "600"], "count": 1,
               "grace": "0s", "resources": {"cpus": 0.05, "memory": "8M"}}
        assert request("POST", f"{solo.http}/v1/jobs", job).status == 200
        eventually(lambda: [t["state"] for t in get_json(f"{solo.http}/v1/jobs/{name}")[
            "tasks"]] == ["running"], 30, "running", diagnostics=solo.proc.tail)
        assert request("POST", f"{solo.http}/v1/jobs/{name}/stop").status == 200
        eventually(lambda: [t["state"] for t in get_json(f"{solo.http}/v1/jobs/{name}")[
            "tasks"]] in ([], ["stopped"]), 30, "stopped", diagnostics=solo.proc.tail)
        return {"jobs": get_json(f"{solo.http}/v1/jobs"),
                "job": get_json(f"{solo.http}/v1/jobs/{name}"),
                "history": get_json(f"{solo.http}/v1/jobs/{name}/history"),
                "nodes": get_json(f"{solo.http}/v1/nodes")}


async def test_reads_without_a_leader_come_from_the_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app, "READ_WAIT", 0.3)  # how long a read looks for a leader
    monkeypatch.setattr(forward, "LEADER_WAIT", 0.5)  # and a write
    name = unique_name("ro")
    seen = await trio.to_thread.run_sync(record_cluster, tmp_path, name)
    store = await open_embedded(tmp_path / "state" / "helios.db")
    try:
        async with actors.open_system(name="ro") as system, trio.open_nursery() as nursery:
            conductor = Conductor(store, system, name="ro")
            await system.spawn(ConductorActor, conductor, name=protocol.CONDUCTOR_ACTOR)
            url = await nursery.start(serve_http, conductor, "127.0.0.1:0")

            async def get(path: str) -> Any:
                return await trio.to_thread.run_sync(request, "GET", url + path)

            jobs = await get("/v1/jobs")
            assert jobs.status == 200 and jobs.headers["x-helios-stale"] == "true"
            assert jobs.json() == seen["jobs"]
            job = (await get(f"/v1/jobs/{name}")).json()
            assert {k: job[k] for k in ("name", "kind", "version", "status", "tasks")} == \
                {k: seen["job"][k] for k in ("name", "kind", "version", "status", "tasks")}
            assert (await get(f"/v1/jobs/{name}/history")).json() == seen["history"]
            nodes = (await get("/v1/nodes")).json()
            assert [n["name"] for n in nodes] == [n["name"] for n in seen["nodes"]]
            assert nodes[0]["status"] == "down"  # its solo is gone: no presence
            assert (await get("/v1/jobs/no-such")).status == 404
            # a write needs a leader
            wrote = await trio.to_thread.run_sync(
                lambda: request("POST", f"{url}/v1/jobs/{name}/stop"))
            assert wrote.status == 503 and "leader" in wrote.json()["error"]
            nursery.cancel_scope.cancel()
    finally:
        await store.aclose()
