"""actors: an async actor runtime on trio, with supervision and msgpack remoting over TCP.

The public API (the README's actor runtime section); everything else lives in underscore modules.
"""

from ._actor import Actor, Down, handler
from ._config import Policy, SystemConfig, TLSConfig, tls_config
from ._errors import (
    ActorError,
    ActorNotFound,
    AskTimeout,
    AuthenticationFailed,
    BadArguments,
    Busy,
    ConnectionLost,
    Forbidden,
    MessageTooLarge,
    ProtocolError,
    Refusal,
    RemoteError,
    UnknownHandler,
)
from ._peer import PeerInfo
from ._ref import ActorRef
from ._supervisor import ChildSpec, Supervisor, child
from ._system import ActorSystem, Monitor, open_system

__all__ = [
    "Actor",
    "ActorError",
    "ActorNotFound",
    "ActorRef",
    "ActorSystem",
    "AskTimeout",
    "AuthenticationFailed",
    "BadArguments",
    "Busy",
    "ChildSpec",
    "ConnectionLost",
    "Down",
    "Forbidden",
    "MessageTooLarge",
    "Monitor",
    "PeerInfo",
    "Policy",
    "ProtocolError",
    "Refusal",
    "RemoteError",
    "Supervisor",
    "SystemConfig",
    "TLSConfig",
    "UnknownHandler",
    "child",
    "handler",
    "open_system",
    "tls_config",
]
