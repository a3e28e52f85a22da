"""The two gates of a rolling update, against real services (`helios conductor` /
`helios node` subprocesses, a real ZooKeeper, real Docker containers):

- **health, with `update.auto_rollback: false`**: a version whose health check never
  passes (its httpd serves `/`, the health path 404s) fails at its deadline and stays
  failed (`rollout.state` `failed`, no automatic new version); the old tasks are never
  stopped and keep serving every request; a good version afterwards rolls out fully;
- **the registered endpoint** (`reconcile(registered=...)`, fed by the conductor's
  watch of `/services/<job>/<node>`): a new task that is running and healthy but whose
  endpoint the node cannot register (the test takes CREATE away from `/services/<job>`
  and its node directories with ZK ACLs; the node gets NoAuth and keeps retrying) never
  replaces an old task; the rollout fails at its deadline and rolls back; with the ACL
  restored a fresh rollout completes;
- one endpoint the node cannot write must not keep it from publishing the endpoints of
  other jobs (each endpoint is published on its own).

A client follows the endpoints through ZooKeeper and keeps requesting throughout
(`traffic.ServiceClient`): no request may fail. Each test uses its own ZooKeeper root,
node names and container labels, and stops every process it started by PID. No
assertion is about speed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kazoo.exceptions import NoNodeError
from kazoo.security import ACL, OPEN_ACL_UNSAFE, Permissions
from kazoo.security import ANYONE_ID_UNSAFE as ANYONE

from tests.fixtures.common import unique_name
from tests.fixtures.zookeeper import kazoo_client
from tests.integration.procs import Proc, eventually, helios, processes, write_job
from tests.integration.test_cluster import containers, diag, node
from tests.integration.test_lifecycles import (
    history,
    rolled_out,
    serves_only,
    start_cluster,
    status,
    web,
)
from tests.integration.traffic import ServiceClient

pytestmark = [pytest.mark.zookeeper, pytest.mark.slow, pytest.mark.docker]


def registered(kz: Any, directory: str) -> set[str]:
    """The tasks with an endpoint under `/services/<job>` (one directory per node)."""
    out: set[str] = set()
    for name in kz.get_children(directory) if kz.exists(directory) else ():
        try:
            out |= set(kz.get_children(f"{directory}/{name}"))
        except NoNodeError:  # collected in between
            pass
    return out


def refuse_creates(kz: Any, directory: str) -> None:
    """Nobody may create under `directory` or its node directories any more (reading,
    deleting and changing the ACL back stay open)."""
    kz.ensure_path(directory)
    for d in [directory] + [f"{directory}/{n}" for n in kz.get_children(directory)]:
        kz.set_acls(d, [ACL(Permissions.ALL & ~Permissions.CREATE, ANYONE)])


def allow_creates(kz: Any, directory: str) -> None:
    for d in [directory] + [f"{directory}/{n}" for n in kz.get_children(directory)]:
        kz.set_acls(d, OPEN_ACL_UNSAFE)


def deploy(f: Path, spec: dict[str, Any], zk: str, procs: list[Proc]) -> None:
    write_job(f, spec)
    r = helios("job", "run", str(f), "--zk", zk)
    assert r.returncode == 0, r.stderr + diag(procs)


# ---------------------------------------------------------------------------------------
def test_a_failed_rollout_without_auto_rollback_halts_and_the_old_tasks_keep_serving(
        zk_hosts: str, zk_root: str, tmp_path: Path, docker_test_image: str,
        docker_labels: dict[str, str]) -> None:
    zk = f"{zk_hosts}{zk_root}"
    job = unique_name("halt")
    f = tmp_path / "halt.json"

    def spec(v: str, **kw: Any) -> dict[str, Any]:
        doc = web(job, docker_test_image, v, **kw)
        doc["update"]["auto_rollback"] = False
        return doc

    with processes() as procs:
        start_cluster(procs, zk, tmp_path, docker_labels)
        write_job(f, spec("v1"))
        r = helios("job", "run", str(f), "--wait", "--timeout", "120", "--zk", zk,
                   timeout=150)
        assert r.returncode == 0, r.stderr + diag(procs)
        s = eventually(lambda: rolled_out(job, zk, 1), 60, "v1 out",
                       diagnostics=lambda: diag(procs))
        v1 = {t["id"]: t["container"] for t in s["tasks"]}

        with ServiceClient(zk_hosts, zk_root, job) as client:
            # v2 serves `/` (so a client reaching it would see "v2"), but its health
            # check asks for a page that does not exist: it never becomes healthy
            bad = spec("v2", deadline="6s")
            bad["health"]["http"]["path"] = "/no-such-page"
            deploy(f, bad, zk, procs)

            def ended() -> Any:
                s = status(job, zk)
                return s if s["version"] != 2 or s["rollout"]["state"] != "rolling" \
                    else None

            s = eventually(ended, 60, "v2 rollout failed", diagnostics=lambda: diag(procs))
            ro = s["rollout"]
            assert ro["state"] == "failed", s  # not rolled back, not complete
            assert s["version"] == 2 and ro["version"] == 2, s
            assert ro["failed_version"] == 2 and ro["old"] == 3 and ro["updated"] == 0, ro
            # halted, not rolled back: a few more reconciliations change nothing
            # (the conductor reconciles every 2 s, and on every report)
            client.traffic.mark()
            eventually(lambda: serves_only(client, "v1", at_least=300), 60,
                       "answers while the failed rollout is halted")
            s = status(job, zk)
            assert s["version"] == 2 and s["rollout"]["state"] == "failed", s
            live = {t["id"]: t["container"] for t in s["tasks"]
                    if t["state"] == "running" and t["healthy"]}
            assert live == v1, (live, v1)  # the same v1 tasks, same containers
            new = [t for t in s["tasks"] if t["id"] not in v1]
            assert len(new) == 1 and new[0]["healthy"] is not True, new  # parallel 1
            assert set(client.traffic.lists[-1]) == set(v1)
            assert set(client.traffic.bodies) == {"v1"}, client.traffic.bodies

            hist = history(job, zk)
            failed = [e for e in hist if e["state"] == "rollout failed"]
            assert [e["version"] for e in failed] == [2], failed
            assert "not healthy" in failed[0]["reason"], failed
            assert [e["reason"] for e in hist if e["state"] == "submitted"] == [
                "version 1", "version 2"]  # no version made by the conductor itself
            assert not [e for e in hist if e["task"] in v1 and e["state"] == "stop"]
            assert not [e for e in hist if e["state"] in ("rollout replaced",
                                                          "rollout rolled back")]

            # a good v3 rolls out completely from the halted state
            write_job(f, spec("v3"))
            r = helios("job", "run", str(f), "--wait", "--timeout", "120", "--zk", zk,
                       timeout=150)
            assert r.returncode == 0, r.stderr + diag(procs)
            s = eventually(lambda: rolled_out(job, zk, 3), 90, "rollout to v3 complete",
                           diagnostics=lambda: diag(procs))
            assert not {t["id"] for t in s["tasks"]} & set(v1)
            client.traffic.mark()
            seen = eventually(lambda: serves_only(client, "v3"), 60, "answers after v3")
            assert set(seen) == {"v3"}, seen

        t = client.traffic
        t.check_none_failed()
        assert set(t.bodies) == {"v1", "v3"}, t.bodies  # v2 never served anyone
        hist = history(job, zk)
        assert [e["version"] for e in hist if e["state"] == "rollout failed"] == [2]
        assert "rollout complete" in [e["state"] for e in hist]
        eventually(lambda: len(containers({**docker_labels, "io.helios.job": job})) == 3,
                   60, "only the v3 containers left running")


# ---------------------------------------------------------------------------------------
def test_a_healthy_but_unregistered_new_task_never_replaces_an_old_one(
        zk_hosts: str, zk_root: str, tmp_path: Path, docker_test_image: str,
        docker_labels: dict[str, str]) -> None:
    zk = f"{zk_hosts}{zk_root}"
    job = unique_name("gate")
    f = tmp_path / "gate.json"
    directory = f"{zk_root}/services/{job}"
    with processes() as procs, kazoo_client(zk_hosts) as kz:
        start_cluster(procs, zk, tmp_path, docker_labels)
        write_job(f, web(job, docker_test_image, "v1"))
        r = helios("job", "run", str(f), "--wait", "--timeout", "120", "--zk", zk,
                   timeout=150)
        assert r.returncode == 0, r.stderr + diag(procs)
        s = eventually(lambda: rolled_out(job, zk, 1), 60, "v1 out",
                       diagnostics=lambda: diag(procs))
        v1 = {t["id"]: t["container"] for t in s["tasks"]}
        eventually(lambda: registered(kz, directory) == set(v1), 30,
                   "v1 endpoints registered")

        with ServiceClient(zk_hosts, zk_root, job) as client:
            # Nobody may create under /services/<job> any more: the node's registration
            # of a new task fails with NoAuth and it retries; the v1 endpoints stay.
            refuse_creates(kz, directory)
            try:
                deploy(f, web(job, docker_test_image, "v2", deadline="10s"), zk, procs)
                stopped_v1: list[Any] = []
                unregistered: set[str] = set()

                def watch() -> Any:
                    """Every poll: each v1 task still runs healthy; note new tasks seen
                    running + healthy without an endpoint. Done once rolled back."""
                    s = status(job, zk)
                    published = registered(kz, directory)
                    rows = {t["id"]: t for t in s["tasks"]}
                    for tid, container in v1.items():
                        t = rows.get(tid)
                        if t is None or t["state"] != "running" or t["container"] != \
                                container or tid not in published:
                            stopped_v1.append(t or tid)
                    for t in s["tasks"]:
                        if t["id"] not in v1 and t["state"] == "running" and \
                                t["healthy"] is True and t["id"] not in published:
                            unregistered.add(t["id"])
                    if stopped_v1:
                        return "an old task was stopped"  # fail now, not at the timeout
                    return s if s["rollout"]["state"] != "rolling" else None

                s = eventually(watch, 90, "v2 rollout to end", interval=0.5,
                               diagnostics=lambda: diag(procs))
                assert not stopped_v1, stopped_v1[:5]
                assert s["rollout"]["state"] in ("rolling back", "rolled back"), s
                # the precondition of the gate was met: a healthy, unregistered new task
                assert len(unregistered) == 1, unregistered  # parallel 1: one new task
                (new,) = unregistered
                s = eventually(lambda: rolled_out(job, zk, 3, "rolled back"), 60,
                               "rolled back to v1", diagnostics=lambda: diag(procs))
                assert {t["id"]: t["container"] for t in s["tasks"]} == v1
                assert s["rollout"]["failed_version"] == 2
                hist = history(job, zk)
                failed = [e for e in hist if e["state"] == "rollout failed"]
                assert [e["version"] for e in failed] == [2], failed
                assert f"{new} not healthy" in failed[0]["reason"], failed
                assert not [e for e in hist if e["task"] in v1 and e["state"] == "stop"]
                assert not [e for e in hist if e["state"] == "rollout replaced"
                            and e.get("version") == 2]
                assert any(e["task"] == new and e["state"] == "stop" for e in hist)
                assert registered(kz, directory) == set(v1)
            finally:
                allow_creates(kz, directory)

            # registration works again: a fresh rollout goes all the way
            client.traffic.mark()
            assert set(client.traffic.bodies) == {"v1"}, client.traffic.bodies
            deploy(f, web(job, docker_test_image, "v4"), zk, procs)
            s = eventually(lambda: rolled_out(job, zk, 4), 90, "rollout to v4 complete",
                           diagnostics=lambda: diag(procs))
            v4 = {t["id"] for t in s["tasks"]}
            assert not v4 & set(v1) and new not in v4
            eventually(lambda: registered(kz, directory) == v4, 30,
                       "only the v4 endpoints registered")
            client.traffic.mark()
            seen = eventually(lambda: serves_only(client, "v4"), 60, "answers after v4")
            assert set(seen) == {"v4"}, seen

        t = client.traffic
        t.check_none_failed()
        assert set(t.bodies) == {"v1", "v4"}, t.bodies  # v2 never reached a client
        assert not any(new in ts for ts in t.lists)
        replaced = [e for e in history(job, zk) if e["state"] == "rollout replaced"]
        assert sorted(e["slot"] for e in replaced if e.get("version") == 4) == [0, 1, 2]


# ---------------------------------------------------------------------------------------
def test_one_unregistrable_endpoint_does_not_block_another_jobs_endpoints(
        zk_hosts: str, zk_root: str, tmp_path: Path, docker_test_image: str,
        docker_labels: dict[str, str]) -> None:
    zk = f"{zk_hosts}{zk_root}"
    blocked, other = unique_name("locked"), unique_name("free")
    with processes() as procs, kazoo_client(zk_hosts) as kz:
        start_cluster(procs, zk, tmp_path, docker_labels, nodes=1)
        kz.ensure_path(f"{zk_root}/services")
        kz.create(f"{zk_root}/services/{blocked}",
                  acl=[ACL(Permissions.ALL & ~Permissions.CREATE, ANYONE)])
        # (the conductor cannot make the node's directory there, nor can the node)
        try:
            for name in (blocked, other):
                deploy(tmp_path / f"{name}.json",
                       web(name, docker_test_image, "v1", count=1), zk, procs)
                eventually(lambda n=name: [t for t in status(n, zk)["tasks"]
                                           if t["state"] == "running" and t["healthy"]],
                           60, f"{name} running and healthy",
                           diagnostics=lambda: diag(procs))
            (task,) = [t["id"] for t in status(other, zk)["tasks"]]
            # the node retries the blocked one every few seconds; the other job's
            # endpoint, which nothing prevents, must be published meanwhile
            eventually(lambda: registered(kz, f"{zk_root}/services/{other}") == {task},
                       30, f"the endpoint of {task} registered",
                       diagnostics=lambda: diag(procs))
        finally:
            kz.set_acls(f"{zk_root}/services/{blocked}", OPEN_ACL_UNSAFE)


# ---------------------------------------------------------------------------------------
def test_a_slot_left_empty_by_a_stop_first_and_a_lost_node_ends_the_rollout(
        zk_hosts: str, zk_root: str, tmp_path: Path, docker_test_image: str,
        docker_labels: dict[str, str]) -> None:
    """Two nodes with room for one task each: v2 cannot start first, so the old task of
    one slot stops first; that node dies while it drains, and the new task fits nowhere.
    The rollout must not wait for ever: it fails at its deadline (counted from that
    stop-first) and rolls back; when the node comes back its slot fills again."""
    zk = f"{zk_hosts}{zk_root}"
    job = unique_name("svc")
    f = tmp_path / "svc.json"

    def spec(version: str) -> dict[str, Any]:
        return dict(web(job, docker_test_image, version, count=2, deadline="5s"),
                    resources={"cpus": 0.5, "memory": "16M"},
                    grace="8s")  # the drain is the window to kill the node in

    with processes() as procs:
        nodes = start_cluster(procs, zk, tmp_path, docker_labels, cpus="0.5")
        names = list(nodes)
        deploy(f, spec("v1"), zk, procs)
        s = eventually(lambda: rolled_out(job, zk, 1, count=2), 90, "v1 out",
                       diagnostics=lambda: diag(procs))
        where = {t["id"]: t["node"] for t in s["tasks"]}
        assert sorted(where.values()) == sorted(names)  # one per node: no room to surge

        deploy(f, spec("v2"), zk, procs)

        def stopped_first() -> Any:
            evs = [e for e in history(job, zk) if e["state"] == "rollout stop-first"]
            return evs[0] if evs else None

        first = eventually(stopped_first, 60, "a stop-first", interval=0.1,
                           diagnostics=lambda: diag(procs))
        victim = where[first["old"]]
        nodes[victim].kill()  # while its old task drains: its slot has nowhere to go

        s = eventually(lambda: (lambda x: x if x["rollout"]["failed_version"] == 2
                                else None)(status(job, zk)), 60,
                       "v2 failed for its empty slot", diagnostics=lambda: diag(procs))
        failed = [e for e in history(job, zk) if e["state"] == "rollout failed"]
        assert failed[0]["version"] == 2, failed
        assert "has had no task for 5s" in failed[0]["reason"], failed[0]
        assert s["version"] >= 3  # rolled back to the v1 spec as a new version
        survivor = next(t for t in s["tasks"] if t["node"] != victim
                        and t["state"] == "running")
        assert survivor["id"] in where  # the other slot's v1 task kept running throughout

        # The node comes back (same name and state): the slot fills, the job is whole.
        procs.append(node(victim, zk, tmp_path, docker_labels, cpus="0.5"))
        version = s["version"]
        # (`rolled back`, or `complete` when the rollback itself missed its deadline
        # while the node was away and only then found its room)
        s = eventually(lambda: rolled_out(job, zk, version, "rolled back", count=2)
                       or rolled_out(job, zk, version, "complete", count=2), 90,
                       "the rolled-back job whole again", diagnostics=lambda: diag(procs))
        assert survivor["id"] in {t["id"] for t in s["tasks"]}
        assert len(containers(docker_labels)) == 2
