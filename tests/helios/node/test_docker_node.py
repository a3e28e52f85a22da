"""The node daemon against the real Docker daemon (in-process node, fake conductor).

Each test runs its own node (unique name) and labels every container with the test's
cleanup label, so teardown removes what a failing test leaves behind.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import trio

import actors
from helios.node.runtime import LABEL_JOB, LABEL_NODE, LABEL_TASK
from tests.fixtures.common import free_port, unique_name
from tests.fixtures.docker import docker_cli, remove_containers
from tests.helios.node.conftest import assignment, node_running

pytestmark = pytest.mark.docker

HTTPD = ["httpd", "-f", "-p", "8080", "-h", "/www"]


@pytest.fixture
def node_kw(docker_labels: dict[str, str], docker_test_image: str, tmp_path: Path):
    name = unique_name("node")
    yield {"name": name, "container_labels": docker_labels}
    remove_containers(f"{LABEL_NODE}={name}")


def inspect(cid: str) -> dict:
    return json.loads(docker_cli("inspect", cid).stdout)[0]


async def test_http_service_goes_running_and_healthy(tmp_path, node_kw, docker_test_image):
    async with node_running(tmp_path / "state", **node_kw) as node:
        job = {"name": "web", "image": docker_test_image, "command": HTTPD,
               "ports": {"http": {"container": 8080}},
               "resources": {"cpus": 0.25, "memory": "32M"},
               "health": {"http": {"port": "http", "path": "/"}, "interval": "500ms",
                          "timeout": "1s"},
               "grace": "1s"}
        a = assignment(node.name, job)
        assert (await node.assign([a]))["accepted"]
        s = await node.wait_for(a["id"], lambda s: s["state"] == "running" and s["healthy"],
                                what="running and healthy")
        port = s["ports"]["http"]
        assert 21000 <= port <= 21999
        with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            answer = b""
            for _ in range(100):  # HTTP/1.0: the server closes when done; bounded
                chunk = conn.recv(4096)
                if not chunk:
                    break
                answer += chunk
            assert b"hello from helios" in answer
        await node.wait_event(a["id"], "running")
        assert node.events(a["id"]) == ["starting", "healthchecking", "running"]
        # limits, labels and the log driver are on the container
        info = inspect(s["container"])
        host = info["HostConfig"]
        assert host["NanoCpus"] == 250_000_000 and host["Memory"] == 32 * 1024 * 1024
        assert host["LogConfig"]["Type"] == "json-file"
        labels = info["Config"]["Labels"]
        assert labels[LABEL_NODE] == node.name and labels[LABEL_JOB] == "web"
        assert labels[LABEL_TASK] == a["id"]
        # info() counts the task's reservation
        info_ = await node.ref.ask("info")
        assert info_["tasks"] == 1 and info_["cpus_free"] == pytest.approx(info_["cpus"] - 0.25)


async def test_crashing_container_restarts_with_backoff_then_fails(tmp_path, node_kw,
                                                                    docker_test_image):
    async with node_running(tmp_path / "state", **node_kw) as node:
        job = {"name": "crasher", "image": docker_test_image,
               "command": ["sh", "-c", "echo boom; exit 3"],
               "restart": {"policy": "on-failure", "max": 2, "backoff": "100ms"}}
        a = assignment(node.name, job)
        await node.assign([a])
        s = await node.wait_state(a["id"], "failed", timeout=60)
        assert s["restarts"] == 2 and s["exit_code"] == 3
        assert "exited with code 3" in s["reason"] and "gave up after 2 restarts" in s["reason"]
        reasons = [e["reason"] for e in node.conductor.events
                   if e["id"] == a["id"] and e["state"] == "pending" and e["reason"]]
        assert any("restarting in 0.1s" in r for r in reasons), reasons
        assert any("restarting in 0.2s" in r for r in reasons), reasons  # backoff doubled
        # the failed container is kept for its logs; the same container was restarted
        with trio.fail_after(10):
            while len((logs := await node.ref.ask("logs", a["id"]))["lines"]) < 3:
                await trio.sleep(0.05)
        assert logs["lines"] == ["boom", "boom", "boom"]


async def test_stale_epoch_refused_and_generation_ordering(tmp_path, node_kw,
                                                           docker_test_image):
    async with node_running(tmp_path / "state", **node_kw) as node:
        job = {"name": "idle", "image": docker_test_image, "command": ["sleep", "300"],
               "grace": 0}
        a = assignment(node.name, job)
        assert (await node.assign([a], epoch=5, generation=3))["accepted"]
        await node.wait_state(a["id"], "running")
        with pytest.raises(actors.RemoteError) as ei:
            await node.assign([], epoch=4, generation=10)
        assert ei.value.type_name == "StaleEpoch"
        # an older generation of the current epoch is ignored, not applied
        reply = await node.assign([], epoch=5, generation=2)
        assert reply["accepted"] is False and reply["generation"] == 3
        s = await node.status(a["id"])  # the front restarted; the node still answers
        assert s is not None and s["state"] == "running"
        # a newer epoch is taken
        assert (await node.assign([], epoch=6, generation=1))["accepted"]
        await node.wait_event(a["id"], "stopped")


async def test_image_failures_have_clear_reasons(tmp_path, node_kw, docker_test_image,
                                                 docker_registry):
    async with node_running(tmp_path / "state", **node_kw) as node:
        bad = assignment(node.name, {"name": "bad", "image": "local/UPPER:1",
                                     "command": ["true"]})
        missing_ref = f"{docker_registry.host}/helios/{unique_name('absent')}:1"
        missing = assignment(node.name, {"name": "missing", "image": missing_ref,
                                         "command": ["true"]})
        unreachable_ref = f"127.0.0.1:{free_port()}/helios/app:1"
        unreachable = assignment(node.name, {"name": "unreachable", "image": unreachable_ref,
                                             "command": ["true"]})
        await node.assign([bad, missing, unreachable])
        s = await node.wait_state(bad["id"], "failed")
        assert "not a valid Docker image reference" in s["reason"]
        s = await node.wait_state(missing["id"], "failed")
        assert missing_ref in s["reason"] and "not found" in s["reason"]
        s = await node.wait_state(unreachable["id"], "failed")
        assert "unreachable" in s["reason"] and "127.0.0.1" in s["reason"]
        await node.wait_event(missing["id"], "failed")
        assert node.events(missing["id"]) == ["pulling", "failed"]


async def test_logs_with_cursor_and_tail(tmp_path, node_kw, docker_test_image):
    async with node_running(tmp_path / "state", **node_kw) as node:
        job = {"name": "talker", "image": docker_test_image,
               "command": ["sh", "-c", "echo one; echo two; echo three; sleep 300"],
               "grace": 0}
        a = assignment(node.name, job)
        await node.assign([a])
        await node.wait_state(a["id"], "running")
        with trio.fail_after(10):
            while len((await node.ref.ask("logs", a["id"]))["lines"]) < 3:
                await trio.sleep(0.05)
        out = await node.ref.ask("logs", a["id"])
        assert out["lines"] == ["one", "two", "three"]
        assert (await node.ref.ask("logs", a["id"], since=out["cursor"]))["lines"] == []
        tail = await node.ref.ask("logs", a["id"], tail=1)
        assert tail["lines"] == ["three"]
        assert (await node.ref.ask("logs", a["id"], since=tail["cursor"]))["lines"] == []
        # an older client's cursor (a line count) still works
        assert (await node.ref.ask("logs", a["id"], since=1.0))["lines"] == ["two", "three"]
        unknown = await node.ref.ask("logs", "no-such-task")
        assert unknown["lines"] == [] and "not on node" in unknown["error"]


async def test_ports_fixed_conflict_refused_and_fluentd_driver(tmp_path, node_kw,
                                                               docker_test_image,
                                                               fluentd_receiver):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    taken = holder.getsockname()[1]
    try:
        async with node_running(tmp_path / "state", **node_kw) as node:
            clash = assignment(node.name, {
                "name": "clash", "image": docker_test_image, "command": HTTPD,
                "ports": {"http": {"container": 8080, "host": taken}}})
            logged = assignment(node.name, {
                "name": "logged", "image": docker_test_image,
                "command": ["sh", "-c", "echo to-fluentd; sleep 300"], "grace": 0,
                "log": {"driver": "fluentd", "options": {
                    "fluentd-address": f"127.0.0.1:{fluentd_receiver.port}",
                    "tag": "helios.test"}}})
            await node.assign([clash, logged])
            s = await node.wait_state(clash["id"], "failed")
            assert str(taken) in s["reason"] and "in use" in s["reason"]
            s = await node.wait_state(logged["id"], "running")
            assert inspect(s["container"])["HostConfig"]["LogConfig"]["Type"] == "fluentd"
            await fluentd_receiver.wait_for(lambda r: "to-fluentd" in r.logs(), timeout=20)
    finally:
        holder.close()


async def test_restart_adopts_running_containers_and_removes_orphans(tmp_path, node_kw,
                                                                    docker_test_image):
    state = tmp_path / "state"
    job = {"name": "keep", "image": docker_test_image, "command": ["sleep", "300"],
           "grace": 0}
    async with node_running(state, **node_kw) as node:
        keep = assignment(node.name, job)
        await node.assign([keep])
        first = await node.wait_state(keep["id"], "running")
    started = inspect(first["container"])["State"]["StartedAt"]
    # a container of this node that no assignment owns (left by an old task)
    orphan = docker_cli("run", "-d", "--label", f"{LABEL_NODE}={node_kw['name']}",
                        "--label", f"{LABEL_TASK}=gone-1",
                        *[f"--label={k}={v}" for k, v in node_kw["container_labels"].items()],
                        docker_test_image, "sleep", "300").stdout.strip()
    async with node_running(state, **node_kw) as node:  # no assign: from the state dir
        s = await node.wait_state(keep["id"], "running")
        assert s["container"] == first["container"]
        assert inspect(s["container"])["State"]["StartedAt"] == started  # not restarted
        with trio.fail_after(30):
            while docker_cli("ps", "-aq", "--filter", f"id={orphan}").stdout.strip():
                await trio.sleep(0.1)
        ids = docker_cli("ps", "-aq", "--filter",
                         f"label={LABEL_NODE}={node_kw['name']}").stdout.split()
        assert len(ids) == 1


async def test_container_created_but_never_started_is_started_not_duplicated(
        tmp_path, node_kw, docker_test_image):
    from types import SimpleNamespace

    from helios.model import Assignment
    from helios.node.job import container_spec
    from helios.node.runtime import DockerRuntime
    from helios.node.state import StateDir

    name = node_kw["name"]
    a = assignment(name, {"name": "half", "image": docker_test_image,
                          "command": ["sleep", "300"], "grace": 0})
    # what a daemon killed between create and start leaves: desired state on disk and a
    # created container
    (tmp_path / "state").mkdir()
    StateDir(tmp_path / "state").save_assignments(1, 1, [a], None)
    ctx = SimpleNamespace(node=name, container_labels=node_kw["container_labels"])
    async with DockerRuntime(name) as rt:
        cid = await rt.create(container_spec(ctx, Assignment.from_dict(a)))
    async with node_running(tmp_path / "state", **node_kw) as node:
        s = await node.wait_state(a["id"], "running")
        assert s["container"] == cid and s["restarts"] == 0
        assert docker_cli("ps", "-aq", "--no-trunc", "--filter",
                          f"label={LABEL_NODE}={name}").stdout.split() == [cid]


async def test_private_registry_pull_with_credentials_and_exec_health(
        tmp_path, node_kw, docker_test_image, docker_registry_auth):
    reg = docker_registry_auth
    ref = reg.push(docker_test_image, f"helios/{unique_name('private')}:1")
    try:
        async with node_running(tmp_path / "state", **node_kw) as node:
            ok = assignment(node.name, {
                "name": "private", "image": ref, "grace": 0,
                "command": ["sh", "-c", "touch /tmp/ready; exec sleep 300"],
                "health": {"exec": ["test", "-f", "/tmp/ready"], "interval": "300ms"},
                "registry_auth": {"username": reg.username, "password": reg.password}})
            wrong = assignment(node.name, {
                "name": "wrong", "image": ref.replace(":1", ":2"), "command": ["true"],
                "registry_auth": {"username": reg.username, "password": "nope"}})
            await node.assign([ok, wrong])
            s = await node.wait_for(ok["id"], lambda s: s["state"] == "running"
                                    and s["healthy"], what="pulled, running and healthy")
            await node.wait_event(ok["id"], "running")  # events travel apart from status
            assert node.events(ok["id"]) == ["pulling", "starting", "healthchecking",
                                             "running"]
            s = await node.wait_state(wrong["id"], "failed")
            assert "credentials" in s["reason"]
    finally:
        docker_cli("rmi", ref, check=False)


async def test_dispatch_payload_file_is_mounted_read_only(tmp_path, node_kw,
                                                          docker_test_image):
    """A dispatched run in a container reads its payload from `$HELIOS_PAYLOAD_FILE`, a
    read-only bind mount of the node's copy; the copy goes with the task."""
    async with node_running(tmp_path / "state", **node_kw) as node:
        script = ('cat "$HELIOS_PAYLOAD_FILE"; echo; echo "$HELIOS_PAYLOAD_FILE"; '
                  '(echo x > "$HELIOS_PAYLOAD_FILE") 2>/dev/null && echo writable '
                  '|| echo read-only')
        job = {"name": "run-1", "kind": "batch", "image": docker_test_image,
               "command": ["sh", "-c", script], "env": {"HELIOS_PAYLOAD": '{"n": 2}'}}
        a = assignment(node.name, job)
        await node.assign([a])
        s = await node.wait_state(a["id"], "exited")
        assert s["exit_code"] == 0
        out = await node.ask("logs", a["id"])
        assert out["lines"] == ['{"n": 2}', "/run/helios/payload", "read-only"]
        mounts = inspect(s["container"])["Mounts"]
        payload = tmp_path / "state" / "payloads" / a["id"] / "payload"
        assert [(m["Source"], m["Destination"], m["RW"]) for m in mounts] == [
            (str(payload.resolve()), "/run/helios/payload", False)]
        await node.assign([])
        with trio.fail_after(10):
            while payload.parent.exists() or await node.status(a["id"]) is not None:
                await trio.sleep(0.05)  # removed with the task, which is forgotten
        # a finished run's exit is its last word: no stopping/stopped after it
        assert node.events(a["id"])[-1] == "exited"


async def test_following_logs_reads_only_new_lines(tmp_path, node_kw, docker_test_image):
    """The cursor resumes where the last read ended (Docker's `since`), also across lines
    written within one timestamp, and a `limit` splits a long log without a gap."""
    async with node_running(tmp_path / "state", **node_kw) as node:
        script = "i=0; while [ $i -lt 50 ]; do echo line$i; i=$((i+1)); done; sleep 300"
        job = {"name": "chatty", "image": docker_test_image, "command": ["sh", "-c", script],
               "grace": 0}
        a = assignment(node.name, job)
        await node.assign([a])
        await node.wait_state(a["id"], "running")
        rt = node.core.runtime
        cid = (await node.status(a["id"]))["container"]
        got: list[str] = []
        cursor = None
        for _ in range(200):  # bounded: 50 lines in reads of at most 7
            lines, cursor = await rt.read_logs(cid, cursor, limit=7)
            assert len(lines) <= 7
            got += lines
            if len(got) >= 50:
                break
            if not lines:
                await trio.sleep(0.05)
        assert got == [f"line{i}" for i in range(50)]
        assert (await rt.read_logs(cid, cursor))[0] == []
