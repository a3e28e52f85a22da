"""Hostile peers against a live actor system: each attack is shown to work on the
unguarded piece (where that can be shown without harming the test process), then shown
refused, with the system alive and another client still served."""

from __future__ import annotations

import struct

import msgspec
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import actors
from actors import _wire as wire

from .conftest import Counter
from .test_remote import frame, pair, raw_handshake, read_until_eof

ENC = msgspec.msgpack.Encoder()


def nested_list_body(depth: int) -> bytes:
    """A Tell whose argument is a list nested `depth` levels: ~depth bytes of msgpack."""
    head = ENC.encode({"k": "t", "to": "c", "m": "incr", "a": []})
    # replace the empty `a` array (0x90, the last byte) with `depth` one-element arrays
    assert head.endswith(b"\x90")
    return head[:-1] + b"\x91" * depth + b"\x90"


def host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("tcp://").rsplit(":", 1)
    return host, int(port)


# ------------------------------------------------------------------ the decoder itself
def test_deep_nesting_crashes_a_bare_decoder_but_is_a_protocol_error_here() -> None:
    body = nested_list_body(100_000)
    with pytest.raises(RecursionError):  # the attack: what msgspec alone raises
        msgspec.msgpack.Decoder(wire.Message).decode(body)
    with pytest.raises(actors.ProtocolError, match="nested too deeply"):
        wire.MessageDecoder().decode(body)


def test_handshake_decoder_knows_only_handshake_kinds() -> None:
    dec = wire.handshake_decoder()
    tell = ENC.encode(wire.Tell(to="c", m="incr"))
    assert isinstance(wire.MessageDecoder().decode(tell), wire.Tell)
    with pytest.raises(actors.ProtocolError, match="invalid message"):
        dec.decode(tell)
    hello = wire.Hello(v=1, sys="a", url="u", nonce=b"n" * 16)
    assert dec.decode(ENC.encode(hello)) == hello
    with pytest.raises(actors.ProtocolError, match="invalid message"):
        dec.decode(ENC.encode({"k": "hello", "v": 1, "sys": "a" * 5000, "url": "u",
                               "nonce": b"n" * 16}))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_both_decoders_raise_only_protocol_error_on_any_bytes(data: bytes) -> None:
    for dec in (wire.handshake_decoder(), wire.MessageDecoder()):
        try:
            dec.decode(data)
        except actors.ProtocolError:
            pass


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=5000), st.sampled_from([b"\x91", b"\x81\xa0"]))
def test_nesting_of_any_depth_only_ever_raises_protocol_error(depth: int,
                                                             level: bytes) -> None:
    body = ENC.encode({"k": "a", "id": 1, "to": "c", "m": "x", "a": []})[:-1]
    body += level * depth + b"\x90"
    try:
        wire.MessageDecoder().decode(body)
    except actors.ProtocolError:
        pass


def test_frame_reader_takes_one_frame_at_a_time() -> None:
    reader = wire.FrameReader(max_frame=16)
    small = wire.encode_frame(b"x" * 10)
    big = wire.encode_frame(b"y" * 100)
    assert reader.next_frame(small + big) == b"x" * 10  # the big one is not looked at yet
    with pytest.raises(actors.ProtocolError, match="exceeds the limit of 16"):
        reader.next_frame()
    reader.max_frame = 1000
    assert reader.feed(b"") == [b"y" * 100]


# ------------------------------------------------------------------ a live listener
async def test_deeply_nested_frame_closes_one_connection_only(caplog) -> None:
    async with pair() as (server, client):
        await server.spawn(Counter, name="c")
        good = client.ref(f"{server.url}/c")
        stream, _ = await raw_handshake(server.url)
        await stream.send_all(wire.encode_frame(nested_list_body(100_000)))
        goodbye = await read_until_eof(stream)
        assert b"nested too deeply" in goodbye
        assert await good.ask("incr") == 1


async def test_before_the_handshake_only_small_handshake_frames_are_read() -> None:
    async with pair() as (server, client):
        await server.spawn(Counter, name="c")
        good = client.ref(f"{server.url}/c")
        host, port = host_port(server.url)
        # A large frame header before any Hello: refused on its header.
        s1 = await trio.open_tcp_stream(host, port)
        await s1.send_all(struct.pack(">I", wire.HANDSHAKE_MAX_FRAME + 1))
        assert b"exceeds the limit of 4096" in await read_until_eof(s1)
        # A Tell instead of a Hello: not even decoded as a Tell.
        s2 = await trio.open_tcp_stream(host, port)
        await s2.send_all(frame(wire.Tell(to="c", m="incr")))
        assert b"invalid message" in await read_until_eof(s2)
        assert await good.ask("get") == 0  # the Tell never reached the actor


async def test_a_peer_that_finished_the_handshake_may_send_large_frames() -> None:
    async with pair() as (server, _client):
        await server.spawn(Counter, name="c")
        stream, reader = await raw_handshake(server.url)
        value = "z" * 100_000
        await stream.send_all(frame(wire.Ask(id=1, to="c", m="echo", a=[value])))
        with trio.fail_after(5):
            replies: list[bytes] = []
            while not replies:
                replies = reader.feed(await stream.receive_some(65536))
        assert wire.MessageDecoder().decode(replies[0]) == wire.Reply(id=1, v=value)


@pytest.mark.parametrize("method", ["$stop", "$call", "$down", "$child_exit", "", "not_a_handler"])
async def test_system_messages_cannot_be_reached_by_method_name(method: str) -> None:
    async with pair() as (server, client):
        await server.spawn(Counter, 3, name="c")
        ref = client.ref(f"{server.url}/c")
        with pytest.raises(actors.UnknownHandler):
            await ref.ask(method)
        await ref.tell(method)
        stream, _ = await raw_handshake(server.url)
        await stream.send_all(frame(wire.Tell(to="c", m=method, a=[None])))
        assert await ref.ask("get") == 3  # alive, state untouched
        assert "c" in server.registered()


async def test_local_tell_of_a_system_name_is_dropped_too() -> None:
    async with actors.open_system("solo") as system:
        ref = await system.spawn(Counter, 1, name="c")
        for method in ("$stop", "", "$call"):
            await ref.tell(method)
        assert await ref.ask("get") == 1


async def test_full_mailbox_refuses_remote_messages_with_busy() -> None:
    async with pair(max_mailbox=5) as (server, client):
        await server.spawn(Counter, name="c")
        ref = client.ref(f"{server.url}/c")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ref.ask, "sleep", 0.5)
            await trio.sleep(0.05)
            for _ in range(5):
                await ref.tell("incr")
            with pytest.raises(actors.Busy, match="limit 5"):
                await ref.ask("incr")
        assert await ref.ask("get") == 5


async def test_policy_refuses_with_forbidden_and_the_reason() -> None:
    def policy(peer: actors.PeerInfo, kind: str, target: str, method: str) -> str | None:
        if kind in ("stop", "kill"):
            return "no remote stops here"
        if method == "boom":
            return "not this one"
        return None

    async with actors.open_system("server", listen="127.0.0.1:0", policy=policy) as server, \
            actors.open_system("client") as client:
        await server.spawn(Counter, name="c")
        ref = client.ref(f"{server.url}/c")
        with pytest.raises(actors.Forbidden, match=r"forbidden: stop c by client.*no remote"):
            await ref.stop()
        with pytest.raises(actors.Forbidden):
            await ref.kill()
        with pytest.raises(actors.Forbidden, match="not this one"):
            await ref.ask("boom")
        assert await ref.ask("incr") == 1
        assert "c" in server.registered()


async def test_without_a_policy_a_remote_stop_works() -> None:
    """The baseline for the test above: the attack (a wire Stop) does stop an actor."""
    async with pair() as (server, client):
        await server.spawn(Counter, name="c")
        await client.ref(f"{server.url}/c").stop()
        assert "c" not in server.registered()


async def test_peer_that_never_reads_its_replies_is_cut_off(caplog) -> None:
    limit = 256 * 1024
    async with actors.open_system("server", listen="127.0.0.1:0", max_queued_bytes=limit,
                                  heartbeat_timeout=60) as server, \
            actors.open_system("client") as client:
        await server.spawn(Counter, name="c")
        stream, _ = await raw_handshake(server.url)
        lookups = b"".join(frame(wire.Lookup(id=i, to="c")) for i in range(2000))
        peak = 0
        with trio.move_on_after(10):
            for _ in range(200):  # bounded: ~400,000 lookups at most
                try:
                    await stream.send_all(lookups)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
                for conn in list(server._live):
                    peak = max(peak, conn.outbox.bytes)
                await trio.sleep(0)
        assert peak <= limit
        assert any("peer does not read" in r.getMessage() for r in caplog.records)
        assert await client.ref(f"{server.url}/c").ask("incr") == 1


async def test_connection_limits_per_host_and_in_total(caplog) -> None:
    async with actors.open_system("server", listen="127.0.0.1:0",
                                  max_connections_per_host=3) as server, \
            actors.open_system("client") as client:
        await server.spawn(Counter, name="c")
        host, port = host_port(server.url)
        held = [await trio.open_tcp_stream(host, port) for _ in range(3)]
        await trio.sleep(0.1)
        extra = await trio.open_tcp_stream(host, port)
        assert await read_until_eof(extra) == b""  # closed at once, nothing said
        assert server.refused_connections >= 1
        assert any("refusing connection" in r.getMessage() for r in caplog.records)
        for s in held:
            await s.aclose()
        await trio.sleep(0.1)
        assert await client.ref(f"{server.url}/c").ask("incr") == 1


async def test_a_dripped_frame_does_not_keep_a_connection_alive() -> None:
    async with actors.open_system("server", listen="127.0.0.1:0", heartbeat_interval=0.05,
                                  heartbeat_timeout=0.3, frame_timeout=0.5) as server:
        stream, _ = await raw_handshake(server.url)
        await stream.send_all(struct.pack(">I", 1000) + b"\x85")
        closed = False
        with trio.move_on_after(5):
            for _ in range(100):  # a byte every 50 ms: the old liveness rule kept this
                try:
                    await stream.send_all(b"\x00")
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    closed = True
                    break
                with trio.move_on_after(0.05):
                    try:
                        data = await stream.receive_some(65536)
                    except trio.BrokenResourceError:
                        data = b""
                    if not data:
                        closed = True
                        break
        assert closed
        assert not server._conns and not server._live


async def test_partial_frames_share_one_receive_budget(caplog) -> None:
    budget = 300 * 1024
    async with actors.open_system("server", listen="127.0.0.1:0", max_receive_buffer=budget,
                                  heartbeat_timeout=60) as server, \
            actors.open_system("client") as client:
        await server.spawn(Counter, name="c")
        streams = []
        for _ in range(4):
            stream, _ = await raw_handshake(server.url)
            await stream.send_all(struct.pack(">I", 1_000_000) + b"\x00" * 200_000)
            streams.append(stream)
        await trio.sleep(0.3)
        assert server._rx_charged <= budget
        assert any("receive budget exhausted" in r.getMessage() for r in caplog.records)
        assert await client.ref(f"{server.url}/c").ask("incr") == 1
        for s in streams:
            await s.aclose()
        await trio.sleep(0.1)
        assert server._rx_charged == 0


async def test_new_connections_from_one_host_are_rate_limited() -> None:
    async with actors.open_system("server", listen="127.0.0.1:0",
                                  max_connection_rate=5) as server:
        host, port = host_port(server.url)
        streams = [await trio.open_tcp_stream(host, port) for _ in range(30)]
        await trio.sleep(0.2)
        assert server.refused_connections >= 15  # a burst of 10 passes, then ~5 a second
        for s in streams:
            await s.aclose()
        await trio.sleep(1.0)  # the bucket refills
        stream, _ = await raw_handshake(server.url)
        await stream.aclose()


HELLO = wire.encode_frame(ENC.encode(wire.Hello(v=1, sys="x", url="u", nonce=b"n" * 16)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.binary(min_size=1, max_size=300),
    st.tuples(st.binary(max_size=len(HELLO)), st.integers(0, len(HELLO))).map(
        lambda t: HELLO[:t[1]] + t[0] + HELLO[t[1]:]),  # a Hello with bytes spliced in
    st.integers(1, len(HELLO) - 1).map(lambda cut: HELLO[:cut]),  # a Hello cut short
))
async def test_live_listener_survives_any_bytes_before_the_handshake(data: bytes) -> None:
    async with actors.open_system("server", listen="127.0.0.1:0",
                                  handshake_timeout=0.3) as server, \
            actors.open_system("client") as client:
        await server.spawn(Counter, 7, name="c")
        host, port = host_port(server.url)
        stream = await trio.open_tcp_stream(host, port)
        await stream.send_all(data)
        with trio.move_on_after(0.05):
            await stream.receive_some(65536)
        await stream.aclose()
        assert await client.ref(f"{server.url}/c").ask("get", timeout=5) == 7
