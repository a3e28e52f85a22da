"""Who is at the other end of a connection (`PeerInfo`), and how a verified certificate
names it (`certificate_identity`)."""

from __future__ import annotations

from typing import Any


class PeerInfo:
    """Who is at the other end of a connection: what the system's policy decides on and
    what log lines name.

    `address` is where the connection came from (or what we dialled). With TLS, `role`
    and `name` are the peer certificate's subject OU and CN (verified against the CA):
    the peer's identity. Without a certificate (or one without an OU) `role` is None and
    `name` is the CN, else the system name the peer announced, a claim (authenticated
    by the shared secret when one is set: any holder of the secret may claim any name).
    `system` and `url` are what the peer announced in its Hello, for logs only: nothing
    is ever routed by them. `credential` is the bearer credential (an ACL token) it
    presented, "" if none."""

    __slots__ = ("address", "credential", "memo", "name", "role", "system", "url")

    def __init__(self, address: str, name: str, url: str | None, role: str | None = None,
                 system: str | None = None, credential: str = "") -> None:
        self.address = address
        self.name = name
        self.url = url
        self.role = role
        self.system = name if system is None else system
        self.credential = credential
        #: the policy's own: what it derived from this peer, so that the work is done
        #: once per connection rather than once per message
        self.memo: Any = None

    @property
    def host(self) -> str:
        return self.address.rpartition(":")[0].strip("[]") or self.address

    @property
    def certified(self) -> bool:
        """Whether `role` and `name` come from a verified certificate."""
        return self.role is not None

    def __str__(self) -> str:
        who = f"{self.role}:{self.name}" if self.role is not None else self.name
        return f"{who} at {self.address}"

    def __repr__(self) -> str:
        return f"PeerInfo({self})"


def certificate_identity(cert: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """(role, name) from a verified peer certificate (`SSLObject.getpeercert()`): its
    subject's organizational unit and common name, each None when absent."""
    fields: dict[str, str] = {}
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            fields.setdefault(key, value)
    return fields.get("organizationalUnitName") or None, fields.get("commonName") or None
