"""Two actor systems talking over loopback TCP: remoting, failures, security, bad input."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
import pytest
import trio
import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import actors
from actors import _wire as wire

from .conftest import Counter, Recorder

ENC = msgspec.msgpack.Encoder()


def frame(msg: object) -> bytes:
    return wire.encode_frame(ENC.encode(msg))


@asynccontextmanager
async def pair(**opts: object) -> AsyncIterator[tuple[actors.ActorSystem, actors.ActorSystem]]:
    async with actors.open_system("server", listen="127.0.0.1:0", **opts) as server, \
            actors.open_system("client", listen="127.0.0.1:0", **opts) as client:
        yield server, client


async def test_remote_ask_tell_and_errors() -> None:
    async with pair() as (server, client):
        await server.spawn(Counter, 10, name="counter")
        ref = await client.lookup(f"{server.url}/counter")
        assert not ref.is_local
        assert await ref.ask("incr", by=5) == 15
        for _ in range(100):
            await ref.tell("incr")
        assert await ref.ask("get") == 115  # tells before an ask arrive before it
        with pytest.raises(actors.RemoteError) as info:
            await ref.ask("boom")
        assert info.value.type_name == "ValueError" and "raise ValueError" in info.value.traceback
        with pytest.raises(actors.ActorNotFound):
            await client.ref(f"{server.url}/nobody").ask("get")
        with pytest.raises(actors.ActorNotFound):
            await client.lookup(f"{server.url}/nobody")


async def test_remote_refusals_do_not_harm_the_actor() -> None:
    async with pair() as (server, client):
        await server.spawn(Counter, 1, name="c")
        ref = client.ref(f"{server.url}/c")
        with pytest.raises(actors.UnknownHandler):
            await ref.ask("not_a_handler")
        with pytest.raises(actors.BadArguments):
            await ref.ask("incr", 1, 2, 3)
        with pytest.raises(actors.AskTimeout):
            await ref.ask("sleep", 1.0, timeout=0.05)
        with pytest.raises(TypeError, match="cannot send"):  # refused before sending
            await ref.ask("echo", object())
        assert await ref.ask("get", timeout=3) == 1


async def test_refs_travel_and_can_be_called_back() -> None:
    class Caller(actors.Actor):
        @actors.handler
        async def call_back(self, other: actors.ActorRef) -> int:
            return await other.ask("incr", by=100)

    async with pair() as (server, client):
        await server.spawn(Caller, name="caller")
        mine = await client.spawn(Counter, 1, name="mine")
        remote = client.ref(f"{server.url}/caller")
        assert await remote.ask("call_back", mine) == 101
        assert await mine.ask("get") == 101


async def test_one_connection_per_pair_of_systems() -> None:
    async with pair() as (server, client):
        for i in range(5):
            await server.spawn(Counter, i, name=f"c{i}")
        refs = [client.ref(f"{server.url}/c{i}") for i in range(5)]
        async with trio.open_nursery() as nursery:
            for r in refs:
                nursery.start_soon(r.ask, "incr")
        assert len({id(c) for c in client._conns.values()}) == 1
        assert len(server._live) == 1


async def test_non_listening_client_gets_replies_and_monitors() -> None:
    async with actors.open_system("server", listen="127.0.0.1:0") as server, \
            actors.open_system("cli") as cli:
        await server.spawn(Counter, name="c")
        ref = await cli.lookup(f"{server.url}/c")
        assert await ref.ask("incr") == 1
        mon = await cli.monitor(ref)
        await ref.stop()
        assert (await mon.wait(timeout=5)).reason == "normal"


async def test_remote_monitor_reasons() -> None:
    async with pair() as (server, client):
        await server.spawn(Counter, name="crashy")
        ref = client.ref(f"{server.url}/crashy")
        mon = await client.monitor(ref)
        with pytest.raises(actors.RemoteError):
            await ref.ask("boom")
        down = await mon.wait(timeout=5)
        assert (down.reason, down.ref) == ("error", ref) and "ValueError" in down.detail
        ghost = await client.monitor(client.ref(f"{server.url}/ghost"))
        assert (await ghost.wait(timeout=5)).reason == "noproc"


async def test_remote_kill_and_stop() -> None:
    async with pair() as (server, client):
        await server.spawn(Counter, name="victim")
        ref = client.ref(f"{server.url}/victim")
        mon = await client.monitor(ref)
        await ref.kill()
        assert (await mon.wait(timeout=5)).reason == "killed"
        assert "victim" not in server.registered()


async def test_actor_monitors_remote_actor_and_peer_loss_is_noconnection() -> None:
    async with actors.open_system("watcher", listen="127.0.0.1:0") as watcher:
        rec = await watcher.spawn(Recorder, name="rec")
        async with actors.open_system("doomed", listen="127.0.0.1:0") as doomed:
            await doomed.spawn(Counter, name="t")
            await rec.ask("watch", watcher.ref(f"{doomed.url}/t"))
            pending = watcher.ref(f"{doomed.url}/t")
            async with trio.open_nursery() as nursery:
                async def ask_while_dying() -> None:
                    with pytest.raises((actors.ConnectionLost, actors.ActorNotFound)):
                        await pending.ask("sleep", 30, timeout=10)
                nursery.start_soon(ask_while_dying)
                await trio.sleep(0.1)
                # abort the process's connections abruptly, as a crash would
                for conn in list(doomed._live):
                    await trio.aclose_forcefully(conn.stream)
        with trio.fail_after(5):
            while not await rec.ask("downs_seen"):
                await trio.sleep(0.01)
        seen = await rec.ask("downs_seen")
        assert seen[0][0] == "t" and seen[0][1] in ("noconnection", "shutdown")


async def test_reconnects_after_a_dropped_connection() -> None:
    async with pair() as (server, client):
        await server.spawn(Counter, name="c")
        ref = client.ref(f"{server.url}/c")
        assert await ref.ask("incr") == 1
        (conn,) = set(client._conns.values())
        await trio.aclose_forcefully(conn.stream)
        with trio.fail_after(5):
            while True:  # the broken connection is noticed, then a new one is dialled
                try:
                    assert await ref.ask("incr", timeout=1) >= 2
                    break
                except actors.ConnectionLost:
                    await trio.sleep(0.01)
        (new,) = set(client._conns.values())
        assert new is not conn


async def test_unreachable_peer_is_connection_lost() -> None:
    async with actors.open_system("lonely") as system:
        with trio.socket.socket() as s:
            await s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with pytest.raises(actors.ConnectionLost, match="cannot connect"):
            await system.ref(f"tcp://127.0.0.1:{port}/x").ask("get")
        mon = await system.monitor(system.ref(f"tcp://127.0.0.1:{port}/x"))
        assert (await mon.wait(timeout=5)).reason == "noconnection"


async def test_shared_secret_authenticates() -> None:
    async with pair(secret="s3cret") as (server, client):
        await server.spawn(Counter, name="c")
        assert await client.ref(f"{server.url}/c").ask("incr") == 1


async def test_wrong_secret_is_refused_and_others_keep_working(caplog) -> None:
    async with actors.open_system("server", listen="127.0.0.1:0", secret="right") as server, \
            actors.open_system("intruder", secret="wrong") as intruder, \
            actors.open_system("friend", secret="right") as friend, \
            actors.open_system("anonymous") as anonymous:
        await server.spawn(Counter, name="c")
        with pytest.raises(actors.ConnectionLost, match="authentication"):
            await intruder.ref(f"{server.url}/c").ask("incr")
        with pytest.raises(actors.ConnectionLost):
            await anonymous.ref(f"{server.url}/c").ask("incr")
        assert await friend.ref(f"{server.url}/c").ask("incr") == 1
    assert any("authentication" in r.getMessage() for r in caplog.records)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    d = tmp_path_factory.mktemp("tls")
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    cert.private_key_pem.write_to_path(str(d / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    other = trustme.CA()
    other.cert_pem.write_to_path(str(d / "other-ca.pem"))
    return {"cert": str(d / "cert.pem"), "key": str(d / "key.pem"), "ca": str(d / "ca.pem"),
            "other_ca": str(d / "other-ca.pem")}


async def test_mutual_tls(tls_files: dict[str, str]) -> None:
    tls = actors.tls_config(tls_files["cert"], tls_files["key"], tls_files["ca"],
                            server_hostname="127.0.0.1")
    async with pair(tls=tls, secret="also-hmac") as (server, client):
        await server.spawn(Counter, name="c")
        ref = client.ref(f"{server.url}/c")
        assert await ref.ask("incr") == 1
        for _ in range(50):
            await ref.tell("incr")
        assert await ref.ask("get") == 51


async def test_tls_peer_with_untrusted_ca_or_plain_tcp_is_refused(
        tls_files: dict[str, str]) -> None:
    good = actors.tls_config(tls_files["cert"], tls_files["key"], tls_files["ca"])
    bad = actors.tls_config(tls_files["cert"], tls_files["key"], tls_files["other_ca"])
    async with actors.open_system("server", listen="127.0.0.1:0", tls=good) as server, \
            actors.open_system("stranger", tls=bad) as stranger, \
            actors.open_system("plain", handshake_timeout=1.0) as plain, \
            actors.open_system("friend", tls=good) as friend:
        await server.spawn(Counter, name="c")
        with pytest.raises(actors.ConnectionLost):
            await stranger.ref(f"{server.url}/c").ask("incr")
        with pytest.raises(actors.ConnectionLost):
            await plain.ref(f"{server.url}/c").ask("incr")
        assert await friend.ref(f"{server.url}/c").ask("incr") == 1


# ---------------------------------------------------------------- raw peers and bad input
async def raw_handshake(url: str) -> tuple[trio.SocketStream, wire.FrameReader]:
    host, port = url.removeprefix("tcp://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    hs = wire.Handshake("raw", "actor://raw", None)
    await stream.send_all(b"".join(frame(m) for m in hs.start()))
    reader = wire.FrameReader()
    dec = wire.MessageDecoder()
    with trio.fail_after(5):
        while not hs.done:
            for body in reader.feed(await stream.receive_some(65536)):
                hs.receive(dec.decode(body))
    return stream, reader


async def read_until_eof(stream: trio.SocketStream, limit: float = 5.0) -> bytes:
    data = b""
    with trio.fail_after(limit):
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data


@pytest.mark.parametrize("payload, reason", [
    (struct.pack(">I", 64 * 1024 * 1024), "exceeds the limit"),
    (struct.pack(">I", 3) + b"\xc1\xc1\xc1", "undecodable"),
    (frame({"k": "launch-missiles"}), "invalid message"),
    (frame(wire.Hello(v=1, sys="x", url="y", nonce=b"n" * 16)), "unexpected hello"),
])
async def test_bad_frames_close_only_that_connection(payload: bytes, reason: str,
                                                     caplog) -> None:
    async with pair() as (server, client):
        await server.spawn(Counter, name="c")
        good = client.ref(f"{server.url}/c")
        assert await good.ask("incr") == 1
        stream, _ = await raw_handshake(server.url)
        await stream.send_all(payload)
        goodbye = await read_until_eof(stream)
        assert reason.encode() in goodbye  # the Close frame names the reason
        assert await good.ask("incr") == 2  # everyone else is still served
        assert any(reason in r.getMessage() for r in caplog.records)


async def test_garbage_before_handshake_is_refused() -> None:
    async with pair() as (server, client):
        await server.spawn(Counter, name="c")
        host, port = server.url.removeprefix("tcp://").rsplit(":", 1)
        stream = await trio.open_tcp_stream(host, int(port))
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await read_until_eof(stream)
        assert await client.ref(f"{server.url}/c").ask("incr") == 1


async def test_silent_peer_is_dropped_by_heartbeat() -> None:
    async with actors.open_system("server", listen="127.0.0.1:0", heartbeat_interval=0.05,
                                  heartbeat_timeout=0.3) as server:
        stream, reader = await raw_handshake(server.url)
        # we never send anything again: the server pings, then gives up on us
        data = await read_until_eof(stream, limit=5)
        kinds = [wire.MessageDecoder().decode(b) for b in reader.feed(data)]
        assert any(isinstance(k, wire.Ping) for k in kinds)
        assert not server._conns and not server._live


async def test_send_queue_is_bounded_when_the_peer_does_not_read() -> None:
    async with actors.open_system("server", listen="127.0.0.1:0") as server, \
            actors.open_system("sender", send_queue=16, heartbeat_timeout=60) as sender:
        # A raw peer that completes the handshake, then never reads.
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        accepted: list[trio.SocketStream] = []

        async def handler(stream: trio.SocketStream) -> None:
            hs = wire.Handshake("stalled", f"tcp://127.0.0.1:{port}", None)
            reader = wire.FrameReader()
            dec = wire.MessageDecoder()
            await stream.send_all(b"".join(frame(m) for m in hs.start()))
            while not hs.done:
                for body in reader.feed(await stream.receive_some(65536)):
                    hs.receive(dec.decode(body))
            accepted.append(stream)
            await trio.sleep_forever()

        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, handler, listeners)
            ref = sender.ref(f"tcp://127.0.0.1:{port}/sink")
            sent = 0
            big = "x" * 60_000
            with trio.move_on_after(2) as scope:
                for _ in range(10_000):  # bounded; the socket buffers fill long before
                    await ref.tell("put", big)
                    sent += 1
            assert scope.cancelled_caught, "tell never waited: the queue is not bounded"
            (conn,) = set(sender._conns.values())
            assert len(conn.outbox.items) <= 16
            nursery.cancel_scope.cancel()
        assert server  # the server system was never involved


async def test_message_over_the_frame_limit_is_refused_before_sending() -> None:
    async with pair(max_frame=1024) as (server, client):
        await server.spawn(Counter, name="c")
        ref = client.ref(f"{server.url}/c")
        with pytest.raises(actors.MessageTooLarge):
            await ref.ask("echo", "x" * 5000)
        assert await ref.ask("echo", "small") == "small"


VALID = [frame(m) for m in (
    wire.Tell(to="c", m="incr", a=[1], kw={}),
    wire.Ask(id=1, to="c", m="get"),
    wire.Monitor(id=3, to="c"),
    wire.Stop(id=4, to="nobody"),
    wire.Ping(),
)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                               HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.binary(min_size=1, max_size=200),
    st.tuples(st.sampled_from(VALID),
              st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4)
              ).map(lambda t: bytes(_mutate(*t))),
))
async def test_live_listener_survives_random_and_mutated_frames(data: bytes) -> None:
    async with pair() as (server, client):
        await server.spawn(Counter, 7, name="c")
        stream, _ = await raw_handshake(server.url)
        await stream.send_all(data)
        with trio.move_on_after(0.05):
            await stream.receive_some(65536)
        await stream.aclose()
        # a mutated Tell may still be a valid incr (by any amount): the actor must live
        assert isinstance(await client.ref(f"{server.url}/c").ask("get", timeout=5), int)


def _mutate(base: bytes, flips: list[tuple[int, int]]) -> bytearray:
    data = bytearray(base)
    for pos, val in flips:
        data[pos % len(data)] = val
    return data


async def test_nonblocking_writer_on_a_real_trio_socket() -> None:
    """What the transport's direct write (asks and replies, `_write_now`) relies on from
    trio: a SocketStream whose socket is non-blocking and has a working `fileno()` that
    turns -1 once closed. If a trio release changes any of it, this fails."""
    from actors._transport import nonblocking_writer

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listeners[0].accept()
    write = nonblocking_writer(client)
    assert write is not None
    assert write(b"hello") == 5
    assert await server.receive_some(5) == b"hello"
    with pytest.raises(BlockingIOError):  # the peer never reads: the kernel stops taking
        for _ in range(100_000):  # bounded: loopback buffers hold a few MB
            write(b"x" * 65536)
    await client.aclose()
    with pytest.raises(OSError):  # closed: never a descriptor reused since
        write(b"late")
    assert nonblocking_writer(trio.testing.memory_stream_pair()[0]) is None
    await server.aclose()
    await listeners[0].aclose()
