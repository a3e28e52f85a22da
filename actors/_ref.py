"""`ActorRef`: a location-transparent handle on a named actor.

A ref is a URL (`tcp://host:port/name`) plus the local system used to reach it. It resolves
the name at every send, so a ref stays valid across restarts of a supervised actor, exactly
like an Erlang registered name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._system import ActorSystem

DEFAULT_ASK_TIMEOUT = 5.0


def split_url(url: str) -> tuple[str, str]:
    """`tcp://h:p/name` -> (`tcp://h:p`, `name`). Names may themselves contain '/'."""
    scheme, sep, rest = url.partition("://")
    if not sep or "/" not in rest:
        raise ValueError(f"not an actor URL (expected scheme://host:port/name): {url!r}")
    authority, _, name = rest.partition("/")
    if not authority or not name:
        raise ValueError(f"not an actor URL (expected scheme://host:port/name): {url!r}")
    return f"{scheme}://{authority}", name


class ActorRef:
    """Send to an actor wherever it lives: `tell`, `ask`, `stop`, `kill`."""

    __slots__ = ("_system", "name", "system_url", "url")

    def __init__(self, system: ActorSystem, system_url: str, name: str) -> None:
        self._system = system
        self.system_url = system_url
        self.name = name
        self.url = f"{system_url}/{name}"

    @property
    def is_local(self) -> bool:
        return self.system_url == self._system.url

    async def tell(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Fire and forget. Waits only when the connection's send queue is full."""
        if not self._system._tell_nowait(self, method, args, kwargs):
            await self._system._tell(self, method, args, kwargs)

    async def ask(self, method: str, *args: Any, timeout: float | None = DEFAULT_ASK_TIMEOUT,
                  **kwargs: Any) -> Any:
        """Request/reply. Raises RemoteError, ActorNotFound, AskTimeout or ConnectionLost.

        `timeout` is the ask's own keyword, so a handler cannot take an argument of that name
        through `ask`; `timeout=None` waits for ever.
        """
        return await self._system._ask(self, method, args, kwargs, timeout)

    async def stop(self, timeout: float | None = DEFAULT_ASK_TIMEOUT) -> None:
        """Normal exit after the messages already queued; returns once it has ended."""
        await self._system._stop(self, kill=False, timeout=timeout)

    async def kill(self, timeout: float | None = DEFAULT_ASK_TIMEOUT) -> None:
        """Abnormal, immediate exit (reason `killed`), as Erlang's exit(Pid, kill)."""
        await self._system._stop(self, kill=True, timeout=timeout)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorRef) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    def __repr__(self) -> str:
        return f"<ActorRef {self.url}>"
