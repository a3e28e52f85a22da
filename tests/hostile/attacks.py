"""Hostile peers of a Helios daemon, as plain blocking sockets: what an attacker on the
network can send. Used by `tests/hostile/` (each attack against real processes) and by
`bench/hostile_bench.py` (the same attacks, timed, with other clients measured).

Each attack speaks the wire protocol of `actors` (a 4-byte length, one msgpack map) just
well enough to do harm; nothing here imports the daemon's code paths it attacks.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
from typing import Any

import msgspec

_ENC = msgspec.msgpack.Encoder()
_DEC = msgspec.msgpack.Decoder()


def frame(msg: dict[str, Any]) -> bytes:
    body = _ENC.encode(msg)
    return struct.pack(">I", len(body)) + body


def hello(name: str = "attacker") -> dict[str, Any]:
    return {"k": "hello", "v": 1, "sys": name, "url": f"actor://{name}",
            "nonce": os.urandom(16), "auth": False}


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    return host.strip("[]"), int(port)


def connect(address: str, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(split_address(address), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def read_frames(sock: socket.socket, want: int = 1, timeout: float = 5.0
                ) -> list[dict[str, Any]]:
    """Up to `want` frames (fewer if the peer closes or `timeout` passes)."""
    sock.settimeout(timeout)
    buf = b""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < deadline:
        while len(buf) >= 4 and len(buf) - 4 >= struct.unpack(">I", buf[:4])[0]:
            n = struct.unpack(">I", buf[:4])[0]
            out.append(_DEC.decode(buf[4:4 + n]))
            buf = buf[4 + n:]
        if len(out) >= want:
            break
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, OSError):
            break
        if not chunk:
            break
        buf += chunk
    return out


def handshake(address: str, name: str = "attacker") -> socket.socket:
    """A connection past the (secret-less) handshake, ready for any message."""
    sock = connect(address)
    sock.sendall(frame(hello(name)))
    got = read_frames(sock, 1)
    if not got or got[0].get("k") != "hello":
        sock.close()
        raise ConnectionError(f"no hello from {address}: {got!r}")
    return sock


def closed_by_peer(sock: socket.socket, timeout: float = 10.0) -> bytes | None:
    """Everything the peer sent until it closed (its goodbye frame names the reason), or
    None if it kept the connection open for `timeout`."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return None
        except OSError:
            return data
        if not chunk:
            return data
        data += chunk
    return None


def ask(sock: socket.socket, to: str, method: str, *args: Any, req: int = 1,
        timeout: float = 10.0) -> dict[str, Any]:
    """Send one Ask on a handshaken connection and return its Reply (pings skipped)."""
    sock.sendall(frame({"k": "a", "id": req, "to": to, "m": method, "a": list(args),
                        "kw": {}}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for msg in read_frames(sock, 1, timeout=max(0.1, deadline - time.monotonic())):
            if msg.get("k") == "r" and msg.get("id") == req:
                return msg
            if msg.get("k") == "x":
                raise ConnectionError(f"peer closed: {msg.get('reason')}")
    raise TimeoutError(f"no reply to {method}")


# ------------------------------------------------------------------------------ attacks
def nested_tell(depth: int, before_hello: bool = False) -> bytes:
    """A ~`depth`-byte frame whose argument nests `depth` lists deep."""
    head = _ENC.encode({"k": "t", "to": "conductor", "m": "job_ls", "a": []})
    body = head[:-1] + b"\x91" * depth + b"\x90"
    if before_hello:  # the nesting where a stranger's Hello is decoded
        body = b"\x82\xa1a" + b"\x91" * depth + b"\x90" + b"\xa1k\xa5hello"
    return struct.pack(">I", len(body)) + body


def empty_lists_frame(size: int = 4 * 1024 * 1024 - 64) -> bytes:
    """One frame of `size` empty lists in a Tell: ~70x its size in Python objects."""
    head = _ENC.encode({"k": "t", "to": "conductor", "m": "job_ls", "a": []})
    body = head[:-1] + b"\xdd" + struct.pack(">I", size) + b"\x90" * size
    return struct.pack(">I", len(body)) + body


def drip_connection(address: str, announced: int = 3_900_000,
                    prefill: int = 3_800_000, handshaken: bool = True) -> socket.socket:
    """A connection holding a large partial frame, to be kept alive by `drip`."""
    sock = handshake(address) if handshaken else connect(address)
    sock.setblocking(False)
    data = struct.pack(">I", announced) + b"\x90" * prefill
    with contextlib.suppress(BlockingIOError, OSError):
        sock.send(data)
    return sock


def drip(sock: socket.socket) -> bool:
    """One more byte of the partial frame; False once the daemon has hung up."""
    try:
        sock.send(b"\x90")
        return True
    except (BlockingIOError, InterruptedError):
        return True
    except OSError:
        return False


def lookup_flood(sock: socket.socket, count: int, batch: int = 5000) -> int:
    """Send `count` lookups and never read a reply; returns how many went out before the
    daemon hung up."""
    sent = 0
    one = b"".join(frame({"k": "l", "id": i, "to": "conductor"}) for i in range(batch))
    sock.settimeout(2.0)
    try:
        while sent < count:
            sock.sendall(one)
            sent += batch
    except OSError:
        pass
    return sent


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise LookupError(f"no VmRSS for {pid}")
