"""The `process` runtime: each task is a local process group (like Nomad's raw_exec).

For a machine without a Docker daemon (`helios solo` on a laptop). The image, limits and
log driver are ignored. It is no sandbox (docs/security.md): the command runs as the
node's user, or, when the node daemon is root, as its task user (`process_user.py`,
`helios node --process-user`, default nobody) in its own `work/` directory, the wrapper
staying root so the task can touch none of its records. Secret env values stay in this
object's memory, never in record.json. It is never a stand-in for Docker in the Docker
tests.

State lives on disk so a restarted node can adopt what still runs:

    <state_dir>/<id>/record.json   spec essentials, pid, process start time, ports
    <state_dir>/<id>/output.log    stdout and stderr (appended across restarts; rotated to
                                   output.log.1 past MAX_LOG_BYTES)
    <state_dir>/<id>/exit_code     written by the wrapper when the command ends

The command runs under a tiny wrapper (a few lines run by the node's Python) that
copies the command's output from a pipe into output.log, rotating it, and records its
exit code in `exit_code`, so the exit code is known even when the process
ended while no node was its parent (after a node restart). The wrapper ignores TERM, INT
and HUP so it outlives the command and writes the code; the command gets them with their
default action. Signals are blocked across the wrapper's fork so that a stop arriving in
the first milliseconds of a task is not lost (a /bin/sh `trap` wrapper loses it: the
forked child runs the inherited handler until it execs). Every signal goes to the whole
process group (the task started its own session), so children of the command stop too.

A pid alone is not an identity (pids are reused): the record keeps the kernel start time
of the process (/proc/<pid>/stat field 22), and a pid only counts as our task when both
match.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import trio

from helios.node.runtime.base import (
    ContainerConflict,
    ContainerNotFound,
    ContainerNotRunning,
    ContainerSpec,
    ContainerStartFailed,
    ContainerState,
    ExecResult,
    ExecTimeout,
    InvalidSpec,
    RegistryCredentials,
    Runtime,
    helios_labels,
    port_env,
)
from helios.node.runtime.ports import PortAllocator
from helios.node.runtime.process_user import TaskUser

#: The wrapper (run by the node's own Python, -I -S: ~10 ms): fork the command into the
#: same process group, wait for it, keep its exit status in the exit file, exit with it.
#: Signals are blocked across the fork so none is lost: the child resets TERM/INT/HUP to
#: the default and unblocks them before exec (a group signal that arrived meanwhile is
#: delivered then); the wrapper ignores them (it must outlive the command) and forwards
#: those that reached it before the fork (later group signals reach the child itself).
_WRAPPER = """
import os, select, signal, sys
import warnings  # os.execvp imports it: loaded now, while the stdlib is still readable
exit_file, log_path, max_log = sys.argv[1], sys.argv[2], int(sys.argv[3])
ids, argv = sys.argv[4], sys.argv[5:]
sigs = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
early = signal.sigpending()  # sent to the wrapper alone, before the command exists
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.dup2(w, 1)
    os.dup2(w, 2)
    os.close(r)
    os.close(w)
    for s in sigs:
        signal.signal(s, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, sigs)
    try:
        if ids != "-":  # the daemon is root: the command runs as the task user
            uid, gid = (int(x) for x in ids.split(":"))
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
        os.execvp(argv[0], argv)
    except OSError as e:
        os.write(2, ("helios: cannot run %s: %s\\n" % (argv[0], e.strerror)).encode())
        os._exit(127)
os.close(w)
for s in sigs:
    signal.signal(s, signal.SIG_IGN)
signal.pthread_sigmask(signal.SIG_UNBLOCK, sigs)
for s in early:
    os.kill(pid, s)
with open(exit_file + ".pid.tmp", "w") as f:  # tells start() the command is launched
    f.write("%d\\n" % pid)
os.replace(exit_file + ".pid.tmp", exit_file + ".pid")
out = open(log_path, "ab", buffering=0)
size = out.tell()
def write(data):
    global out, size
    if size + len(data) > max_log and size > 0:  # rotate: keep one older file
        out.close()
        os.replace(log_path, log_path + ".1")
        out = open(log_path, "ab", buffering=0)
        size = 0
    out.write(data)
    size += len(data)
status = None
eof = False
while status is None:
    if not eof and select.select([r], [], [], 0.2)[0]:
        data = os.read(r, 65536)
        if data:
            write(data)
        else:
            eof = True
    done, st = os.waitpid(pid, 0 if eof else os.WNOHANG)
    if done:
        status = st
os.set_blocking(r, False)
while not eof:  # what the command wrote just before it ended
    try:
        data = os.read(r, 65536)
    except BlockingIOError:
        break
    if not data:
        break
    write(data)
out.close()
rc = os.waitstatus_to_exitcode(status)
rc = 128 - rc if rc < 0 else rc
with open(exit_file + ".tmp", "w") as f:
    f.write("%d\\n" % rc)
os.replace(exit_file + ".tmp", exit_file)
sys.exit(rc)
"""
#: How often stop/wait/follow look again at a process that is not our child.
POLL_INTERVAL = 0.05
#: output.log is rotated past this size (the wrapper renames it output.log.1, replacing
#: the previous one), so a chatty task holds at most twice this on disk
MAX_LOG_BYTES = 10 * 1024 * 1024
#: the most of output.log one read takes: reads of the newest lines start near the end
MAX_READ_BYTES = 1024 * 1024
EXEC_OUTPUT_LIMIT = 64 * 1024
#: How long start() waits for the wrapper to launch the command.
START_TIMEOUT = 10.0


def _proc_start_ticks(pid: int) -> int | None:
    """Kernel start time of `pid` in clock ticks since boot, None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2:].split()
    # fields[0] is field 3 (state); field 22 (starttime) is fields[19].
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


class ProcessRuntime(Runtime):
    """Runs tasks as local process groups, with records in `state_dir` for adoption."""

    kind: ClassVar[str] = "process"

    def __init__(self, node: str, state_dir: str | os.PathLike[str], *,
                 ports: PortAllocator | None = None, python: str | None = None,
                 max_log_bytes: int = MAX_LOG_BYTES, user: TaskUser | None = None) -> None:
        super().__init__(node)
        #: who commands run as (process_user.task_user; None: the daemon's own user)
        self.user = user
        #: task -> its secret env values: in memory only, never in record.json
        self._secret_env: dict[str, dict[str, str]] = {}
        self.state_dir = Path(state_dir)
        self.max_log_bytes = max_log_bytes
        self.ports = ports if ports is not None else PortAllocator()
        self.python = python or sys.executable
        self._children: dict[str, trio.Process] = {}

    async def open(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    async def aclose(self) -> None:
        """Forget our child handles; the processes keep running (adoption finds them)."""
        self._children.clear()

    # ------------------------------------------------------------------ records

    def _dir(self, cid: str) -> Path:
        if not cid or "/" in cid or cid.startswith("."):
            raise ContainerNotFound(f"process task {cid!r} does not exist")
        return self.state_dir / cid

    def _load(self, cid: str) -> dict[str, Any]:
        try:
            return json.loads((self._dir(cid) / "record.json").read_text())
        except (OSError, ValueError):
            raise ContainerNotFound(f"process task {cid} does not exist") from None

    def _save(self, cid: str, rec: Mapping[str, Any]) -> None:
        """record.json holds the task's environment (secret values never: they stay in
        memory, see create): 0600, always."""
        path = self._dir(cid) / "record.json"
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(rec))
        os.replace(tmp, path)

    def _alive(self, rec: Mapping[str, Any]) -> bool:
        """Is the recorded pid still our process (same kernel start time)?"""
        pid, ticks = rec.get("pid"), rec.get("start_ticks")
        if not pid:
            return False
        child = self._children.get(rec["id"])
        if child is not None and child.poll() is not None:
            return False
        return ticks is not None and _proc_start_ticks(pid) == ticks

    def _exit_code(self, rec: Mapping[str, Any]) -> int | None:
        child = self._children.get(rec["id"])
        if child is not None and child.returncode is not None:
            rc = child.returncode
            return 128 - rc if rc < 0 else rc  # killed by signal n: 128+n, as Docker
        try:
            return int((self._dir(rec["id"]) / "exit_code").read_text().strip())
        except (OSError, ValueError):
            pass
        return 137 if rec.get("killed") else None

    def _state(self, rec: Mapping[str, Any]) -> ContainerState:
        running = self._alive(rec)
        if not rec.get("pid"):
            status = "created"
        elif running:
            status = "running"
        else:
            status = "exited"
        code = None if status != "exited" else self._exit_code(rec)
        finished = rec.get("finished_at")
        if status == "exited" and finished is None:
            with contextlib.suppress(OSError):
                finished = (self._dir(rec["id"]) / "exit_code").stat().st_mtime
        error = rec.get("error", "")
        if status == "exited" and code is None and not error:
            error = "exit status unknown (the process ended while no node watched it)"
        return ContainerState(
            id=rec["id"], name=rec["name"], status=status, running=running,
            exit_code=code, started_at=rec.get("started_at"),
            finished_at=finished if status == "exited" else None, error=error,
            oom_killed=False,
            ports=dict(rec.get("host_ports", {})) if running else {},
            labels=dict(rec.get("labels", {})), image=rec.get("image", ""),
            pid=rec.get("pid") if running else None,
        )

    # ------------------------------------------------------------------ interface

    async def has_image(self, image: str) -> bool:
        """Always: the process runtime ignores images."""
        return True

    async def pull(self, image: str, auth: RegistryCredentials | None = None) -> None:
        """Nothing to fetch: the process runtime ignores images."""

    async def create(self, spec: ContainerSpec) -> str:
        spec.validate()
        if not spec.command:
            raise InvalidSpec("the process runtime needs a command (it ignores the image)")
        cid = spec.name
        d = self._dir(cid)
        try:
            d.mkdir(parents=True, mode=0o700)
        except FileExistsError:
            raise ContainerConflict(f"a process task named {cid} already exists") from None
        try:
            host_ports = self.ports.allocate(cid, {n: p.host for n, p in spec.ports.items()})
        except BaseException:
            shutil.rmtree(d, ignore_errors=True)
            raise
        # A process binds the host port itself: "where to listen" is the host port.
        env = port_env(dict(host_ports), host_ports)
        env.update(spec.env)
        self._secret_env[cid] = {k: env.pop(k) for k in spec.secret_keys if k in env}
        workdir = spec.workdir
        if self.user is not None and workdir is None:
            # the task user cannot enter the root-only task directory: its own subdir
            work = d / "work"
            work.mkdir(mode=0o700, exist_ok=True)
            os.chown(work, self.user.uid, self.user.gid)
            workdir = str(work)
            self._hand_over_payload(work, env)
        rec = {
            "id": cid, "name": spec.name, "image": spec.image,
            "command": list(spec.command), "env": env, "workdir": workdir,
            "secret_keys": sorted(spec.secret_keys),
            "labels": helios_labels(self.node, spec,
                                    {n: p.container for n, p in spec.ports.items()},
                                    self.cluster),
            "host_ports": host_ports, "pid": None, "start_ticks": None,
            "started_at": None, "finished_at": None, "killed": False, "error": "",
        }
        self._save(cid, rec)
        return cid

    def _hand_over_payload(self, work: Path, env: dict[str, str]) -> None:
        """A dispatched run's payload file sits in the node's root-only state: the task
        user gets its own copy in its working directory (0600, its own), named relative
        to it (the way there crosses the node's 0700 state directory, which the task
        user cannot traverse by absolute path)."""
        from helios.node.payload import PAYLOAD_FILE_ENV

        src = env.get(PAYLOAD_FILE_ENV)
        if self.user is None or not src:
            return
        dst = work / "payload"
        shutil.copyfile(src, dst)
        os.chmod(dst, 0o600)
        os.chown(dst, self.user.uid, self.user.gid)
        env[PAYLOAD_FILE_ENV] = dst.name

    def _env(self, rec: Mapping[str, Any]) -> dict[str, str]:
        base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TZ") if k in os.environ}
        base.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        base.update(rec.get("env", {}))
        base.update(self._secret_env.get(rec["id"], {}))
        return base

    def _user_options(self) -> dict[str, Any]:
        """Popen's user switch for commands run on a task's behalf (exec)."""
        u = self.user
        return {} if u is None else {"user": u.uid, "group": u.gid, "extra_groups": []}

    async def start(self, cid: str) -> None:
        rec = self._load(cid)
        if self._alive(rec):
            return
        d = self._dir(cid)
        for stale in ("exit_code", "exit_code.pid"):
            with contextlib.suppress(FileNotFoundError):
                (d / stale).unlink()
        lacking = set(rec.get("secret_keys") or ()) - set(self._secret_env.get(cid, {}))
        if lacking:
            raise ContainerStartFailed(
                f"the values of {', '.join(sorted(lacking))} are secrets, kept in memory "
                "only and gone with the node's restart; the task starts again once a "
                "conductor pushes them")
        env = self._env(rec)
        workdir = rec.get("workdir") or str(d)
        ids = "-" if self.user is None else f"{self.user.uid}:{self.user.gid}"
        with open(d / "output.log", "ab") as out:  # the wrapper's own last words
            try:
                proc = await trio.lowlevel.open_process(
                    [self.python, "-I", "-S", "-c", _WRAPPER, str(d / "exit_code"),
                     str(d / "output.log"), str(self.max_log_bytes), ids, *rec["command"]],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    env=env, cwd=workdir, start_new_session=True)
            except OSError as e:
                raise ContainerStartFailed(f"could not start {rec['command'][0]}: {e}") from None
        self._children[cid] = proc
        rec.update(pid=proc.pid, start_ticks=_proc_start_ticks(proc.pid),
                   started_at=time.time(), finished_at=None, killed=False, error="")
        self._save(cid, rec)
        # Return once the wrapper has forked the command, so a stop() right after start()
        # reaches the command, never a half-started wrapper. Bounded.
        marker = d / "exit_code.pid"
        for _ in range(int(START_TIMEOUT / 0.005)):
            if marker.exists() or proc.poll() is not None:
                break
            await trio.sleep(0.005)
        with contextlib.suppress(OSError, ValueError):
            rec["command_pid"] = int(marker.read_text())
            self._save(cid, rec)

    def _signal(self, rec: Mapping[str, Any], sig: int) -> None:
        """Signal the task's process group (its own session, so pgid == pid)."""
        if self._alive(rec):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(rec["pid"], sig)

    async def _wait_gone(self, rec: Mapping[str, Any], timeout: float) -> bool:
        """Wait up to `timeout` s for the task to end; True if it did."""
        child = self._children.get(rec["id"])
        with trio.move_on_after(timeout):
            if child is not None:
                await child.wait()
            else:
                for _ in range(int(timeout / POLL_INTERVAL) + 1):
                    if not self._alive(rec):
                        break
                    await trio.sleep(POLL_INTERVAL)
        return not self._alive(rec)

    async def stop(self, cid: str, grace: float) -> None:
        rec = self._load(cid)
        if not self._alive(rec):
            return
        self._signal(rec, signal.SIGTERM)
        if not await self._wait_gone(rec, grace):
            self._signal(rec, signal.SIGKILL)
            rec["killed"] = True
            await self._wait_gone(rec, 5.0)
        rec["finished_at"] = time.time()
        self._save(cid, rec)

    async def remove(self, cid: str) -> None:
        try:
            rec = self._load(cid)
        except ContainerNotFound:
            self.ports.release(cid)
            return
        if self._alive(rec):
            self._signal(rec, signal.SIGKILL)
            await self._wait_gone(rec, 5.0)
        self._children.pop(cid, None)
        self._secret_env.pop(cid, None)
        self.ports.release(cid)
        await trio.to_thread.run_sync(shutil.rmtree, self._dir(cid), True)

    async def inspect(self, cid: str) -> ContainerState:
        return self._state(self._load(cid))

    async def wait(self, cid: str) -> int:
        """Until the task ends (cancellable); -1 when its exit code cannot be known."""
        rec = self._load(cid)
        child = self._children.get(cid)
        if child is not None:
            await child.wait()
        else:
            while self._alive(rec):  # not our child: poll; the caller's scope bounds it
                await trio.sleep(POLL_INTERVAL)
        code = self._exit_code(rec)
        return -1 if code is None else code

    async def list(self, labels: Mapping[str, str] | None = None) -> list[ContainerState]:
        wanted = {**self.owner_labels(), **(labels or {})}
        found = []
        for d in sorted(self.state_dir.iterdir()) if self.state_dir.is_dir() else []:
            try:
                rec = self._load(d.name)
            except ContainerNotFound:
                continue
            have = rec.get("labels", {})
            if all(have.get(k) == v for k, v in wanted.items()):
                found.append(self._state(rec))
        return found

    async def adopt(self, cid: str) -> ContainerState:
        rec = self._load(cid)
        for port in rec.get("host_ports", {}).values():
            self.ports.reserve(cid, int(port))
        return self._state(rec)

    async def logs(self, cid: str, *, follow: bool = False,
                   tail: int | None = None) -> AsyncGenerator[str, None]:
        """Lines of output.log; `follow` polls for more until the task has ended."""
        rec = self._load(cid)
        path = self._dir(cid) / "output.log"
        if not path.exists():
            return
        async with await trio.open_file(path, "rb") as f:
            data = await f.read()
            lines = data.split(b"\n")
            rest = lines.pop()  # partial last line (b"" when the file ends with \n)
            if tail is not None:
                lines = lines[-tail:] if tail > 0 else []
            for line in lines:
                yield line.decode("utf-8", "replace")
            if not follow:
                if rest:
                    yield rest.decode("utf-8", "replace")
                return
            buf = rest
            while True:  # ends when the task ends; the consumer's scope bounds it
                alive = self._alive(rec)
                chunk = await f.read()
                if chunk:
                    buf += chunk
                    *complete, buf = buf.split(b"\n")
                    for line in complete:
                        yield line.decode("utf-8", "replace")
                elif not alive:
                    break
                else:
                    await trio.sleep(POLL_INTERVAL)
            if buf:
                yield buf.decode("utf-8", "replace")

    async def read_logs(self, cid: str, cursor: str | None = None, *,
                        tail: int | None = None, limit: int = 10_000,
                        max_bytes: int = MAX_READ_BYTES) -> tuple[builtins.list[str], str | None]:
        """Resume at a byte offset of output.log (cursor `b<offset>`), so a follower reads
        only what is new. A partial last line waits for its newline while the task runs.
        Without a cursor, `tail` lines are taken from the end. A read takes at most
        `max_bytes` of the file; an offset past the end means the log was rotated, and
        reading starts again at its beginning."""
        rec = self._load(cid)
        path = self._dir(cid) / "output.log"
        start = 0
        if cursor and cursor.startswith("b") and cursor[1:].isdigit():
            start = int(cursor[1:])
        if not path.exists():
            return [], f"b{start}"
        final = not self._alive(rec)
        async with await trio.open_file(path, "rb") as f:
            size = await f.seek(0, os.SEEK_END)
            if start > size:
                start = 0  # rotated since the last read
            if cursor is None and tail is not None:
                start = max(0, size - max_bytes)
            await f.seek(start)
            data = await f.read(max_bytes)
        cut = len(data) >= max_bytes  # the read stopped at max_bytes, not at the end
        mid_line = cursor is None and tail is not None and start > 0
        if cursor is None and tail is not None and start == 0 and data.count(b"\n") < tail:
            # the log rotated a few lines ago: the rest of the tail is in output.log.1
            older, mid_line = await self._rotated_tail(cid, max_bytes - len(data))
            data = older + data
            start = -len(older)  # offsets before the current file's beginning
        parts = data.split(b"\n")
        rest = parts.pop()
        if mid_line and parts:
            start += len(parts[0]) + 1  # the first piece began mid-line
            parts = parts[1:]
        ends: list[int] = []  # offset after each complete line
        pos = start
        for part in parts:
            pos += len(part) + 1
            ends.append(pos)
        if rest and ((final and not cut) or (cut and not parts)):
            parts.append(rest)  # the task's last words, or one line longer than a read
            ends.append(pos + len(rest))
        first = 0
        if cursor is None and tail is not None:
            first = max(0, len(parts) - tail)
        chosen = parts[first:first + limit]
        end = ends[first + len(chosen) - 1] if chosen else (ends[first - 1] if first else start)
        return [p.decode("utf-8", "replace") for p in chosen], f"b{max(end, 0)}"

    async def _rotated_tail(self, cid: str, budget: int) -> tuple[bytes, bool]:
        """The last `budget` bytes of the rotated log (output.log.1), and whether they
        begin mid-line."""
        path = self._dir(cid) / "output.log.1"
        if budget <= 0 or not path.exists():
            return b"", False
        async with await trio.open_file(path, "rb") as f:
            size = await f.seek(0, os.SEEK_END)
            begin = max(0, size - budget)
            await f.seek(begin)
            return await f.read(budget), begin > 0

    async def exec(self, cid: str, argv: Sequence[str], timeout: float) -> ExecResult:
        """Run argv on the host with the task's environment and working directory."""
        rec = self._load(cid)
        if not self._alive(rec):
            raise ContainerNotRunning(f"process task {cid} is not running, cannot exec")
        if not argv:
            raise InvalidSpec("exec needs a command")
        with trio.move_on_after(timeout) as scope:
            try:
                done = await trio.run_process(
                    list(argv), stdin=b"", capture_stdout=True, stderr=subprocess.STDOUT,
                    check=False, env=self._env(rec), cwd=rec.get("workdir") or self._dir(cid),
                    **self._user_options())
            except OSError as e:
                return ExecResult(exit_code=127, output=f"cannot run {argv[0]}: {e}")
        if scope.cancelled_caught:
            raise ExecTimeout(f"command {list(argv)} did not finish within {timeout:g}s")
        return ExecResult(exit_code=done.returncode,
                          output=done.stdout[:EXEC_OUTPUT_LIMIT].decode("utf-8", "replace"))
