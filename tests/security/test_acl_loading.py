"""A conductor that has just started refuses people until its `TokenCache` has read the
ACL state ("try again", `authz.NOT_LOADED`); the client (`helios.client.Client`) retries
that refusal as it retries a failover, so `helios job run` right after `helios solo`
starts does not fail (the quickstart met this window on a loaded machine).

Real parts: an embedded store, the real `TokenCache` and authorization policy, two actor
systems on loopback. The stand-in is the conductor actor (one `job_ls` handler)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

import actors
from helios import protocol
from helios.client import Client
from helios.coordination import open_embedded
from helios.security.authz import NOT_LOADED
from helios.security.tokens import TokenCache


class Conductor(actors.Actor):
    @actors.handler
    async def job_ls(self) -> list[Any]:
        return []


class Refusals:
    """The audit hook of the policy: tells when a request was refused for NOT_LOADED."""

    def __init__(self) -> None:
        self.not_loaded = trio.Event()

    def record(self, subject: Any, action: str, what: str, allowed: bool,
               reason: str) -> None:
        if not allowed and reason.startswith(NOT_LOADED):
            self.not_loaded.set()


async def test_the_client_waits_for_a_conductor_to_read_the_acl_state(
        tmp_path: Path) -> None:
    store = await open_embedded(tmp_path / "s.db")
    try:
        tokens = TokenCache(store)  # not running yet: the ACL state is not read
        refusals = Refusals()
        options = protocol.network_options({}, role="conductor", tokens=tokens,
                                           audit=refusals)
        async with actors.open_system("acl-loading", listen="127.0.0.1:0",
                                      **options) as system:
            await system.spawn(Conductor, name=protocol.CONDUCTOR_ACTOR)
            address = system.url.split("://", 1)[1].split("/", 1)[0]
            async with Client(None, address, timeout=10.0, token="") as client:
                # without the retry: the first answer is the refusal
                assert client.system is not None
                with pytest.raises(actors.Forbidden, match=NOT_LOADED):
                    await client.system.ref(f"{system.url}/{protocol.CONDUCTOR_ACTOR}") \
                        .ask("job_ls", timeout=10.0)
                refusals.not_loaded = trio.Event()
                got: list[Any] = []
                with trio.fail_after(30):
                    async with trio.open_nursery() as nursery:
                        async def ask() -> None:
                            got.append(await client.call("job_ls"))

                        nursery.start_soon(ask)
                        await refusals.not_loaded.wait()  # the client was refused...
                        assert got == []
                        nursery.start_soon(tokens.run)  # ...then the state is read
                        while not got:
                            await trio.sleep(0.01)
                        nursery.cancel_scope.cancel()
                assert got == [[]]
    finally:
        await store.aclose()
