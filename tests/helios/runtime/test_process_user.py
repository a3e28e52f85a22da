"""Who the process runtime's tasks run as (pure logic over the machine's user database;
the end-to-end run as nobody is tests/security/test_secrets.py)."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import pytest

from helios.node.runtime import ContainerSpec, ContainerStartFailed, PortAllocator, ProcessRuntime
from helios.node.runtime.process_user import ProcessUserError, task_user
from tests.fixtures.common import unique_name


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


async def test_a_task_user_gets_the_secret_in_memory_and_its_own_payload_copy(
        tmp_path: Path) -> None:
    """A root runtime: the command runs as nobody, reads its secret env and its payload
    copy; record.json holds neither the value nor anything nobody could rewrite; a
    restarted runtime (memory gone) refuses to start it again without the value."""
    if os.geteuid() != 0:
        pytest.fail("this test needs root (switching users needs it)")
    private = tmp_path / "payloads"
    private.mkdir(mode=0o700)
    (private / "payload").write_text('{"n": 1}')
    os.chmod(private / "payload", 0o600)
    user = task_user()
    rt = ProcessRuntime("pnode", tmp_path / "state", ports=PortAllocator(23100, 23199),
                        user=user)
    script = 'id -u; printf "%s\\n" "$PW"; cat "$HELIOS_PAYLOAD_FILE"'
    async with rt:
        spec = ContainerSpec(name=unique_name("pu"), image="", command=["sh", "-c", script],
                             env={"PW": "s3cret-value", "HELIOS_PAYLOAD_FILE":
                                  str(private / "payload")},
                             secret_keys=frozenset({"PW"}), job="pjob", task="t")
        cid = await rt.create(spec)
        try:
            await rt.start(cid)
            code = await rt.wait(cid)
            assert code == 0, [line async for line in rt.logs(cid)]
            assert [line async for line in rt.logs(cid)] == [
                str(pwd.getpwnam("nobody").pw_uid), "s3cret-value", '{"n": 1}']
            record = tmp_path / "state" / cid / "record.json"
            assert b"s3cret-value" not in record.read_bytes()
            assert json.loads(record.read_text())["secret_keys"] == ["PW"]
            assert record.stat().st_uid == 0 and record.stat().st_mode & 0o777 == 0o600
            again = ProcessRuntime("pnode", tmp_path / "state",
                                   ports=PortAllocator(23100, 23199), user=user)
            with pytest.raises(ContainerStartFailed, match="PW"):
                await again.start(cid)
        finally:
            await rt.remove(cid)
