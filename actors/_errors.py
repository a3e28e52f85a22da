"""The exceptions a user of `actors` can catch.

Every failure of a message send derives from `ActorError`, so one `except` covers them; the
subclasses also derive from the matching builtin (`TimeoutError`, `LookupError`,
`ConnectionError`) so generic code that knows nothing of actors still does the right thing.
"""

from __future__ import annotations


class ActorError(Exception):
    """Base of every error raised by the actor runtime."""


class RemoteError(ActorError):
    """A handler raised; this carries what it raised, wherever it ran.

    Handlers may run in another process, so the original exception object cannot travel:
    its type name, message and formatted traceback do.
    """

    def __init__(self, type_name: str, message: str, traceback: str = "") -> None:
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name
        self.message = message
        self.traceback = traceback


class Refusal(Exception):
    """Raise it (or a subclass) in a handler to refuse one request, not to crash.

    The asker gets a `RemoteError` carrying the refusal's type name and message, exactly
    like any handler error; the actor keeps running, since refusing bad input is part of
    its job (an OTP `{reply, {error, Reason}, State}`). Any other exception crashes it.
    `type_name` overrides the name the asker sees (to pass on an error's own name).
    """

    def __init__(self, message: str = "", type_name: str | None = None) -> None:
        super().__init__(message)
        self.type_name = type_name or type(self).__name__


class UnknownHandler(RemoteError):
    """The actor exists but has no `@handler` of that name; the request was refused."""

    def __init__(self, message: str, traceback: str = "") -> None:
        super().__init__("UnknownHandler", message, traceback)


class BadArguments(RemoteError):
    """The arguments do not fit the handler's signature; the actor was not disturbed."""

    def __init__(self, message: str, traceback: str = "") -> None:
        super().__init__("TypeError", message, traceback)


class ActorNotFound(ActorError, LookupError):
    """No actor of that name is (any longer) registered where the ref points."""


class AskTimeout(ActorError, TimeoutError):
    """No reply arrived within the ask's timeout."""


class ConnectionLost(ActorError, ConnectionError):
    """The connection to the actor's process failed, or could not be made."""


class ProtocolError(ActorError):
    """A peer sent bytes that break the wire protocol; only that connection is closed."""


class AuthenticationFailed(ProtocolError):
    """The peer could not prove it holds the cluster secret."""


class MessageTooLarge(ActorError, ValueError):
    """The encoded message exceeds the frame limit; it was not sent."""


class Forbidden(RemoteError):
    """The receiving system's policy refused this request (who may send what to whom)."""

    def __init__(self, message: str, traceback: str = "") -> None:
        super().__init__("Forbidden", message, traceback)


class Busy(RemoteError):
    """The target actor's mailbox is full; the request was refused, not queued."""

    def __init__(self, message: str, traceback: str = "") -> None:
        super().__init__("Busy", message, traceback)
