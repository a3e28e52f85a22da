"""Who the process runtime's tasks run as (pure logic over the machine's user database;
the end-to-end run as nobody is tests/security/test_secrets.py)."""

from __future__ import annotations

import pwd

import pytest

from helios.node.runtime.process_user import ProcessUserError, task_user


def test_a_root_daemon_runs_tasks_as_nobody_by_default_and_as_root_only_when_allowed() -> None:
    nobody = pwd.getpwnam("nobody")
    u = task_user(None, euid=0)
    assert u is not None and (u.name, u.uid, u.gid) == ("nobody", nobody.pw_uid,
                                                        nobody.pw_gid)
    with pytest.raises(ProcessUserError, match="--process-allow-root"):
        task_user("root", euid=0)
    with pytest.raises(ProcessUserError, match="--process-allow-root"):
        task_user("0", euid=0)
    root = task_user("root", allow_root=True, euid=0)
    assert root is not None and root.uid == 0
    with pytest.raises(ProcessUserError, match="no such user"):
        task_user("no-such-user-here", euid=0)


def test_a_daemon_that_is_not_root_cannot_switch() -> None:
    nobody = pwd.getpwnam("nobody").pw_uid
    assert task_user(None, euid=1234) is None  # tasks run as the daemon itself
    with pytest.raises(ProcessUserError, match="needs the node daemon to run as root"):
        task_user("root", euid=nobody)
    assert task_user("nobody", euid=nobody) is None  # naming itself is fine
