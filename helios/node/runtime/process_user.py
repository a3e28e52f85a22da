"""Who the process runtime's tasks run as.

The process runtime is no sandbox (docs/security.md): a task is a host process. When
the node daemon runs as root, a task must at least not be root too: it runs as an
unprivileged user (`helios node --process-user NAME`, default `nobody`), and root only
if the operator says so (`--process-allow-root`). A daemon that is not root cannot
switch users: its tasks run as the daemon's user, and naming another one is an error.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass

__all__ = ["DEFAULT_PROCESS_USER", "ProcessUserError", "TaskUser", "task_user"]

DEFAULT_PROCESS_USER = "nobody"


class ProcessUserError(ValueError):
    """The configured task user cannot be used: one line naming the flag."""


@dataclass(frozen=True)
class TaskUser:
    """The user (and its primary group) a task's command is switched to."""

    name: str
    uid: int
    gid: int


def _lookup(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except (KeyError, OverflowError):
        raise ProcessUserError(f"--process-user {name}: no such user on this machine") \
            from None


def task_user(name: str | None = None, allow_root: bool = False,
              euid: int | None = None) -> TaskUser | None:
    """The user tasks run as, or None when they run as the daemon itself (not root)."""
    euid = os.geteuid() if euid is None else euid
    if euid != 0:
        if name and _lookup(name).pw_uid != euid:
            raise ProcessUserError(
                f"--process-user {name}: switching users needs the node daemon to run as "
                f"root (it runs as uid {euid}); its tasks run as uid {euid}")
        return None
    pw = _lookup(name or DEFAULT_PROCESS_USER)
    if pw.pw_uid == 0 and not allow_root:
        raise ProcessUserError(
            f"--process-user {pw.pw_name} is root: the node refuses to run process tasks "
            "as root; name an unprivileged user, or give --process-allow-root")
    return TaskUser(pw.pw_name, pw.pw_uid, pw.pw_gid)
