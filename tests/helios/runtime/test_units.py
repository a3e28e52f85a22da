"""Pure pieces, no Docker: port allocator, asyncio bridge, health checks, fluentd decoder."""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
from functools import partial

import msgpack
import pytest
import trio

from helios.node.health import HealthProbe, check_http, check_tcp
from helios.node.runtime import (
    ContainerSpec,
    InvalidSpec,
    Mount,
    PortAllocator,
    PortConflict,
    PortMapping,
    PortsExhausted,
)
from helios.node.runtime.aio_bridge import AsyncioBridge, BridgeClosed
from helios.node.runtime.docker import _parse_time, _registry_host, check_image_name
from tests.fixtures.docker import ForwardDecoder

# --------------------------------------------------------------------------- ports


def test_allocator_picks_in_range_and_round_robin():
    alloc = PortAllocator(30000, 30002, probe=False)
    assert alloc.allocate("a", {"x": None, "y": None}) == {"x": 30000, "y": 30001}
    alloc.release("a")
    # Released ports come back only after the cursor wraps.
    assert alloc.allocate("b", {"x": None}) == {"x": 30002}
    assert alloc.allocate("c", {"x": None}) == {"x": 30000}
    assert alloc.held_by("c") == [30000]


def test_allocator_exhaustion_and_all_or_nothing():
    alloc = PortAllocator(30000, 30001, probe=False)
    alloc.allocate("a", {"x": None})
    with pytest.raises(PortsExhausted) as ei:
        alloc.allocate("b", {"x": None, "y": None})
    assert "30000-30001" in ei.value.reason
    assert alloc.held_by("b") == []  # nothing kept from the failed attempt
    assert alloc.allocate("b", {"x": None}) == {"x": 30001}


def test_allocator_fixed_ports():
    alloc = PortAllocator(30000, 30010, probe=False)
    assert alloc.allocate("a", {"http": 8080}) == {"http": 8080}  # outside the range: ok
    with pytest.raises(PortConflict) as ei:
        alloc.allocate("b", {"admin": None, "http": 8080})
    assert "8080" in ei.value.reason and "a" in ei.value.reason
    assert alloc.held_by("b") == []
    alloc.reserve("a", 8080)  # idempotent for the same owner
    with pytest.raises(PortConflict):
        alloc.reserve("b", 8080)


def test_allocator_probe_skips_ports_in_use():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        alloc = PortAllocator(busy, busy)  # the only port of the range is taken
        with pytest.raises(PortsExhausted):
            alloc.allocate("a", {"x": None})
        with pytest.raises(PortConflict, match="another process"):
            alloc.allocate("b", {"x": busy})


def test_spec_validation():
    ContainerSpec(name="ok-1", image="x").validate()
    ContainerSpec(name="ok-2", image="x", mounts=(Mount("/a", "/b"),)).validate()
    for bad in (dict(name="bad name"), dict(cpus=0), dict(memory=1000),
                dict(ports={"p": PortMapping(0)}), dict(ports={"p q": PortMapping(80)}),
                dict(ports={"p": PortMapping(80, protocol="sctp")}), dict(env={"A=B": "c"}),
                dict(mounts=(Mount("rel/path", "/x"),)), dict(mounts=(Mount("/a", "b"),))):
        kw = {"name": "ok", "image": "x", **bad}
        with pytest.raises(InvalidSpec):
            ContainerSpec(**kw).validate()


def test_image_name_helpers():
    for good in ("busybox", "local/busybox:test", "127.0.0.1:5000/helios/app:1",
                 "registry.example.com/a/b-c_d:v1.2", "app@sha256:" + "a" * 64):
        check_image_name(good)
    assert _registry_host("127.0.0.1:5000/x/y:1") == "127.0.0.1:5000"
    assert _registry_host("library/busybox") is None
    assert _registry_host("localhost/app") == "localhost"
    assert _parse_time("0001-01-01T00:00:00Z") is None
    assert _parse_time("2026-01-02T03:04:05.123456789Z") == pytest.approx(
        1767323045.123456789)
    assert _parse_time("2026-01-02T03:04:05Z") == 1767323045.0


# --------------------------------------------------------------------------- bridge


async def test_bridge_runs_on_its_own_asyncio_thread():
    async with AsyncioBridge() as bridge:
        async def where() -> tuple[str, bool]:
            loop = asyncio.get_running_loop()
            return threading.current_thread().name, isinstance(loop, asyncio.SelectorEventLoop)

        name, selector = await bridge.run(where)
        assert name == "helios-asyncio" and selector
        assert name != threading.current_thread().name

        async def boom() -> None:
            raise ValueError("from asyncio")

        with pytest.raises(ValueError, match="from asyncio"):
            await bridge.run(boom)


async def test_bridge_cancellation_reaches_asyncio():
    async with AsyncioBridge() as bridge:
        cancelled = threading.Event()

        async def forever() -> None:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        with trio.move_on_after(0.1) as scope:
            await bridge.run(forever)
        assert scope.cancelled_caught
        assert cancelled.is_set()  # the asyncio side ended before run() returned

        async def gen():
            for i in range(1000):
                yield i
                await asyncio.sleep(0)

        got = []
        async for item in bridge.iterate(gen):
            got.append(item)
            if item == 4:
                break
        assert got == [0, 1, 2, 3, 4]

    async def noop() -> None:
        return None

    with pytest.raises(BridgeClosed):
        await bridge.run(noop)


# --------------------------------------------------------------------------- health


@pytest.mark.parametrize(("reply", "ok", "text"), [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", True, "status 200 OK"),
    (b"HTTP/1.0 302 Found\r\nLocation: /x\r\n\r\n", True, "status 302"),
    (b"HTTP/1.1 503 Service Unavailable\r\n\r\n", False, "status 503"),
    (b"SSH-2.0-OpenSSH\r\n", False, "no HTTP status line"),
    (b"", False, "no HTTP status line"),
])
async def test_http_check_statuses(nursery, reply: bytes, ok: bool, text: str):
    requests: list[bytes] = []

    async def handle(stream: trio.SocketStream) -> None:
        requests.append(await stream.receive_some(4096))
        if reply:
            await stream.send_all(reply)
        await stream.aclose()

    listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    result = await check_http("127.0.0.1", port, "health", timeout=5)
    assert result.ok is ok and text in result.reason, result.reason
    assert requests[0].startswith(b"GET /health HTTP/1.1\r\n")


async def test_http_and_tcp_check_timeouts_and_refusals(nursery):
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    listeners = await nursery.start(partial(trio.serve_tcp, silent, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    slow = await check_http("127.0.0.1", port, "/", timeout=0.2)
    assert not slow.ok and "no answer within 0.2s" in slow.reason
    assert (await check_tcp("127.0.0.1", port, timeout=1)).ok

    with socket.socket() as s:  # bound but not listening: refused
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
        refused = await check_tcp("127.0.0.1", closed, timeout=1)
        assert not refused.ok and refused.reason.endswith("connection refused")
        assert "connection refused" in (await check_http("127.0.0.1", closed)).reason


def test_health_check_validation():
    HealthProbe(kind="http", port="web")
    for bad in (dict(kind="grpc"), dict(kind="http"), dict(kind="exec"),
                dict(kind="tcp", port="x", timeout=0)):
        with pytest.raises(ValueError):
            HealthProbe(**bad)


# --------------------------------------------------------------------------- fluentd


def test_forward_decoder_all_modes():
    dec = ForwardDecoder()
    event_time = msgpack.ExtType(0, (1700000000).to_bytes(4, "big") + (5).to_bytes(4, "big"))
    message = msgpack.packb(["t.msg", event_time, {"log": "m"}, {"chunk": "c1"}])
    forward = msgpack.packb(["t.fwd", [[1700000001, {"log": "f1"}], [1700000002, {"log": "f2"}]]])
    entries = (msgpack.packb([1700000003, {"log": "p1"}])
               + msgpack.packb([1700000004, {"log": "p2"}]))
    packed = msgpack.packb(["t.pk", entries, {"size": 2}])
    compressed = msgpack.packb(["t.gz", gzip.compress(entries), {"compressed": "gzip",
                                                                 "chunk": "c2"}])
    stream = message + forward + packed + compressed
    events, replies = [], []
    for i in range(0, len(stream), 7):  # arbitrary split points: framing is the decoder's
        e, r = dec.feed(stream[i:i + 7])
        events += e
        replies += r
    assert [(tag, rec["log"]) for tag, _, rec in events] == [
        ("t.msg", "m"), ("t.fwd", "f1"), ("t.fwd", "f2"), ("t.pk", "p1"), ("t.pk", "p2"),
        ("t.gz", "p1"), ("t.gz", "p2")]
    assert events[0][1] == pytest.approx(1700000000.000000005)
    assert [msgpack.unpackb(r) for r in replies] == [{"ack": "c1"}, {"ack": "c2"}]


def test_the_runtime_interface_declares_what_callers_use() -> None:
    """Callers (job actor, health checks) ask the runtime, never which one it is: every
    method they call is declared by `Runtime` and implemented by every runtime."""
    from helios.node.runtime.base import Runtime
    from helios.node.runtime.docker import DockerRuntime
    from helios.node.runtime.process import ProcessRuntime
    from helios.node.runtime.sim import SimRuntime

    assert {"exec", "has_image", "pull", "create", "logs"} <= Runtime.__abstractmethods__
    assert callable(Runtime.check_image) and isinstance(Runtime.isolates_files, bool)
    for cls in (DockerRuntime, ProcessRuntime, SimRuntime):
        assert not cls.__abstractmethods__, cls
    assert DockerRuntime.isolates_files and not ProcessRuntime.isolates_files
