"""Errors the conductor answers clients with.

A client sees each as `actors.RemoteError` whose `type_name` is the class name below, so
the names are part of the protocol: the CLI turns `NotLeader` into a retry at the named
leader and the others into a one-line message.
"""

from __future__ import annotations

from helios.protocol import NotLeader

__all__ = [
    "EXPECTED",
    "JobNotFound",
    "NodeNotFound",
    "NodeUnreachable",
    "NodeUp",
    "NotLeader",
    "TaskNotFound",
    "VersionNotFound",
]


class JobNotFound(LookupError):
    """No job of that name is defined."""


class TaskNotFound(LookupError):
    """No task of that id belongs to the job."""


class VersionNotFound(LookupError):
    """The job keeps no version of that number (`job revert`)."""


class NodeUnreachable(ConnectionError):
    """The node that runs a task does not answer (for logs)."""


class NodeNotFound(LookupError):
    """No node of that name is known (`node_rm`)."""


class NodeUp(RuntimeError):
    """The node's session is alive: `node_rm` refuses without `force`."""


#: type names of errors that are answers, not faults (logged quietly by the conductor)
EXPECTED = frozenset({"NotLeader", "JobNotFound", "TaskNotFound", "NodeUnreachable",
                      "SpecError", "ValueError", "DispatchError",
                      "PayloadTooLarge", "NodeNotFound", "NodeUp", "VersionNotFound",
                      "AclError"})
