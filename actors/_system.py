"""`ActorSystem`: one per process; the registry, spawn, sending, lookup and monitors.

The system owns a trio nursery. Top-level actors run in it; an actor's children run in the
actor's own nursery, so closing the system stops everything it started, each level in
reverse start order. Remote traffic goes through one `Connection` per peer system; the
listener (`_listener`) accepts them, every request they carry passes the gate
(`_admission`) and the configuration (`_config`) holds every limit.
"""

from __future__ import annotations

import itertools
import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from . import _wire as wire
from ._actor import Actor, Cell, Down
from ._admission import Admission
from ._codec import make_encoder, make_ext_hook
from ._config import SystemConfig, TLSConfig
from ._errors import ActorNotFound, AskTimeout, ConnectionLost, UnknownHandler
from ._listener import Listener
from ._mailbox import STOP, Slot
from ._peer import PeerInfo
from ._ref import DEFAULT_ASK_TIMEOUT, ActorRef, split_url
from ._timer import Timer
from ._transport import Connection

log = logging.getLogger("actors")


class Monitor:
    """A monitor placed from outside any actor: `await mon.wait()` returns the `Down`."""

    def __init__(self, system: ActorSystem, ref: ActorRef) -> None:
        self.system = system
        self.ref = ref
        self.id = 0
        self.down: Down | None = None
        self._slot = Slot()

    def _deliver(self, down: Down) -> None:
        self.down = down
        self._slot.set(down)

    async def wait(self, timeout: float | None = None) -> Down:
        if timeout is None:
            return await self._slot.wait()
        with trio.fail_after(timeout):
            return await self._slot.wait()

    async def cancel(self) -> None:
        await self.system._demonitor(self.id)


class ActorSystem:
    """Registry and router of the actors of one process. Create it with `open_system`."""

    def __init__(self, name: str, config: SystemConfig) -> None:
        self.name = name
        self.config = config
        # Replaced when listening. Unguessable: a non-listening system is reached only
        # through the connection that announced this URL (see _register_connection).
        self.url = f"actor://{name}-{uuid.uuid4().hex}"
        self._registry: dict[str, Cell] = {}
        self._top: dict[Cell, None] = {}
        self._conns: dict[str, Connection] = {}  # system URL -> the connection to use
        self._live: dict[Connection, None] = {}  # every connection past its handshake
        self._dialing: dict[str, trio.Event] = {}
        self._dial_errors: dict[str, str] = {}
        self._monitors: dict[int, Any] = {}
        self._mon_ids = itertools.count(1)
        self._names = itertools.count(1)
        self._nursery: trio.Nursery | None = None
        self._service_scopes: list[trio.CancelScope] = []
        self._closing = False
        self._timer = Timer()
        self._inline_runs = 0  # local asks run in the asking task (see `_ask`)
        self._rx_charged = 0  # bytes of partial frames over the free allowance, all peers
        self._listener = Listener(self)
        self._admission = Admission(self)
        self._warned: dict[str, tuple[float, int]] = {}
        self._encoder = make_encoder(ActorRef)
        self._ext_hook = make_ext_hook(self.ref)

    # -- public ---------------------------------------------------------------------------
    def ref(self, name_or_url: str) -> ActorRef:
        """A ref to `name` here, or to any actor URL; nothing is checked (see `lookup`)."""
        if "://" in name_or_url:
            system_url, name = split_url(name_or_url)
            return ActorRef(self, system_url, name)
        return ActorRef(self, self.url, name_or_url)

    async def spawn(self, cls: type[Actor], *args: Any, name: str | None = None,
                    **kwargs: Any) -> ActorRef:
        """Start a top-level actor; returns once its `on_start` has run."""
        return await self._spawn(cls, args, kwargs, name, parent=None)

    async def lookup(self, url: str, timeout: float = DEFAULT_ASK_TIMEOUT) -> ActorRef:
        """A ref to an actor that exists now; raises ActorNotFound or ConnectionLost."""
        ref = self.ref(url)
        if ref.system_url == self.url:
            if ref.name not in self._registry:
                raise ActorNotFound(f"no actor {ref.name!r} on {self.url}")
            return ref
        conn = await self._connection(ref.system_url)
        slot = Slot()
        req = conn.next_id()
        conn.pending[req] = slot
        try:
            await conn.send(wire.Lookup(id=req, to=ref.name))
            with trio.move_on_after(timeout):
                await slot.wait()
                return ref
            raise AskTimeout(f"lookup of {url} timed out after {timeout}s")
        finally:
            conn.pending.pop(req, None)

    async def monitor(self, ref: ActorRef) -> Monitor:
        """Watch `ref` from outside any actor (scripts, tests)."""
        mon = Monitor(self, ref)
        mon.id = await self._monitor(ref, mon._deliver)
        return mon

    async def peer(self, url: str) -> PeerInfo:
        """Who answers at `url` (a system or actor URL): the identity of the connection
        that messages to it use, connecting if need be. With TLS, its role and name
        come from its certificate. Raises ConnectionLost."""
        system_url = split_url(url)[0] if url.count("/") > 2 else url
        if system_url == self.url:
            raise ValueError(f"{url} is this system")
        return (await self._connection(system_url)).peer

    @property
    def refused_connections(self) -> int:
        """Connections refused over a connection limit since the system started."""
        return self._listener.refused

    def cell(self, name: str) -> Cell | None:
        """The runtime's record of the actor running here as `name` (its `Cell`: actor,
        mailbox, children), or None: for the runtime's own parts, such as a supervisor
        keeping track of its children, and for introspection."""
        return self._registry.get(name)

    def registered(self) -> list[str]:
        """Names of the actors running here, in no particular order."""
        return list(self._registry)

    async def aclose(self) -> None:
        """Stop every actor (reverse start order), then every connection and the listener."""
        if self._closing:
            return
        self._closing = True
        for cell in reversed(list(self._top)):
            await cell.shutdown("shutdown")
        for conn in list(self._live):
            conn.close("system shutting down")
        for scope in self._service_scopes:  # the listener and the timer, not the caller
            scope.cancel()

    async def _service(self, fn: Callable[..., Any], *args: Any,
                       task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Run one of the system's own tasks under a scope that `aclose` cancels, so that
        closing the system early does not cancel the code that called `aclose`."""
        with trio.CancelScope() as scope:
            self._service_scopes.append(scope)
            if task_status is trio.TASK_STATUS_IGNORED:
                await fn(*args)
            else:
                await fn(*args, task_status=task_status)

    # -- spawning -------------------------------------------------------------------------
    async def _spawn(self, cls: type[Actor], args: tuple[Any, ...], kwargs: dict[str, Any],
                     name: str | None, parent: Cell | None) -> ActorRef:
        given: object = cls  # checked at run time: callers are not always type-checked
        if not (isinstance(given, type) and issubclass(given, Actor)):
            raise TypeError(f"spawn needs an Actor subclass, got {cls!r}")
        if self._closing:
            raise RuntimeError(f"actor system {self.name!r} is closing")
        given_name: object = name
        if name is None:
            name = f"{cls.__name__.lower()}-{next(self._names)}"
        elif not isinstance(given_name, str) or not name or name.startswith("$"):
            raise ValueError(f"invalid actor name {name!r}")
        if name in self._registry:
            raise ValueError(f"an actor named {name!r} already runs in system {self.name!r}")
        actor = cls(*args, **kwargs)
        cell = Cell(self, actor, name, parent)
        self._registry[name] = cell
        if parent is None:
            self._top[cell] = None
            nursery = self._nursery
        else:
            parent.children[cell] = None
            nursery = parent.nursery
        assert nursery is not None
        await nursery.start(cell.run)
        if cell.start_error is not None:
            raise cell.start_error
        return ActorRef(self, self.url, name)

    def _unregister(self, cell: Cell) -> None:
        if self._registry.get(cell.name) is cell:
            del self._registry[cell.name]
        self._top.pop(cell, None)

    # -- sending --------------------------------------------------------------------------
    def _tell_nowait(self, ref: ActorRef, method: str, args: tuple[Any, ...],
                     kwargs: dict[str, Any]) -> bool:
        """A tell that needs no waiting: to a local actor, or queued on a live connection
        with room in its send queue. False: `_tell` must do it (dial, or wait for room).
        Called by `ActorRef.tell` before any coroutine is made: the common case costs
        none."""
        if ref.system_url == self.url:
            cell = self._registry.get(ref.name)
            if cell is not None and method in cell.actor._handlers:
                cell.mailbox.put((method, args, kwargs, None))
            else:
                log.debug("tell %s to %s dropped: no such actor or handler", method, ref.name)
            return True
        conn = self._conns.get(ref.system_url)
        if conn is None or conn.closed:
            return False
        return conn.outbox.offer(conn.encode(wire.Tell(to=ref.name, m=method, a=args,  # type: ignore[arg-type]
                                                       kw=kwargs)))

    async def _tell(self, ref: ActorRef, method: str, args: tuple[Any, ...],
                    kwargs: dict[str, Any]) -> None:
        """A remote tell that `_tell_nowait` could not do: wait for a connection, or for
        room in its send queue."""
        conn = await self._connection(ref.system_url)
        await conn.send(wire.Tell(to=ref.name, m=method, a=args, kw=kwargs))  # type: ignore[arg-type]

    async def _ask(self, ref: ActorRef, method: str, args: tuple[Any, ...],
                   kwargs: dict[str, Any], timeout: float | None) -> Any:
        if ref.system_url == self.url:
            cell = self._registry.get(ref.name)
            if cell is None:
                raise ActorNotFound(f"no actor {ref.name!r} on {self.url}")
            if method not in cell.actor._handlers:
                raise UnknownHandler(f"{type(cell.actor).__name__} has no handler {method!r}")
            slot = Slot((ref.name, method, timeout))
            if cell.idle_for(method):
                # Fast path: the actor is idle and the handler cannot suspend, so run it
                # here rather than wake the actor's task and wait to be woken (two trips
                # through the scheduler). A checkpoint now and then keeps a loop of such
                # asks from starving everything else, as the actor's own loop does.
                cell.run_inline(method, args, kwargs, slot)
                self._inline_runs += 1
                if not self._inline_runs & 63:
                    await trio.lowlevel.checkpoint()
                if slot.error is not None:
                    raise slot.error
                return slot.value
            cell.mailbox.put((method, args, kwargs, slot))
            return await self._wait(slot, timeout)
        conn = self._conns.get(ref.system_url)
        if conn is None or conn.closed:
            conn = await self._connection(ref.system_url)
        slot = Slot((ref.url, method, timeout))
        req = conn.next_id()
        conn.pending[req] = slot
        try:
            await conn.send(wire.Ask(id=req, to=ref.name, m=method, a=args, kw=kwargs),  # type: ignore[arg-type]
                            direct=True)
            return await self._wait(slot, timeout)
        finally:
            conn.pending.pop(req, None)

    async def _wait(self, slot: Slot, timeout: float | None) -> Any:
        if timeout is None:
            return await slot.wait()
        self._timer.add(slot, timeout)
        try:
            return await slot.wait()
        finally:
            self._timer.discard(slot)

    async def _stop(self, ref: ActorRef, kill: bool, timeout: float | None) -> None:
        if ref.system_url == self.url:
            cell = self._registry.get(ref.name)
            if cell is None:
                raise ActorNotFound(f"no actor {ref.name!r} on {self.url}")
            with trio.move_on_after(timeout if timeout is not None else float("inf")):
                if kill:
                    cell.kill()
                    await cell.wait_done()
                else:
                    slot = Slot()
                    cell.mailbox.put((STOP, None, None, slot))
                    await slot.wait()
                return
            raise AskTimeout(f"{ref.name} did not stop within {timeout}s")
        conn = await self._connection(ref.system_url)
        req = conn.next_id()
        slot = Slot()
        conn.pending[req] = slot
        try:
            await conn.send(wire.Stop(id=req, to=ref.name, kill=kill))
            with trio.move_on_after(timeout if timeout is not None else float("inf")):
                await slot.wait()
                return
            raise AskTimeout(f"{ref.url} did not stop within {timeout}s")
        finally:
            conn.pending.pop(req, None)

    # -- receiving from connections (after `_admission.Admission`) -------------------------
    def _remote_stop(self, msg: wire.Stop, reply: Any) -> None:
        cell = self._registry.get(msg.to)
        if cell is None:
            reply.set(error=ActorNotFound(f"no actor {msg.to!r} on {self.url}"))
        elif msg.kill:
            cell.on_done(lambda: reply.set(None))
            cell.kill()
        else:
            cell.mailbox.put((STOP, None, None, reply))

    # -- monitors -------------------------------------------------------------------------
    async def _monitor(self, ref: ActorRef, deliver: Callable[[Down], None]) -> int:
        mon_id = next(self._mon_ids)
        if ref.system_url == self.url:
            cell = self._registry.get(ref.name)
            if cell is None or cell.finished:
                deliver(Down(ref, "noproc", f"no actor {ref.name!r} on {self.url}"))
                return mon_id
            self._monitors[mon_id] = cell

            def fire(down: Down) -> None:
                self._monitors.pop(mon_id, None)
                deliver(down)

            cell.monitors[mon_id] = fire
            return mon_id
        try:
            conn = await self._connection(ref.system_url)
        except ConnectionLost as e:
            deliver(Down(ref, "noconnection", str(e)))
            return mon_id
        self._monitors[mon_id] = conn
        conn.monitors_out[mon_id] = (deliver, ref, mon_id)
        conn.send_control(wire.Monitor(id=mon_id, to=ref.name))
        return mon_id

    async def _demonitor(self, mon_id: int) -> None:
        target = self._monitors.pop(mon_id, None)
        if isinstance(target, Cell):
            target.monitors.pop(mon_id, None)
        elif (isinstance(target, Connection)
              and target.monitors_out.pop(mon_id, None) is not None):
            target.send_control(wire.Demonitor(id=mon_id))

    def _remote_monitor(self, conn: Connection, msg: wire.Monitor) -> None:
        cell = self._registry.get(msg.to)
        if cell is None or cell.finished:
            conn.send_control(wire.Down(id=msg.id, reason="noproc",
                                        detail=f"no actor {msg.to!r} on {self.url}"))
            return
        mon_id = msg.id

        def fire(down: Down) -> None:
            conn.monitors_in.pop(mon_id, None)
            conn.send_control(wire.Down(id=mon_id, reason=down.reason, detail=down.detail))

        cell.monitors[(conn, mon_id)] = fire
        conn.monitors_in[mon_id] = cell

    def _fire_down(self, entry: tuple[Any, Any, int], reason: str, detail: str) -> None:
        deliver, ref, mon_id = entry
        self._monitors.pop(mon_id, None)
        try:
            deliver(Down(ref, reason, detail))
        except Exception:
            log.exception("delivering Down of %s failed", ref)

    # -- connections ----------------------------------------------------------------------
    async def _connection(self, system_url: str) -> Connection:
        conn = self._conns.get(system_url)
        if conn is not None and not conn.closed:
            return conn
        pending = self._dialing.get(system_url)
        if pending is not None:
            await pending.wait()
            conn = self._conns.get(system_url)
            if conn is not None and not conn.closed:
                return conn
            raise ConnectionLost(self._dial_errors.get(system_url, f"cannot reach {system_url}"))
        event = self._dialing[system_url] = trio.Event()
        try:
            return await self._dial(system_url)
        except ConnectionLost as e:
            self._dial_errors[system_url] = str(e)
            raise
        finally:
            del self._dialing[system_url]
            event.set()

    async def _dial(self, system_url: str) -> Connection:
        scheme, _, authority = system_url.partition("://")
        if scheme != "tcp":
            raise ConnectionLost(f"no connection to {system_url} (it does not listen)")
        host, _, port_text = authority.rpartition(":")
        host = host.strip("[]")
        if self._closing or self._nursery is None:
            raise ConnectionLost(f"actor system {self.name!r} is closing")
        try:
            with trio.fail_after(self.config.connect_timeout):
                stream = await trio.open_tcp_stream(host, int(port_text))
        except (OSError, ValueError, trio.TooSlowError) as e:
            why = str(e) or type(e).__name__
            raise ConnectionLost(f"cannot connect to {system_url}: {why}") from None
        conn = Connection(self, stream, authority, dial_url=system_url)
        await self._nursery.start(conn.run)
        return conn

    def _register_connection(self, conn: Connection) -> None:
        """Where messages to a system URL go. A URL we dialled: that connection. A URL a
        peer announced is only a claim, so it is used only when it cannot be dialled
        (`actor://`, a system that does not listen, reachable through the connection it
        opened) and no live connection holds it already; a `tcp://` URL is always
        dialled, so a peer announcing another system's URL receives nothing meant for it.
        """
        self._live[conn] = None
        if conn.dial_url is not None:
            self._conns[conn.dial_url] = conn
            return
        url = conn.peer_url
        if url is not None and url.startswith("actor://"):
            existing = self._conns.get(url)
            if existing is None or existing.closed:
                self._conns[url] = conn

    def _drop_connection(self, conn: Connection) -> None:
        self._live.pop(conn, None)
        for key in [k for k, c in self._conns.items() if c is conn]:
            del self._conns[key]

    def _warn_limited(self, kind: str, msg: str, *args: Any) -> None:
        """A warning about a peer, at most one per `kind` a second: hostile peers must not
        be able to fill the log. The next one says how many were held back."""
        now = trio.current_time()
        last, held = self._warned.get(kind, (-1e9, 0))
        if now - last < 1.0:
            self._warned[kind] = (last, held + 1)
            return
        self._warned[kind] = (now, 0)
        if held:
            msg += f" ({held} more like this not logged)"
        log.warning(msg, *args)


@asynccontextmanager
async def open_system(name: str | None = None, listen: str | None = None, *,
                      secret: bytes | str | None = None, tls: TLSConfig | None = None,
                      advertise: str | None = None, **options: Any
                      ) -> AsyncIterator[ActorSystem]:
    """Run an actor system for the duration of the `async with` block.

    `listen="127.0.0.1:0"` accepts connections from other systems (port 0: any free port;
    `system.url` tells which); without it the system can still reach others, and they can
    answer it, but not dial it. `secret` (or the ACTORS_SECRET environment variable) turns
    on mutual HMAC authentication; `tls` (see `tls_config`) encrypts. Other options are
    `SystemConfig` fields: the limits (max_frame, send_queue, max_queued_bytes,
    heartbeat_interval, heartbeat_timeout, handshake_timeout, connect_timeout,
    frame_timeout, max_connections, max_connections_per_host, max_receive_buffer,
    max_mailbox, max_monitors), `policy` (a `Policy`, or a function that authorizes),
    which every request from the network is put to, and `credential`, a bearer token
    presented to every peer.
    """
    if secret is None:
        secret = os.environ.get("ACTORS_SECRET") or None
    if isinstance(secret, str):
        secret = secret.encode()
    config = SystemConfig(secret=secret, tls=tls, **options)
    system = ActorSystem(name or f"system-{os.getpid()}", config)
    async with trio.open_nursery() as nursery:
        system._nursery = nursery
        nursery.start_soon(system._service, system._timer.run)
        try:
            if listen:
                await system._listener.listen(listen, advertise)
            yield system
        finally:
            with trio.CancelScope(shield=True):
                await system.aclose()
            nursery.cancel_scope.cancel()
