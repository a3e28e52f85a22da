"""Identity on the actor network: a peer is the role and name in its certificate, never
what it announces. Each attack is shown working without the defence where it can be."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio

import actors
from actors._system import ActorSystem
from helios.security.authz import HeliosPolicy

from .conftest import PKI


class Probe(actors.Actor):
    """Records who called it (as the policy saw it) and what."""

    def __init__(self, label: str, seen: list[Any]) -> None:
        self.label = label
        self.seen = seen

    @actors.handler
    async def hit(self, what: str) -> str:
        self.seen.append((self.label, what))
        return self.label


class Connections(HeliosPolicy):
    """Helios's connection rules (certificate roles), every message allowed."""

    def __init__(self) -> None:
        super().__init__(tls=True)

    def authorize(self, peer: actors.PeerInfo, kind: str, target: str, method: str) -> None:
        return None


class Recording(actors.Policy):
    def __init__(self) -> None:
        self.peers: list[actors.PeerInfo] = []

    def authorize(self, peer: actors.PeerInfo, kind: str, target: str, method: str) -> None:
        self.peers.append(peer)
        return None


async def test_a_peers_role_and_name_come_from_its_certificate(pki: PKI) -> None:
    policy = Recording()
    async with actors.open_system("server", listen="127.0.0.1:0",
                                  tls=pki.config("conductor", "c1"), policy=policy) as server, \
            actors.open_system("conductor-c1", tls=pki.config("node", "n1")) as liar:
        seen: list[Any] = []
        await server.spawn(Probe, "server", seen, name="probe")
        assert await liar.ref(f"{server.url}/probe").ask("hit", "x") == "server"
        (peer,) = policy.peers
        # it announced itself as conductor-c1; its certificate says node n1
        assert (peer.role, peer.name, peer.system) == ("node", "n1", "conductor-c1")
        assert str(peer).startswith("node:n1 at 127.0.0.1:")
        # and the dialler knows who answered, from the server's certificate
        who = await liar.peer(server.url)
        assert (who.role, who.name) == ("conductor", "c1")


def _old_register(self: ActorSystem, conn: Any) -> None:
    """The routing before this defence: an inbound connection was registered under the
    URL its peer announced (so later sends to that URL went to that peer)."""
    self._live[conn] = None
    for key in {conn.dial_url, conn.peer_url} - {None}:
        existing = self._conns.get(key)
        if existing is None or existing.closed or key == conn.dial_url:
            self._conns[key] = conn


@pytest.mark.parametrize("defended", [False, True])
async def test_a_peer_announcing_another_systems_url_receives_nothing_meant_for_it(
        pki: PKI, monkeypatch: pytest.MonkeyPatch, defended: bool) -> None:
    if not defended:
        monkeypatch.setattr(ActorSystem, "_register_connection", _old_register)
    seen: list[Any] = []
    async with actors.open_system("hub", listen="127.0.0.1:0",
                                  tls=pki.config("conductor", "hub")) as hub, \
            actors.open_system("victim", listen="127.0.0.1:0",
                               tls=pki.config("node", "victim")) as victim, \
            actors.open_system("evil", tls=pki.config("node", "evil")) as evil:
        await victim.spawn(Probe, "victim", seen, name="probe")
        await evil.spawn(Probe, "evil", seen, name="probe")
        await hub.spawn(Probe, "hub", seen, name="probe")
        evil.url = victim.url  # what its Hello will announce
        await evil.ref(f"{hub.url}/probe").ask("hit", "hello from 'victim'")
        # the hub now sends something meant for the victim
        answer = await hub.ref(f"{victim.url}/probe").ask("hit", "for the victim only")
        if defended:
            assert answer == "victim"
            assert ("victim", "for the victim only") in seen
            assert ("evil", "for the victim only") not in seen
        else:  # the attack, without the defence
            assert answer == "evil" and ("evil", "for the victim only") in seen


async def _refused(client_tls: actors.TLSConfig | None, server: ActorSystem) -> str:
    async with actors.open_system("client", tls=client_tls, handshake_timeout=2.0) as c:
        with pytest.raises(actors.ConnectionLost) as info:
            await c.ref(f"{server.url}/probe").ask("hit", "x", timeout=5)
    return str(info.value)


async def test_another_cas_an_expired_and_no_certificate_are_refused_in_one_line(
        pki: PKI, caplog: pytest.LogCaptureFixture) -> None:
    expired = pki.expired_env("node", "n1")
    foreign = pki.foreign_env("node", "n1")
    cases = {  # each client trusts the server's CA; its own certificate is the problem
        "another CA": actors.tls_config(foreign["HELIOS_TLS_CERT"],
                                        foreign["HELIOS_TLS_KEY"], pki.ca),
        "expired": actors.tls_config(expired["HELIOS_TLS_CERT"], expired["HELIOS_TLS_KEY"],
                                     pki.ca),
        "plaintext": None,
    }
    seen: list[Any] = []
    caplog.set_level(logging.WARNING, "actors")
    async with actors.open_system("server", listen="127.0.0.1:0",
                                  tls=pki.config("conductor", "c1"),
                                  policy=Connections()) as server:
        await server.spawn(Probe, "server", seen, name="probe")
        port = server.url.rpartition(":")[2]
        for label, client_tls in cases.items():
            await trio.sleep(1.05)  # the server logs one refusal a second (a flood: one)
            caplog.clear()
            reason = await _refused(client_tls, server)
            assert "\n" not in reason, (label, reason)
            # the server's own line (the client's names the server's port)
            warnings = [r.getMessage() for r in caplog.records
                        if r.name.startswith("actors") and r.levelno >= logging.WARNING
                        and f":{port}" not in r.getMessage()]
            assert len(warnings) == 1 and "\n" not in warnings[0], (label, warnings)
            assert {"another CA": "TLS: the peer's certificate is not signed by the CA",
                    "expired": "TLS: the peer's certificate has expired",
                    "plaintext": "TLS: the peer does not speak TLS"}[label] in warnings[0], \
                warnings
            # the server is unaffected: a good client is served at once
            async with actors.open_system("friend", tls=pki.config("node", "n2")) as ok:
                assert await ok.ref(f"{server.url}/probe").ask("hit", label) == "server"
        assert [w for _, w in seen] == list(cases)


async def test_a_cli_certificate_never_serves(pki: PKI) -> None:
    """A process that dials a daemon refuses one that answers with a cli certificate
    (people's certificates cannot impersonate a conductor to the CLI or the nodes): TLS
    itself refuses it (a cli certificate is for TLS clients only), and the policy would
    too (a certificate for both purposes, made elsewhere, with OU cli)."""
    async with actors.open_system("fake-conductor", listen="127.0.0.1:0",
                                  tls=pki.config("cli", "mallory")) as fake, \
            actors.open_system("node", tls=pki.config("node", "n1"),
                               policy=Connections()) as node:
        await fake.spawn(Probe, "fake", [], name="conductor")
        with pytest.raises(actors.ConnectionLost,
                           match=r"may not be used this way|forbidden.*never serves"):
            await node.ref(f"{fake.url}/conductor").ask("hit", "report")


async def test_a_refused_connection_leaves_the_server_serving_others(pki: PKI) -> None:
    """Many refused handshakes in a row (another CA) cost the server nothing lasting."""
    seen: list[Any] = []
    async with actors.open_system("server", listen="127.0.0.1:0",
                                  tls=pki.config("conductor", "c1"),
                                  policy=Connections()) as server:
        await server.spawn(Probe, "server", seen, name="probe")
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(_refused, pki.foreign("node", "x"), server)
        assert not server._live
        async with actors.open_system("friend", tls=pki.config("node", "n2")) as ok:
            assert await ok.ref(f"{server.url}/probe").ask("hit", "after") == "server"


@pytest.mark.parametrize("defended", [False, True])
async def test_a_token_goes_only_to_a_conductors_certificate(pki: PKI, defended: bool) -> None:
    """A client's ACL token travels in its handshake; with TLS it is sent only once the
    peer's certificate shows a conductor: a node (or anyone with another certificate of
    the CA) answering at a conductor's address never sees it. Without the policy's
    `credential_for` (the defence off) the impostor gets the token."""
    received: dict[str, str] = {}

    class Capture(actors.Policy):
        def __init__(self, label: str) -> None:
            self.label = label

        def connected(self, peer: actors.PeerInfo, dialed: str | None) -> None:
            received[self.label] = peer.credential
            return None

    client_policy = HeliosPolicy(tls=True) if defended else None
    async with actors.open_system("impostor", listen="127.0.0.1:0",
                                  tls=pki.config("node", "n9"),
                                  policy=Capture("impostor")) as impostor, \
            actors.open_system("real", listen="127.0.0.1:0",
                               tls=pki.config("conductor", "c1"),
                               policy=Capture("conductor")) as real, \
            actors.open_system("script", tls=pki.config("cli", "alice"),
                               credential="the-token", policy=client_policy) as script:
        for system in (impostor, real):
            await system.spawn(Probe, system.name, [], name="conductor")
            await script.ref(f"{system.url}/conductor").ask("hit", "x")
    assert received["conductor"] == "the-token"
    assert received["impostor"] == ("" if defended else "the-token")
