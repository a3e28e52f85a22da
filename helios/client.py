"""The actor client of the leader conductor: what the CLI, the benchmarks and any Python
program use to talk to a cluster (docs/cli.md, docs/wire.md).

A client is an actor system that does not listen and asks `tcp://HOST:PORT/conductor`
without a `lookup`. Where the cluster is: `zk` (`HOSTS[/root]`: the leader's URL is read
from ZooKeeper) or `conductor` (`HOST:PORT`), else 127.0.0.1:7070 (`helios solo`). A
standby answers `NotLeader` with the leader's URL and the client asks there; restarts and
failovers are retried for a bounded time. Every failure is a `ClientError` whose message
is one line written for a person.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import trio

import actors
from helios import protocol
from helios.config import split_zk
from helios.security.authz import NOT_LOADED

ENV_ZK = "HELIOS_ZK"
ENV_CONDUCTOR = "HELIOS_CONDUCTOR"
#: how long a client keeps trying to find a leader (a failover takes a few seconds)
LEADER_WAIT = 20.0
#: how long a client retries a refused connection to a fixed address (a conductor or
#: `helios solo` that is still starting)
CONNECT_WAIT = float(os.environ.get("HELIOS_CONNECT_WAIT", "1.0"))

__all__ = ["CONNECT_WAIT", "ENV_CONDUCTOR", "ENV_ZK", "LEADER_WAIT", "Client", "ClientError",
           "check_address", "one_line", "run_client", "split_zk"]


class ClientError(Exception):
    """A failure the client reports in one line (the CLI prints it on stderr and exits
    with `code`): the cluster unreachable, a refusal, a bad address."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def one_line(text: str) -> str:
    """Collapse a multi-line message (e.g. a SpecError's problem list) to one line."""
    parts = [p.strip() for p in str(text).splitlines() if p.strip()]
    if len(parts) <= 1:
        return parts[0] if parts else ""
    head, rest = parts[0], parts[1:]
    return f"{head} " + "; ".join(rest) if head.endswith(":") else "; ".join(parts)


class Client:
    """An actor client of the leader conductor; follows NotLeader and failovers."""

    def __init__(self, zk: str | None, conductor: str | None, timeout: float = 30.0,
                 token: str | None = None) -> None:
        """`token`: the ACL token to send (default: `--token-file`, HELIOS_TOKEN or
        HELIOS_TOKEN_FILE); TLS comes from HELIOS_TLS_CERT/KEY/CA."""
        self.zk = zk
        self.conductor = conductor
        self.timeout = timeout
        self.token = token
        self.system: actors.ActorSystem | None = None
        self.url: str | None = None
        self._stack = AsyncExitStack()
        self._store: Any = None
        self._verified: set[str] = set()

    async def __aenter__(self) -> Client:
        from helios.security.tokens import AclError, load_token

        try:
            options = protocol.network_options(
                role="cli", token=load_token() if self.token is None else self.token)
        except (ValueError, AclError) as e:
            raise ClientError(str(e), 2) from None
        self.system = await self._stack.enter_async_context(
            actors.open_system(name=f"helios-cli-{os.getpid()}", **options))
        return self

    async def _check_conductor(self, url: str) -> None:
        """With TLS, talk (and send a token) only to a process whose certificate says it
        is a conductor, whatever address it answers at."""
        assert self.system is not None
        if self.system.config.tls is None or url in self._verified:
            return
        peer = await self.system.peer(url)
        if peer.role != "conductor":
            raise ClientError(f"forbidden: {_addr(url)} is answered by {peer}, not by a "
                           "conductor; nothing was sent to it")
        self._verified.add(url)

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    @property
    def where(self) -> str:
        if self.zk:
            return f"ZooKeeper {self.zk}"
        return self.conductor or protocol.DEFAULT_CONDUCTOR

    async def _leader_from_zk(self) -> str | None:
        from helios.coordination import CorruptValue, Unavailable, open_zookeeper

        assert self.zk is not None
        if self._store is None:
            hosts, root = split_zk(self.zk)
            try:
                self._store = await open_zookeeper(hosts, root, session_timeout=10.0,
                                                   connect_timeout=5.0)
            except Unavailable as e:
                raise ClientError(f"cannot reach ZooKeeper at {self.zk}: {e}") from None
            self._stack.push_async_callback(self._store.aclose)
        try:
            entry = await self._store.get(protocol.LEADER_PATH)
        except (Unavailable, CorruptValue) as e:
            raise ClientError(f"cannot read the leader from ZooKeeper at {self.zk}: {e}") \
                from None
        if entry is None or not isinstance(entry.value, dict):
            return None
        url = entry.value.get("url")
        return url if isinstance(url, str) and url else None

    async def _resolve(self) -> str | None:
        if self.zk:
            return await self._leader_from_zk()
        address = self.conductor or protocol.DEFAULT_CONDUCTOR
        check_address(address, "--conductor")
        return protocol.conductor_url(address)

    async def call(self, method: str, *args: Any, timeout: float | None = None,
                   **kwargs: Any) -> Any:
        """Ask the leader; retry through NotLeader, restarts and failovers (bounded)."""
        assert self.system is not None
        start = time.monotonic()
        deadline = start + LEADER_WAIT
        last = ""
        delay = 0.1
        while True:
            if self.url is None:
                self.url = await self._resolve()
            url = self.url
            if url is not None:
                try:
                    await self._check_conductor(url)
                    return await self.system.ref(url).ask(
                        method, *args, timeout=timeout or self.timeout, **kwargs)
                except actors.RemoteError as e:
                    if e.type_name == "Forbidden" and NOT_LOADED in (e.message or ""):
                        # a conductor that just started: it reads the ACL state shortly
                        last = f"{_addr(url)}: {one_line(e.message)}"
                    elif e.type_name != "NotLeader":
                        raise ClientError(one_line(e.message or e.type_name)) from None
                    elif e.message:
                        self.url = protocol.conductor_url(e.message)
                        last = f"{url} is a standby; the leader is {e.message}"
                        continue
                    else:
                        last = f"{url} knows no leader yet"
                        self.url = None if self.zk else url
                except actors.ActorNotFound:
                    # restarting its front, or not a conductor at all (a node's address)
                    last = (f"no conductor at {_addr(url)} (something else listens there, "
                            "e.g. a node; give a conductor's --listen address)")
                    if not self.zk and time.monotonic() - start > CONNECT_WAIT:
                        raise ClientError(last) from None
                    self.url = None if self.zk else url
                except actors.ConnectionLost as e:
                    last = f"cannot reach the conductor at {_addr(url)}: {_reason(e)}"
                    if not self.zk and time.monotonic() - start > CONNECT_WAIT:
                        raise ClientError(last) from None
                    self.url = None if self.zk else url
                except actors.AskTimeout:
                    last = (f"the conductor at {_addr(url)} did not answer {method} "
                            f"within {timeout or self.timeout:g}s")
                    if self.zk and await self._leader_from_zk() not in (None, url):
                        self.url = None  # a new leader took over from a hung one
                        continue
                    raise ClientError(last) from None
            else:
                last = f"no leader registered in {self.where}"
            if time.monotonic() + delay > deadline:
                raise ClientError(last or f"no conductor answers at {self.where}")
            await trio.sleep(delay)
            delay = min(1.0, delay * 2)


def check_address(address: str, flag: str) -> None:
    """Refuse an address that is not HOST:PORT (or a tcp:// URL) in one line naming the
    flag and the fix, before anything tries to parse its port."""
    rest = address.split("://", 1)[-1].split("/", 1)[0]
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClientError(f"{flag} {address!r} is not HOST:PORT (e.g. 127.0.0.1:7070)")


def _addr(url: str) -> str:
    return url.split("://", 1)[-1].rsplit("/", 1)[0]


def _reason(e: BaseException) -> str:
    text = str(e)
    if "Connection refused" in text or "Errno 111" in text or "all attempts" in text:
        return "connection refused (is `helios solo` or a conductor running there?)"
    if "during the handshake" in text and not os.environ.get(protocol.ENV_TLS_CERT):
        return (f"{text.split(': ', 1)[-1]} (does it require TLS? give --tls-cert, "
                "--tls-key and --tls-ca)")
    return text.split(": ", 1)[-1] if text.startswith("cannot connect") else text


def run_client(zk: str | None, conductor: str | None,
               body: Callable[[Client], Awaitable[Any]]) -> Any:
    """Run `body(client)` in trio and return its result."""
    async def main() -> Any:
        async with Client(zk, conductor) as client:
            return await body(client)

    return trio.run(main)
