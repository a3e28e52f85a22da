"""The TCP transport: one connection per pair of systems, moving frames and nothing else.

Each connection runs three tasks in its own nursery:
  reader     receive_some -> FrameReader -> MessageDecoder -> dispatch (never blocks)
  writer     the only task that writes: drains the outbox and coalesces frames into one
             send_all (64 concurrent asks: ~30,000 round trips/s this way vs ~7,600/s with
             a lock around send_all, measured on this machine kind)
  heartbeat  sends a ping when idle, closes the connection when the peer has been silent
The outbox is bounded: senders wait when it is full (backpressure) instead of growing memory.
Replies and control frames bypass the bound, since the reader that produces them must never
wait. Whatever goes wrong on one connection closes that connection only, with a logged reason.
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from . import _tls
from . import _wire as wire
from ._errors import (
    ActorNotFound,
    ConnectionLost,
    Forbidden,
    MessageTooLarge,
    ProtocolError,
    RemoteError,
)
from ._mailbox import Slot
from ._outbox import Outbox
from ._peer import PeerInfo, certificate_identity

if TYPE_CHECKING:
    from ._system import ActorSystem

log = logging.getLogger("actors.transport")

READ_SIZE = 256 * 1024
#: a partial frame up to this size is free; beyond it, it draws on the system's budget
#: (`SystemConfig.max_receive_buffer`), so many slow peers cannot add up to gigabytes
FREE_PARTIAL = 16 * 1024
#: frames dispatched from one read before the reader lets other tasks run
FAIR_BATCH = 64


class RemoteReply:
    """Where an actor's answer goes when the asker is in another process.

    `backlog` is the answering actor's mailbox: while more messages wait there, more
    replies will follow, so this one is queued for the writer to coalesce rather than
    written on its own.
    """

    __slots__ = ("backlog", "conn", "id")

    def __init__(self, conn: Connection, req_id: int, backlog: Any = ()) -> None:
        self.conn = conn
        self.id = req_id
        self.backlog = backlog

    def set(self, value: Any = None, error: BaseException | None = None) -> None:
        self.conn.send_reply(self.id, value, error, not self.backlog)


class Connection:
    """One authenticated link to a peer system."""

    def __init__(self, system: ActorSystem, stream: trio.abc.Stream, label: str,
                 dial_url: str | None = None) -> None:
        self.system = system
        self.stream = stream
        self.label = label  # for log lines: the address we dialled or that connected
        self.dial_url = dial_url
        self.peer_url: str | None = dial_url
        self.peer_name = "?"  # for log lines: str(self.peer) once the handshake is done
        cfg = system.config
        self._encode = system._encoder.encode
        self._max_frame = cfg.max_frame
        self._pack_header = wire.pack_header
        self.outbox = Outbox(cfg.send_queue, cfg.max_queued_bytes, self._overflowed)
        self.pending: dict[int, Slot] = {}
        self.monitors_out: dict[int, tuple[Any, Any, int]] = {}  # id -> (deliver, ref, id)
        self.monitors_in: dict[int, Any] = {}                # id -> watched cell
        self._next_id = 0
        self.closed = False
        self._finalized = False
        self.close_reason = ""
        self._scope: trio.CancelScope | None = None
        now = trio.current_time()
        self.last_recv = now
        self.last_sent = now
        self.burst = 0  # frames in the last read: >1 means busy, so coalesce rather than write
        #: writes to the TCP socket at once, without waiting (`_write_now`); None with
        #: a stream that is not a plain TCP socket
        self._write_nowait: Callable[[bytes], int] | None = None
        self.tls: _tls.TLSPipe | None = None  # with TLS: encrypts what goes to `stream`
        # A stranger's frames are small and handshake-only until the handshake is done.
        self._reader = wire.FrameReader(wire.HANDSHAKE_MAX_FRAME)
        self._decoder = wire.handshake_decoder()
        self._partial_since: float | None = None  # when the frame being received began
        self._charged = 0  # bytes of a partial frame charged to the system's budget
        self.refused_tells = 0
        self.peer = PeerInfo(label, "?", None)  # replaced once the handshake is done

    # -- sending --------------------------------------------------------------------------
    def next_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def encode(self, msg: wire.Message) -> bytes:
        """The frame for `msg`; MessageTooLarge past `max_frame`."""
        body = self._encode(msg)
        if len(body) > self._max_frame:
            raise MessageTooLarge(
                f"message of {len(body)} bytes exceeds the frame limit of {self._max_frame}")
        return self._pack_header(len(body)) + body  # wire.encode_frame, inlined

    async def send(self, msg: wire.Message, direct: bool = False) -> None:
        """Queue a frame; with `direct`, write it at once when the line is idle.

        Latency-bound frames (asks, replies) skip the writer task when nothing is queued:
        a synchronous non-blocking write saves two trips through trio's scheduler per
        round trip. Throughput-bound tells always queue, so the writer coalesces them.
        """
        if self.closed:
            raise ConnectionLost(f"connection to {self.label} closed: {self.close_reason}")
        frame = self.encode(msg)
        if direct and self.burst <= 1 and self._write_now(frame):
            return
        if not self.outbox.offer(frame):
            await self.outbox.put(frame)

    def send_control(self, msg: wire.Message) -> None:
        if not self.closed:
            frame = self.encode(msg)
            if not self._write_now(frame):
                self.outbox.force(frame)

    def _write_now(self, frame: bytes) -> bool:
        outbox = self.outbox
        write = self._write_nowait
        tls = self.tls
        if write is None or outbox.items or outbox.sending or (tls is not None and tls.pending):
            return False
        data = frame if tls is None else tls.encrypt(frame)
        try:
            sent = write(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            if tls is None:
                return False  # the writer will meet the error and close the connection
            sent = 0  # (encrypted already: it must go, or the connection ends)
        if sent < len(data):
            if tls is None:
                outbox.push_front(data[sent:])
            else:  # records, to go out before the writer encrypts anything else
                tls.pending = data[sent:]
                outbox.push_front(b"")
        self.last_sent = trio.current_time()
        return True

    def send_reply(self, req_id: int, value: Any, error: BaseException | None,
                   direct: bool = True) -> None:
        if self.closed:
            return
        direct = direct and self.burst <= 1
        if error is None:
            try:
                frame = self.encode(wire.Reply(id=req_id, v=value))
            except (TypeError, ValueError, MessageTooLarge, RecursionError) as e:
                error = RemoteError(type(e).__name__, f"reply cannot be sent: {e}")
            else:
                if not (direct and self._write_now(frame)):
                    self.outbox.force(frame)
                return
        frame = self.encode(wire.error_reply(req_id, error))
        if not (direct and self._write_now(frame)):
            self.outbox.force(frame)

    # -- running --------------------------------------------------------------------------
    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Handshake, then read/write/heartbeat until closed. Owns the stream.

        Each of the three tasks turns its own failure into `close(reason)`, so nothing
        escapes the connection's nursery: one broken peer never disturbs the system.
        """
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                try:
                    leftover = await self._handshake()
                except (ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError,
                        OSError, trio.TooSlowError, ssl.SSLError) as e:
                    reason = _reason(e)
                    self.system._warn_limited("handshake", "handshake with %s failed: %s",
                                              self.label, reason)
                    if isinstance(e, ProtocolError):
                        await self._say_goodbye(reason)
                    self._mark_closed(reason)
                    if self.dial_url is not None:
                        raise ConnectionLost(f"cannot connect to {self.label}: {reason}") from None
                    return
                self.system._register_connection(self)
                task_status.started()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write_loop)
                    nursery.start_soon(self._heartbeat_loop)
                    await self._guarded_read(leftover)
        finally:
            self.close(self.close_reason or "connection ended")
            await trio.aclose_forcefully(self.stream)

    async def _guarded_read(self, leftover: list[wire.Message]) -> None:
        try:
            for msg in leftover:
                self._dispatch(msg)
            await self._read_loop()
        except ProtocolError as e:
            self.system._warn_limited("protocol", "closing connection with %s: %s",
                                      self.peer_name, e)
            await self._say_goodbye(str(e))
            self.close(str(e))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, ssl.SSLError) as e:
            self.close(_reason(e))
        except Exception as e:  # a bug of ours: lose this connection, not the system
            log.exception("internal error on connection with %s", self.label)
            self.close(f"internal error: {e}")

    async def _say_goodbye(self, reason: str) -> None:
        with trio.move_on_after(0.2) as scope:
            scope.shield = True
            with contextlib.suppress(Exception):
                await self.stream.send_all(self._seal(self.encode(
                    wire.Close(reason=reason[:500]))))

    def _seal(self, data: bytes) -> bytes:
        """What to write to the stream for `data`: TLS records when TLS is on."""
        return data if self.tls is None else self.tls.encrypt(data)

    def _open(self, data: bytes | bytearray) -> bytes | bytearray:
        """The plaintext in bytes read from the stream (b"" while a TLS record is
        partial); records the TLS layer must send in answer go to the writer."""
        tls = self.tls
        if tls is None:
            return data
        try:
            plain = tls.decrypt(data)
        except EOFError:
            raise trio.BrokenResourceError("the peer closed the TLS session") from None
        if tls.pending:
            self.outbox.push_front(b"")  # wakes the writer, which sends them first
        return plain

    async def _handshake(self) -> list[wire.Message]:
        """TLS, then the Hello/Auth exchange, taking one small frame at a time through
        the handshake-only decoder. Returns what the peer sent after it (already decoded
        with the full decoder, which takes over with the full frame limit)."""
        sys_ = self.system
        reader = self._reader
        with trio.fail_after(sys_.config.handshake_timeout):
            data: bytes | bytearray = b""
            tls = sys_.config.tls
            cert_role = cert_name = None
            if tls is not None:
                server = self.dial_url is None
                self.tls, data = await _tls.handshake(
                    self.stream, tls.server_context if server else tls.client_context,
                    server_side=server, server_hostname=None if server else tls.server_hostname)
                cert_role, cert_name = certificate_identity(self.tls.getpeercert())
            # The credential goes only where the policy lets it (with TLS, to a peer whose
            # certificate it trusts with it), and only now that the certificate is known.
            credential = sys_.config.credential
            policy = sys_.config.policy
            if credential and policy is not None and not policy.credential_for(
                    cert_role, cert_name, self.dial_url):
                credential = ""
            hs = wire.Handshake(sys_.name, sys_.url, sys_.config.secret, credential=credential)
            await self.stream.send_all(self._seal(b"".join(self.encode(m) for m in hs.start())))
            while not hs.done:
                body = reader.next_frame(data)
                data = b""
                if body is None:
                    raw = await self.stream.receive_some(READ_SIZE)
                    if not raw:
                        raise ProtocolError("peer closed the connection during the handshake")
                    data = self._open(raw)
                    continue
                msg = self._decoder.decode(body)
                if isinstance(msg, wire.Close):
                    raise ProtocolError(f"peer refused the connection: {msg.reason}")
                out = hs.receive(msg)
                if out:
                    await self.stream.send_all(self._seal(b"".join(self.encode(m)
                                                                   for m in out)))
        assert hs.peer is not None
        role, name = cert_role, cert_name or hs.peer.sys
        self.peer_url = hs.peer.url
        self.peer = PeerInfo(self.label, name, hs.peer.url, role=role, system=hs.peer.sys,
                             credential=hs.peer.cred)
        self.peer_name = str(self.peer)
        why = sys_._admission.admit_connection(self)
        if why is not None:
            raise ProtocolError(why)
        self.last_recv = trio.current_time()
        self._write_nowait = nonblocking_writer(self.stream)
        # Authenticated (or, without a secret, introduced): the full protocol from here.
        reader.max_frame = sys_.config.max_frame
        self._decoder = wire.MessageDecoder(sys_._ext_hook)
        return [self._decoder.decode(b) for b in reader.feed(b"")]

    async def _read_loop(self) -> None:
        stream = self.stream
        reader = self._reader
        feed = reader.feed
        decode_many = self._decoder.decode_many
        dispatch = self._dispatch
        receive_tell = self.system._admission.receive_tell
        tell_kind = wire.Tell  # a local: tested once per frame
        tls = self.tls is not None
        self._track_partial()
        while True:
            data = await stream.receive_some(READ_SIZE)
            if not data:
                self.close("peer closed the connection")
                return
            if tls:
                data = self._open(data)
            bodies = feed(data)
            self.burst = len(bodies)
            if bodies:
                # Only whole frames prove the peer alive: a byte dripped now and then
                # must not keep a connection (and its buffer) open for ever.
                self.last_recv = trio.current_time()
                for start in range(0, len(bodies), FAIR_BATCH):
                    if start:
                        # A read can hold ~20,000 small frames: let everyone else run
                        # between slices of it, so one busy peer cannot stall the rest.
                        await trio.lowlevel.checkpoint()
                    messages, error = decode_many(bodies[start:start + FAIR_BATCH])
                    for msg in messages:
                        if type(msg) is tell_kind:  # `_dispatch` for the most frequent kind
                            refusal = receive_tell(self, msg)
                            if refusal is not None:
                                self._refused_tell(msg, refusal)
                        else:
                            dispatch(msg)
                    if error is not None:
                        raise error
            if reader.buffered or self._partial_since is not None:
                self._track_partial()

    def _track_partial(self) -> None:
        """Note when a partial frame began, and charge what it holds beyond FREE_PARTIAL
        to the system's receive budget; over budget, this connection is the one to go."""
        buffered = self._reader.buffered
        if not buffered:
            self._partial_since = None
        elif self._partial_since is None:
            self._partial_since = trio.current_time()
        charge = max(0, buffered - FREE_PARTIAL)
        if charge != self._charged:
            sys_ = self.system
            sys_._rx_charged += charge - self._charged
            self._charged = charge
            limit = sys_.config.max_receive_buffer
            if charge and sys_._rx_charged > limit:
                raise ProtocolError(
                    f"receive budget exhausted: partial frames hold {sys_._rx_charged} bytes "
                    f"across connections (limit {limit})")

    async def _write_loop(self) -> None:
        outbox = self.outbox
        stream = self.stream
        seal = self._seal
        try:
            while True:
                data = seal(await outbox.take())
                outbox.sending = True
                await stream.send_all(data)
                outbox.sending = False
                self.last_sent = trio.current_time()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, ssl.SSLError) as e:
            self.close(_reason(e))

    async def _heartbeat_loop(self) -> None:
        cfg = self.system.config
        ping = self.encode(wire.Ping())
        while True:
            await trio.sleep(cfg.heartbeat_interval)
            now = trio.current_time()
            started = self._partial_since
            if started is not None:
                # Mid-frame no ping can arrive; the frame itself must finish in time.
                if now - started > cfg.frame_timeout:
                    self.system._warn_limited(
                        "frame_timeout", "closing connection with %s: a frame of %d bytes so "
                        "far was not completed within %.0fs", self.peer_name,
                        self._reader.buffered, cfg.frame_timeout)
                    self.close(f"frame not completed within {cfg.frame_timeout}s")
                    return
            elif now - self.last_recv > cfg.heartbeat_timeout:
                log.warning("closing connection with %s: peer silent for %.1fs",
                            self.peer_name, now - self.last_recv)
                self.close(f"peer silent for {cfg.heartbeat_timeout}s")
                return
            if now - self.last_sent >= cfg.heartbeat_interval and not self.outbox.items:
                self.outbox.force(ping)

    # -- receiving ------------------------------------------------------------------------
    def _dispatch(self, msg: wire.Message) -> None:
        sys_ = self.system
        if type(msg) is wire.Tell:  # the most frequent kind first
            # Requests: each is put to the system's policy before anything acts on it.
            refusal = sys_._admission.receive_tell(self, msg)
            if refusal is not None:
                self._refused_tell(msg, refusal)
        elif type(msg) is wire.Reply:
            slot = self.pending.pop(msg.id, None)
            if slot is not None:
                if msg.e:
                    slot.set(error=wire.reply_error(msg))
                else:
                    slot.set(msg.v)
        elif type(msg) is wire.Ask:
            refusal = sys_._admission.receive_ask(self, msg)
            if refusal is not None:
                self.send_reply(msg.id, None, refusal)
        elif type(msg) is wire.Ping:
            pass
        elif type(msg) is wire.Stop:
            refusal = sys_._admission.admit(self, "kill" if msg.kill else "stop", msg.to, "")
            if refusal is None:
                sys_._remote_stop(msg, RemoteReply(self, msg.id))
            else:
                self.send_reply(msg.id, None, refusal)
        elif type(msg) is wire.Lookup:
            refusal = sys_._admission.admit(self, "lookup", msg.to, "")
            if refusal is not None:
                self.send_reply(msg.id, None, refusal)
            elif msg.to in sys_._registry:
                self.send_reply(msg.id, True, None)
            else:
                self.send_reply(msg.id, None,
                                ActorNotFound(f"no actor {msg.to!r} on {sys_.url}"))
        elif type(msg) is wire.Monitor:
            refusal = sys_._admission.admit(self, "monitor", msg.to, "")
            if refusal is None and len(self.monitors_in) >= sys_.config.max_monitors:
                refusal = Forbidden(f"more than {sys_.config.max_monitors} monitors on "
                                    "one connection")
            if refusal is None:
                sys_._remote_monitor(self, msg)
            else:
                self.send_control(wire.Down(id=msg.id, reason="refused", detail=str(refusal)))
        elif type(msg) is wire.Demonitor:
            cell = self.monitors_in.pop(msg.id, None)
            if cell is not None:
                cell.monitors.pop((self, msg.id), None)
        elif type(msg) is wire.Down:
            entry = self.monitors_out.pop(msg.id, None)
            if entry is not None:
                sys_._fire_down(entry, msg.reason, msg.detail)
        elif type(msg) is wire.Close:
            log.info("peer %s closed the connection: %s", self.peer_name, msg.reason)
            self.close(f"peer closed the connection: {msg.reason}")
        else:  # Hello/Auth after the handshake
            raise ProtocolError(f"unexpected {type(msg).__name__.lower()} after the handshake")

    def _refused_tell(self, msg: wire.Tell, refusal: BaseException) -> None:
        """A tell has no one to answer: log it (at most once a second)."""
        self.refused_tells += 1
        self.system._warn_limited("tell", "tell %r to %r from %s dropped: %s (%d dropped on "
                                  "this connection)", msg.m[:100], msg.to[:100],
                                  self.peer_name, refusal, self.refused_tells)

    def _overflowed(self, reason: str) -> None:
        self.system._warn_limited("overflow", "closing connection with %s: %s",
                                  self.peer_name, reason)
        self.close(reason)

    # -- closing --------------------------------------------------------------------------
    def _mark_closed(self, reason: str) -> None:
        self.closed = True
        self.close_reason = reason
        self.outbox.close()

    def close(self, reason: str) -> None:
        """Idempotent. Fails what waits on this connection and fires its monitors."""
        if not self.closed:
            log.debug("connection with %s closed: %s", self.peer_name, reason)
            self._mark_closed(reason)
        if self._scope is not None:
            self._scope.cancel()
        if self._finalized:
            return
        self._finalized = True
        self.system._rx_charged -= self._charged
        self._charged = 0
        self.system._drop_connection(self)
        who = self.peer_name if self.peer_name != "?" else self.label
        lost = ConnectionLost(f"connection to {who} lost: {reason}")
        pending, self.pending = self.pending, {}
        for slot in pending.values():
            slot.set(error=lost)
        monitors_out, self.monitors_out = self.monitors_out, {}
        for entry in monitors_out.values():
            self.system._fire_down(entry, "noconnection", reason)
        monitors_in, self.monitors_in = self.monitors_in, {}
        for mon_id, cell in monitors_in.items():
            cell.monitors.pop((self, mon_id), None)


def nonblocking_writer(stream: trio.abc.Stream) -> Callable[[bytes], int] | None:
    """A synchronous write to the socket under `stream` that never waits: it returns how
    many bytes the kernel took (maybe fewer than given) or raises BlockingIOError when it
    took none; None for a stream that is not a plain TCP `trio.SocketStream`.

    trio has no public synchronous send (`SocketStream.send_all` is a coroutine, and a
    trip through it costs two passes of the scheduler per round trip), so this writes to
    the file descriptor of trio's socket, which trio makes public and non-blocking
    (`socket.fileno()`), with `os.write`. The descriptor is asked for at every write, so
    a closed socket (fileno -1) fails with OSError rather than reaching a descriptor that
    was reused since. tests/actors/test_remote.py checks each of these promises on a
    real socket, so a trio that changed them fails there."""
    if not isinstance(stream, trio.SocketStream):
        return None
    fileno = stream.socket.fileno
    write = os.write

    def write_nowait(data: bytes) -> int:
        return write(fileno(), data)

    return write_nowait


def _reason(e: BaseException) -> str:
    if isinstance(e, trio.TooSlowError):
        return "handshake timed out"
    tls = _tls.tls_reason(e)
    if tls is not None:
        return tls
    text = str(e) or type(e).__name__
    if isinstance(e, (trio.BrokenResourceError, OSError)) and e.__cause__ is not None:
        text = f"{text}: {e.__cause__}"
    return text
