"""TLS for a connection, as a record pump over the stdlib's `ssl.SSLObject`.

Why not `trio.SSLStream`: it is a general stream with its own locks and several
scheduler trips per operation; a connection here already has exactly one writer and one
reader task and writes small latency-bound frames directly to the socket when the line is
idle (`Connection._write_now`). Measured on this machine: an ask's round trip took 84 us
without TLS and ~195 us through `trio.SSLStream`; encrypting and decrypting with the
SSLObject in memory, the socket code unchanged, keeps it near the plain figure.

`TLSPipe` does no I/O: `encrypt` turns plaintext into TLS records to send, `decrypt`
turns received bytes into plaintext (possibly none yet). Only `handshake` talks to the
stream. Records the TLS layer wants to send on its own after the handshake (session
tickets, key updates) come out of `decrypt` in `pending`, for the writer to send first.
"""

from __future__ import annotations

import ssl
from typing import Any

import trio

READ_SIZE = 256 * 1024
#: the most plaintext one TLS record carries
RECORD = 16 * 1024


class TLSPipe:
    """One TLS session's state machine (see the module docstring)."""

    __slots__ = ("_in", "_obj", "_out", "pending")

    def __init__(self, obj: ssl.SSLObject, incoming: ssl.MemoryBIO,
                 outgoing: ssl.MemoryBIO) -> None:
        self._obj = obj
        self._in = incoming
        self._out = outgoing
        self.pending = b""  # records to send before anything else (written by decrypt)

    def encrypt(self, data: bytes) -> bytes:
        """TLS records carrying `data`, preceded by any pending record."""
        if data:
            self._obj.write(data)
        out = self._out.read()
        if self.pending:
            out, self.pending = self.pending + out, b""
        return out

    def decrypt(self, data: bytes | bytearray) -> bytes:
        """The plaintext that `data` completes (b"" while a record is partial). Raises
        `ssl.SSLError`; a close_notify from the peer is `EOFError`."""
        incoming = self._in
        incoming.write(data)
        chunks = []
        # One record at a time (a record holds at most 16 KiB), and only while received
        # bytes remain: an exhausted buffer costs no SSLWantReadError.
        while incoming.pending:
            try:
                chunk = self._obj.read(RECORD)
            except ssl.SSLWantReadError:
                break  # a partial record: the rest comes with the next read
            except ssl.SSLZeroReturnError:
                raise EOFError("the peer closed the TLS session") from None
            if not chunk:
                break
            chunks.append(chunk)
        while self._obj.pending():  # plaintext the last record still holds
            chunks.append(self._obj.read(RECORD))
        if self._out.pending:
            self.pending += self._out.read()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def getpeercert(self) -> dict[str, Any] | None:
        return self._obj.getpeercert()


async def handshake(stream: trio.abc.Stream, context: ssl.SSLContext, *, server_side: bool,
                    server_hostname: str | None = None) -> tuple[TLSPipe, bytes]:
    """Run the TLS handshake over `stream`; returns the pipe and any plaintext the peer
    sent right behind its last handshake record. On failure, sends the alert that says
    why (best effort), then raises `ssl.SSLError` (or a trio stream error)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = context.wrap_bio(incoming, outgoing, server_side=server_side,
                           server_hostname=server_hostname)
    while True:
        try:
            obj.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            done = False
        except ssl.SSLError:
            alert = outgoing.read()
            if alert:
                with trio.move_on_after(0.2):
                    try:
                        await stream.send_all(alert)
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        pass
            raise
        out = outgoing.read()
        if out:
            await stream.send_all(out)
        if done:
            pipe = TLSPipe(obj, incoming, outgoing)
            return pipe, pipe.decrypt(b"") if incoming.pending else b""
        data = await stream.receive_some(READ_SIZE)
        if not data:
            raise trio.BrokenResourceError("the peer closed the connection during the TLS "
                                           "handshake")
        incoming.write(data)


#: OpenSSL's words -> what they mean for the operator reading a log line
_TLS_REASONS = (
    ("certificate has expired", "the peer's certificate has expired"),
    ("certificate is not yet valid", "the peer's certificate is not valid yet"),
    ("unable to get local issuer certificate",
     "the peer's certificate is not signed by the CA trusted here"),
    ("self-signed certificate in certificate chain",
     "the peer's certificate is not signed by the CA trusted here"),
    ("unsuitable certificate purpose",
     "the peer's certificate may not be used this way (a client-only certificate?)"),
    ("alert unknown ca", "the peer refused this side's certificate (not from its CA)"),
    ("alert certificate expired", "the peer refused this side's certificate (expired)"),
    ("alert certificate required", "the peer requires a certificate and got none"),
    ("wrong version number", "the peer does not speak TLS (a plaintext client?)"),
    ("http request", "the peer does not speak TLS (a plaintext client?)"),
    ("unexpected_eof", "the peer hung up during the TLS handshake (it refused this side's "
                       "certificate, or does not speak TLS)"),
)


def tls_reason(e: BaseException) -> str | None:
    """A failed TLS handshake in one line that says what is wrong, or None."""
    err = e if isinstance(e, ssl.SSLError) else e.__cause__
    if not isinstance(err, ssl.SSLError):
        return None
    text = str(getattr(err, "verify_message", "") or "") + " " + str(err)
    low = text.lower()
    for needle, meaning in _TLS_REASONS:
        if needle in low:
            return f"TLS: {meaning}"
    return f"TLS: {getattr(err, 'reason', None) or err}"
