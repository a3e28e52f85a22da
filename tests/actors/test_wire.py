"""The sans-I/O protocol on bytes alone: framing, decoding, handshake, fuzzing."""

from __future__ import annotations

import struct

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import AuthenticationFailed, ProtocolError
from actors import _wire as wire

ENC = msgspec.msgpack.Encoder()


def frame(msg: object) -> bytes:
    return wire.encode_frame(ENC.encode(msg))


def test_frames_split_across_arbitrary_chunks() -> None:
    msgs = [wire.Tell(to="a", m="x", a=[i]) for i in range(50)]
    data = b"".join(frame(m) for m in msgs)
    reader = wire.FrameReader()
    dec = wire.MessageDecoder()
    out = []
    for i in range(0, len(data), 7):
        out += [dec.decode(b) for b in reader.feed(data[i:i + 7])]
    assert out == msgs
    assert reader.buffered == 0


def test_a_large_frame_in_many_reads_is_held_once_then_handed_over_whole() -> None:
    body = ENC.encode(wire.Tell(to="a", m="x", a=["y" * 100_000]))
    data = wire.encode_frame(body) + frame(wire.Ping())
    reader = wire.FrameReader()
    head = data[:len(body)]  # all but the end: nothing is complete yet
    for i in range(0, len(head), 4096):
        assert reader.feed(head[i:i + 4096]) == []
    out = reader.feed(data[len(head):])
    assert [bytes(b) for b in out] == [body, ENC.encode(wire.Ping())]
    assert reader.buffered == 0


def test_decode_many_keeps_what_came_before_a_bad_frame() -> None:
    bodies = [memoryview(ENC.encode(m)) for m in (wire.Ping(), wire.Tell(to="a", m="x"))]
    bad = memoryview(b"\xc1")  # never valid msgpack
    dec = wire.MessageDecoder()
    assert dec.decode_many(bodies) == ([wire.Ping(), wire.Tell(to="a", m="x")], None)
    messages, error = dec.decode_many([*bodies, bad, bodies[0]])
    assert messages == [wire.Ping(), wire.Tell(to="a", m="x")]
    assert isinstance(error, ProtocolError) and "undecodable" in str(error)


def test_oversized_frame_refused_from_its_header_alone() -> None:
    reader = wire.FrameReader(max_frame=1024)
    with pytest.raises(ProtocolError, match="exceeds the limit of 1024"):
        reader.feed(struct.pack(">I", 1025))


def test_undecodable_and_unknown_kinds_are_protocol_errors() -> None:
    dec = wire.MessageDecoder()
    with pytest.raises(ProtocolError, match="undecodable"):
        dec.decode(b"\xc1")  # never-used msgpack byte
    with pytest.raises(ProtocolError, match="invalid message"):
        dec.decode(ENC.encode({"k": "nope"}))
    with pytest.raises(ProtocolError, match="invalid message"):
        dec.decode(ENC.encode({"k": "a", "id": "not-an-int", "to": "x", "m": "y"}))
    with pytest.raises(ProtocolError):
        dec.decode(ENC.encode([1, 2, 3]))


def run_handshake(a: wire.Handshake, b: wire.Handshake) -> None:
    """Deliver frames between two state machines until both are done (bounded)."""
    to_b, to_a = a.start(), b.start()
    for _ in range(10):
        if a.done and b.done:
            return
        nb, na = [], []
        for m in to_b:
            nb += b.receive(m)
        for m in to_a:
            na += a.receive(m)
        to_a, to_b = nb, na
    raise AssertionError("handshake did not finish")


def test_handshake_without_secret() -> None:
    a = wire.Handshake("a", "tcp://1:1", None)
    b = wire.Handshake("b", "tcp://2:2", None)
    run_handshake(a, b)
    assert a.peer.sys == "b" and b.peer.url == "tcp://1:1"


def test_handshake_with_matching_secrets() -> None:
    a = wire.Handshake("a", "u", b"s3cret")
    b = wire.Handshake("b", "u", b"s3cret")
    run_handshake(a, b)
    assert a.done and b.done


def test_handshake_wrong_secret_fails_on_both_sides() -> None:
    a = wire.Handshake("a", "u", b"right")
    b = wire.Handshake("b", "u", b"wrong")
    with pytest.raises(AuthenticationFailed, match="wrong secret"):
        run_handshake(a, b)


def test_handshake_secret_on_one_side_only() -> None:
    a = wire.Handshake("a", "u", b"s")
    b = wire.Handshake("b", "u", None)
    with pytest.raises(AuthenticationFailed):
        run_handshake(a, b)


def test_replayed_auth_is_refused() -> None:
    """A MAC recorded from one handshake is useless in the next (fresh nonces)."""
    a1 = wire.Handshake("a", "u", b"k")
    b1 = wire.Handshake("b", "u", b"k")
    hello_a = a1.start()[0]
    b1.start()
    auth_b = b1.receive(hello_a)[0]
    a2 = wire.Handshake("a", "u", b"k")
    a2.start()
    a2.receive(wire.Hello(v=1, sys="b", url="u", nonce=b1.nonce, auth=True))
    with pytest.raises(AuthenticationFailed):
        a2.receive(auth_b)


def test_message_before_handshake_is_refused() -> None:
    hs = wire.Handshake("a", "u", None)
    hs.start()
    with pytest.raises(ProtocolError, match="expected hello"):
        hs.receive(wire.Tell(to="x", m="y"))


def test_protocol_version_mismatch() -> None:
    hs = wire.Handshake("a", "u", None)
    with pytest.raises(ProtocolError, match="protocol 99"):
        hs.receive(wire.Hello(v=99, sys="b", url="u", nonce=b"x" * 16))


VALID = [frame(m) for m in (
    wire.Tell(to="a", m="incr", a=[1, "x", None], kw={"by": 2}),
    wire.Ask(id=7, to="counter", m="get"),
    wire.Reply(id=7, v={"a": [1, 2]}),
    wire.Monitor(id=3, to="x"), wire.Down(id=3, reason="error", detail="boom"),
    wire.Ping(), wire.Close(reason="bye"),
)]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_ever_raise_protocol_error(data: bytes) -> None:
    reader = wire.FrameReader(max_frame=4096)
    dec = wire.MessageDecoder()
    try:
        for body in reader.feed(data):
            dec.decode(body)
    except ProtocolError:
        pass


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(VALID), st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)),
                                         max_size=6))
def test_mutated_frames_only_ever_raise_protocol_error(base: bytes, flips: list) -> None:
    data = bytearray(base)
    for pos, val in flips:
        data[pos % len(data)] = val
    reader = wire.FrameReader(max_frame=4096)
    dec = wire.MessageDecoder()
    try:
        for body in reader.feed(bytes(data)):
            dec.decode(body)
    except ProtocolError:
        pass
