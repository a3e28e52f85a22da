"""actors: an async actor runtime on trio, with supervision and msgpack remoting over TCP.

The public API (CONTRACT.md section 1); everything else lives in underscore modules.
"""

from ._actor import Actor, Down, handler
from ._errors import (
    ActorError,
    ActorNotFound,
    AskTimeout,
    AuthenticationFailed,
    BadArguments,
    ConnectionLost,
    MessageTooLarge,
    ProtocolError,
    Refusal,
    RemoteError,
    UnknownHandler,
)
from ._ref import ActorRef
from ._supervisor import ChildSpec, Supervisor, child
from ._system import ActorSystem, Monitor, TLSConfig, open_system, tls_config

__all__ = [
    "Actor",
    "ActorError",
    "ActorNotFound",
    "ActorRef",
    "ActorSystem",
    "AskTimeout",
    "AuthenticationFailed",
    "BadArguments",
    "ChildSpec",
    "ConnectionLost",
    "Down",
    "MessageTooLarge",
    "Monitor",
    "ProtocolError",
    "Refusal",
    "RemoteError",
    "Supervisor",
    "TLSConfig",
    "UnknownHandler",
    "child",
    "handler",
    "open_system",
    "tls_config",
]
