"""The smaller hostile inputs: names with a trailing newline or DNS-label length, health
check paths that would inject a header, logs that grow without bound."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from helios.node.health import check_http, request_target
from helios.node.runtime import ContainerSpec, DockerRuntime, LogDriver, ProcessRuntime
from helios.node.runtime.ports import PortAllocator
from helios.spec import SpecError, validate
from tests.fixtures.common import unique_name
from tests.fixtures.docker import docker_cli


# ------------------------------------------------------------------------------ names
@pytest.mark.parametrize("name", ["web\n", "web\r\n", "a" * 64, "Web", "-web", "web-"])
def test_job_names_are_whole_dns_labels(name: str) -> None:
    with pytest.raises(SpecError) as e:
        validate({"name": name, "command": ["true"]})
    assert "name" in str(e.value)


def test_a_63_character_name_is_fine() -> None:
    assert validate({"name": "a" * 63, "command": ["true"]}).name == "a" * 63


# ------------------------------------------------------------------------------ health
@pytest.mark.parametrize("path", ["/a\r\nX-Injected: 1", "/a b", "/\x00", "/a\nb"])
def test_a_health_path_that_would_inject_is_refused_at_submission(path: str) -> None:
    with pytest.raises(SpecError) as e:
        validate({"name": "web", "command": ["true"], "ports": {"http": {"container": 80}},
                  "health": {"http": {"port": "http", "path": path}}})
    assert "health.http.path" in str(e.value)
    with pytest.raises(ValueError):
        request_target(path)  # and the checker would never write it either


async def test_health_request_is_well_formed_for_any_path() -> None:
    got: list[bytes] = []
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]

    async def serve(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(4096)
            if not chunk:
                return
            data += chunk
        got.append(data)
        await stream.send_all(b"HTTP/1.1 204 No Content\r\n\r\n")
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, serve, [listener])
        result = await check_http("127.0.0.1", port, "/日本?q=ü", timeout=5)
        nursery.cancel_scope.cancel()
    assert result.ok, result.reason
    request_line = got[0].split(b"\r\n")[0]
    assert request_line == b"GET /%E6%97%A5%E6%9C%AC?q=%C3%BC HTTP/1.1"


@pytest.mark.parametrize("answer", [b"HTTP/1.1 200 OK\r\n" + b"X: " + b"y" * 20000 + b"\r\n\r\n",
                                    b"\x00\xff garbage \r\n\r\n", b"HTTP/9.9 abc\r\n\r\n"])
async def test_a_hostile_service_answer_is_unhealthy_not_a_crash(answer: bytes) -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]

    async def serve(stream: trio.SocketStream) -> None:
        await stream.receive_some(4096)
        try:
            await stream.send_all(answer)
        except trio.BrokenResourceError:
            pass
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, serve, [listener])
        result = await check_http("127.0.0.1", port, "/", timeout=5)
        nursery.cancel_scope.cancel()
    assert not result.ok and len(result.reason) < 600


# ------------------------------------------------------------------------------ logs
@pytest.fixture
async def small_log_rt(tmp_path: Path) -> AsyncIterator[ProcessRuntime]:
    rt = ProcessRuntime("pnode", tmp_path / "state", ports=PortAllocator(23100, 23199),
                        max_log_bytes=64 * 1024)
    async with rt:
        try:
            yield rt
        finally:
            with trio.CancelScope(shield=True):
                for state in await rt.list():
                    await rt.remove(state.id)


async def test_process_output_is_rotated_and_reads_are_bounded(
        small_log_rt: ProcessRuntime) -> None:
    rt = small_log_rt
    # 5,000 numbered lines of ~100 bytes: ~500 KB through a 64 KiB log
    script = "for i in $(seq 1 5000); do printf '%05d %095d\\n' $i 0; done"
    cid = await rt.create(ContainerSpec(image="-", command=["sh", "-c", script],
                                        name=unique_name("rot"), job="rot", task="rot-1"))
    await rt.start(cid)
    assert await rt.wait(cid) == 0
    d = rt.state_dir / cid
    assert (d / "output.log").stat().st_size <= 64 * 1024
    assert (d / "output.log.1").stat().st_size <= 64 * 1024
    lines, _ = await rt.read_logs(cid, tail=10)
    assert [int(x.split()[0]) for x in lines] == list(range(4991, 5001))
    lines, _ = await rt.read_logs(cid, max_bytes=4096)  # from the start of the kept log
    assert 0 < sum(len(x) + 1 for x in lines) <= 4096
    # a cursor from before the rotation resumes at the start of the current file
    lines, _ = await rt.read_logs(cid, "b999999999")
    assert lines and int(lines[-1].split()[0]) == 5000


async def test_a_tail_just_after_a_rotation_reaches_into_the_rotated_log(
        small_log_rt: ProcessRuntime) -> None:
    """Where the log rotates depends on how the output arrived: a tail asked for right
    after a rotation finds only a few lines in output.log and takes the rest from
    output.log.1 (a line split across the two files is one line)."""
    rt = small_log_rt
    cid = await rt.create(ContainerSpec(image="-", command=["true"], name=unique_name("rt"),
                                        job="rt", task="rt-1"))
    await rt.start(cid)
    assert await rt.wait(cid) == 0
    d = rt.state_dir / cid
    (d / "output.log.1").write_bytes(b"".join(b"line %d\n" % i for i in range(1, 20))
                                     + b"line 2")
    (d / "output.log").write_bytes(b"0\nline 21\nline 22\n")
    lines, cursor = await rt.read_logs(cid, tail=5)
    assert lines == ["line 17", "line 18", "line 19", "line 20", "line 21", "line 22"][-5:]
    assert cursor == f"b{(d / 'output.log').stat().st_size}"
    lines, _ = await rt.read_logs(cid, tail=2)  # enough in output.log alone
    assert lines == ["line 21", "line 22"]


@pytest.mark.docker
async def test_json_file_logs_are_capped_by_default(docker_test_image: str,
                                                    docker_labels: dict[str, str]) -> None:
    name = unique_name("capped")
    async with DockerRuntime("dnode") as rt:
        default = await rt.create(ContainerSpec(
            image=docker_test_image, command=["true"], name=name, job="j", task=name,
            labels=docker_labels))
        own = await rt.create(ContainerSpec(
            image=docker_test_image, command=["true"], name=name + "-own", job="j",
            task=name + "-own", labels=docker_labels,
            log=LogDriver("json-file", {"max-size": "1m"})))
        try:
            configs = [json.loads(docker_cli("inspect", "-f", "{{json .HostConfig.LogConfig}}",
                                             c).stdout) for c in (default, own)]
        finally:
            for c in (default, own):
                await rt.remove(c)
    assert configs[0]["Config"] == {"max-size": "10m", "max-file": "3"}
    assert configs[1]["Config"] == {"max-size": "1m", "max-file": "3"}
