"""Accepting connections for a system, within its connection limits.

Every limit on who may connect how often is applied here, before any work is done for
the connection: `max_connections` at once, `max_connections_per_host` from one address,
and `max_connection_rate` new ones a second per address (a token bucket). Past a limit the
connection is closed at once, with one log line a second. An accepted connection runs as
a `Connection` (the handshake and everything after it) until it ends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from ._transport import Connection

if TYPE_CHECKING:
    from ._system import ActorSystem


class Listener:
    """The listening side of one system (see the module docstring)."""

    def __init__(self, system: ActorSystem) -> None:
        self.system = system
        self.inbound: dict[str, int] = {}  # accepted connections per peer host
        self.inbound_total = 0
        self.buckets: dict[str, tuple[float, float]] = {}  # host -> (tokens, when)
        self.refused = 0  # connections refused over a limit, since the start

    async def serve(self, stream: trio.SocketStream) -> None:
        """One accepted connection: refused at once over a limit, else run until it ends."""
        try:
            peer = stream.socket.getpeername()
            host, label = str(peer[0]), f"{peer[0]}:{peer[1]}"
        except OSError:
            host = label = "?"
        cfg = self.system.config
        per_host = self.inbound.get(host, 0)
        if (self.inbound_total >= cfg.max_connections
                or per_host >= cfg.max_connections_per_host or not self.rate_ok(host)):
            self.refuse(label, per_host)
            await trio.aclose_forcefully(stream)
            return
        self.inbound[host] = per_host + 1
        self.inbound_total += 1
        try:
            await Connection(self.system, stream, label).run()
        finally:
            self.inbound_total -= 1
            left = self.inbound[host] - 1
            if left:
                self.inbound[host] = left
            else:
                del self.inbound[host]

    def rate_ok(self, host: str) -> bool:
        """A token bucket per peer host: `max_connection_rate` a second, bursts of twice
        that. Buckets of hosts not seen for a while are dropped (bounded memory)."""
        rate = self.system.config.max_connection_rate
        now = trio.current_time()
        tokens, last = self.buckets.get(host, (2 * rate, now))
        tokens = min(2 * rate, tokens + (now - last) * rate)
        if len(self.buckets) > 10_000:
            self.buckets = {h: b for h, b in self.buckets.items() if now - b[1] < 10}
        if tokens < 1:
            self.buckets[host] = (tokens, now)
            return False
        self.buckets[host] = (tokens - 1, now)
        return True

    def refuse(self, label: str, per_host: int) -> None:
        """Over a connection limit: close at once; log at most once a second."""
        self.refused += 1
        cfg = self.system.config
        self.system._warn_limited(
            "connection", "refusing connection from %s: %d connections open (limit %d), %d "
            "from that host (limit %d), at most %g new a second from one host; %d refused "
            "so far", label, self.inbound_total, cfg.max_connections, per_host,
            cfg.max_connections_per_host, cfg.max_connection_rate, self.refused)

    async def listen(self, listen: str, advertise: str | None) -> None:
        """Listen on `listen` (HOST:PORT; port 0: any free one) in the system's nursery,
        and set the system's URL to what peers should dial (`advertise`, else the host)."""
        host, _, port_text = listen.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        try:
            port = int(port_text)
        except ValueError:
            raise ValueError(f"listen address must be HOST:PORT, got {listen!r}") from None
        system = self.system
        assert system._nursery is not None
        try:
            listeners = await trio.open_tcp_listeners(port, host=host)
        except OSError as e:
            # name the address: "Address already in use" alone does not say which
            raise OSError(e.errno, f"cannot listen on {listen}: "
                                   f"{(e.strerror or str(e)).lower()}") from None
        bound = listeners[0].socket.getsockname()
        adv_host = advertise or host
        if adv_host in ("0.0.0.0", "::"):
            adv_host = "127.0.0.1"
        if ":" in adv_host:
            adv_host = f"[{adv_host}]"
        system.url = f"tcp://{adv_host}:{bound[1]}"
        await system._nursery.start(system._service, trio.serve_listeners, self.serve,
                                    listeners)
