"""What a system is configured with: its limits (`SystemConfig`), TLS (`TLSConfig`,
`tls_config`) and its policy (`Policy`), the one gate every request from the network
passes. `open_system(**options)` builds the `SystemConfig`; nothing here does I/O."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import _wire as wire
from ._peer import PeerInfo


@dataclass
class TLSConfig:
    """TLS for every connection of a system: both contexts, usually mutual (client certs).
    `certfile` and `keyfile` name the files, for whoever serves other protocols with
    the same identity."""

    server_context: ssl.SSLContext
    client_context: ssl.SSLContext
    server_hostname: str | None = None
    certfile: str | None = None
    keyfile: str | None = None


def tls_config(certfile: str, keyfile: str, cafile: str,
               server_hostname: str | None = None) -> TLSConfig:
    """Mutual TLS from one certificate/key pair and the CA that signed every peer's.

    Both sides verify the other's certificate against `cafile`; host names are not
    checked unless `server_hostname` is given: a peer's identity is the role and name in
    its certificate (`PeerInfo.role`, `PeerInfo.name`), which the policy judges."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=cafile)
    server.load_cert_chain(certfile, keyfile)
    server.verify_mode = ssl.CERT_REQUIRED
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    client.load_cert_chain(certfile, keyfile)
    if server_hostname is None:
        client.check_hostname = False
    return TLSConfig(server, client, server_hostname, certfile, keyfile)


class Policy:
    """Who may send what to whom: every request from the network is put to it, in one
    place (`Admission.admit`), before any actor sees it. Each method returns None to
    allow, or the reason it refuses (the sender gets `Forbidden` naming it). Subclass it,
    or pass a plain function `(peer, kind, target, method)` as `policy=`, which then
    serves as `authorize`. A policy that raises refuses.
    """

    def authorize(self, peer: PeerInfo, kind: str, target: str, method: str) -> str | None:
        """May `peer` send a `kind` ("tell", "ask", "stop", "kill", "lookup", "monitor")
        to actor `target` here (`method`: the handler; "" for the other kinds)?"""
        return None

    def admit(self, peer: PeerInfo, target: str, method: str, args: list[Any],
              kwargs: dict[str, Any]) -> str | None:
        """After `authorize` allowed a tell or ask: may it carry these arguments? (What
        only the identity can vouch for, e.g. a node reporting only for itself.)"""
        return None

    def connected(self, peer: PeerInfo, dialed: str | None) -> str | None:
        """May this connection be used at all? Called once its handshake is done:
        `dialed` is the system URL we dialled, None for a peer that connected to us."""
        return None

    def credential_for(self, role: str | None, name: str | None, dialed: str | None) -> bool:
        """May this system's `credential` go to a peer whose certificate names `role`
        and `name` (None without TLS)? Asked during the handshake, before it is sent."""
        return True

    def refused(self, peer: PeerInfo, kind: str, target: str, method: str,
                args: list[Any], kwargs: dict[str, Any], reason: str) -> None:
        """Told of every request `authorize` or `admit` refused (to log or audit it)."""


class _FunctionPolicy(Policy):
    def __init__(self, fn: Callable[[PeerInfo, str, str, str], str | None]) -> None:
        self._fn = fn

    def authorize(self, peer: PeerInfo, kind: str, target: str, method: str) -> str | None:
        return self._fn(peer, kind, target, method)


def as_policy(policy: Policy | Callable[[PeerInfo, str, str, str], str | None] | None
              ) -> Policy | None:
    """A `Policy` from a policy or a plain `authorize` function."""
    if policy is None or isinstance(policy, Policy):
        return policy
    return _FunctionPolicy(policy)


@dataclass
class SystemConfig:
    """Every limit of a system is finite, and each is one of these fields (documented in
    the README's "Limits" table); `open_system(**options)` sets them."""

    secret: bytes | None = None
    tls: TLSConfig | None = None
    max_frame: int = wire.DEFAULT_MAX_FRAME  # bytes in one frame, once authenticated
    send_queue: int = 4096          # frames waiting per connection before senders wait
    #: bytes queued towards one peer (replies included); a peer that lets more pile up
    #: is disconnected; senders wait at half of it
    max_queued_bytes: int = 16 * 1024 * 1024
    heartbeat_interval: float = 1.0
    heartbeat_timeout: float = 5.0  # a peer silent this long is declared lost
    handshake_timeout: float = 5.0
    connect_timeout: float = 5.0
    frame_timeout: float = 20.0     # a frame begun must be complete within this
    max_connections: int = 1024     # connections accepted at once, from anywhere
    max_connections_per_host: int = 256  # ... and from one peer address
    #: new connections accepted per second from one peer address (a burst of twice as
    #: many first); beyond it they are closed at once, before any work is done for them
    max_connection_rate: float = 200.0
    #: bytes held in partial frames beyond 16 KiB each, summed over all connections
    max_receive_buffer: int = 16 * 1024 * 1024
    max_mailbox: int = 10_000       # a remote message to an actor with more queued is refused
    max_monitors: int = 10_000      # monitors one peer may place
    policy: Policy | None = None
    #: a bearer credential (an ACL token) sent in this system's Hello to every peer
    credential: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.policy = as_policy(self.policy)
