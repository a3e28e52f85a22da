"""The gate every request from the network passes before any actor sees it.

First the system's `policy` (`Policy.authorize`, then `Policy.admit` for messages: who
may send what to whom, with which arguments), then, for messages, that the actor exists,
that the method is one of its handlers and that its mailbox is under `max_mailbox`. A
refused request gets an answer naming the reason (`Forbidden`, `ActorNotFound`,
`UnknownHandler`, `Busy`) and disturbs nothing. Tells and asks are admitted and delivered
in one pass (`receive_tell`, `receive_ask`): they are the per-message path.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from . import _wire as wire
from ._actor import Cell
from ._errors import ActorNotFound, Busy, Forbidden, UnknownHandler
from ._transport import Connection, RemoteReply

if TYPE_CHECKING:
    from ._system import ActorSystem

log = logging.getLogger("actors")


class Admission:
    """One system's gate (see the module docstring)."""

    def __init__(self, system: ActorSystem) -> None:
        self.system = system
        self.config = system.config
        self.registry = system._registry  # never rebound: names -> running actors

    def admit(self, conn: Connection, kind: str, target: str, method: str,
               args: list[Any] | None = None, kwargs: dict[str, Any] | None = None
               ) -> BaseException | None:
        """The one gate every request from the network passes: the system's `policy`
        (who may send what to whom, then, for messages, with which arguments), then, for
        messages, that the method is a handler (`admit_message`)."""
        if self.config.policy is not None:
            refusal = self.authorize(conn, kind, target, method, args, kwargs)
            if refusal is not None:
                return refusal
        if kind in ("tell", "ask"):
            cell = self.admit_message(target, method)
            if isinstance(cell, BaseException):
                return cell
        return None

    def authorize(self, conn: Connection, kind: str, target: str, method: str,
                   args: list[Any] | None, kwargs: dict[str, Any] | None
                   ) -> BaseException | None:
        """The policy's word on one request: None, or the `Forbidden` that refuses it."""
        policy = self.config.policy
        if policy is None:
            return None
        try:
            why = policy.authorize(conn.peer, kind, target, method)
            if why is None and kind in ("tell", "ask"):
                why = policy.admit(conn.peer, target, method, args or [], kwargs or {})
        except Exception as e:  # a broken policy refuses rather than allows
            log.exception("policy raised on %s %s/%s", kind, target, method)
            why = f"policy error: {e}"
        if why is None:
            return None
        try:
            policy.refused(conn.peer, kind, target, method, args or [], kwargs or {}, why)
        except Exception:
            log.exception("policy.refused raised on %s %s/%s", kind, target, method)
        what = f"{target[:100]}{'.' + method[:100] if method else ''}"
        return Forbidden(f"forbidden: {kind} {what} by {conn.peer}: {why[:1000]}")

    def admit_message(self, target: str, method: str) -> Cell | BaseException:
        """The actor a message from the network goes to, or why it cannot: no such actor,
        no such handler, or its mailbox is full (`max_mailbox`)."""
        cell = self.registry.get(target)
        if (cell is None or method not in cell.actor._handlers
                or len(cell.mailbox.queue) >= self.config.max_mailbox):
            return self.refuse_message(cell, target, method)
        return cell

    def refuse_message(self, cell: Cell | None, target: str, method: str) -> BaseException:
        """Why `admit_message` (or its copy on the tell path) refused a message."""
        if cell is None:
            return ActorNotFound(f"no actor {target!r} on {self.system.url}")
        if method not in cell.actor._handlers:
            return UnknownHandler(
                f"{type(cell.actor).__name__} has no handler {method[:100]!r}")
        queued = len(cell.mailbox.queue)
        return Busy(f"actor {target!r} has {queued} messages queued (limit "
                    f"{self.config.max_mailbox}); try again later")

    def admit_connection(self, conn: Connection) -> str | None:
        """The policy's word on a connection whose handshake is done (None: use it)."""
        policy = self.config.policy
        if policy is None:
            return None
        try:
            why = policy.connected(conn.peer, conn.dial_url)
        except Exception as e:
            log.exception("policy raised on the connection with %s", conn.peer)
            why = f"policy error: {e}"
        return None if why is None else f"forbidden: connection with {conn.peer}: {why}"

    def receive_tell(self, conn: Connection, msg: wire.Tell) -> BaseException | None:
        """Admit a tell from the network (`admit`, in one pass) and deliver it; returns
        the refusal, if any. An idle actor whose handler cannot suspend runs it here, in
        the reader (`Cell.run_inline`), when the frame came alone: a burst is cheaper
        through the mailbox, which the actor's task drains in one wake-up (running each
        frame of a burst inline measured 5-12% more instructions per tell)."""
        if self.config.policy is not None:
            refusal = self.authorize(conn, "tell", msg.to, msg.m, msg.a, msg.kw)
            if refusal is not None:
                return refusal
        # `admit_message`, written out: the per-tell cost of a call shows at 600k tells/s
        cell = self.registry.get(msg.to)
        if (cell is None or msg.m not in cell.actor._handlers
                or len(cell.mailbox.queue) >= self.config.max_mailbox):
            return self.refuse_message(cell, msg.to, msg.m)
        if conn.burst <= 1 and cell.idle_for(msg.m):
            cell.run_inline(msg.m, msg.a, msg.kw, None)
        else:
            cell.mailbox.put((msg.m, msg.a, msg.kw, None))
        return None

    def receive_ask(self, conn: Connection, msg: wire.Ask) -> BaseException | None:
        """As `receive_tell`, for an ask: the answer goes back on `conn`."""
        if self.config.policy is not None:
            refusal = self.authorize(conn, "ask", msg.to, msg.m, msg.a, msg.kw)
            if refusal is not None:
                return refusal
        cell = self.admit_message(msg.to, msg.m)
        if isinstance(cell, BaseException):
            return cell
        reply = RemoteReply(conn, msg.id, cell.mailbox.queue)
        if conn.burst <= 1 and cell.idle_for(msg.m):  # answered from the reader, no wake-up
            cell.run_inline(msg.m, msg.a, msg.kw, reply)
        else:
            cell.mailbox.put((msg.m, msg.a, msg.kw, reply))
        return None
