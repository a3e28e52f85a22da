"""Start Helios processes the way a user does (`helios conductor`, `helios node`,
`helios solo`, `helios job ...`) and stop every one by its PID."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HELIOS = [sys.executable, "-m", "helios.cli"]


class Proc:
    """One daemon subprocess with its log file: `helios ARGS` unless `command` names
    another program (then `command + ARGS`, in `env` and `cwd` when given), under
    `prefix` when given (e.g. `ip netns exec NS`, which execs: the PID is still ours)."""

    def __init__(self, name: str, args: list[str], logdir: Path,
                 prefix: list[str] | None = None, *,
                 command: list[str] | None = None, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.name = name
        self.args = args
        self.log = logdir / f"{name}.log"
        self.command = HELIOS if command is None else command
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        #: run under this command (e.g. `ip netns exec NS`, which execs: the PID is ours)
        self.prefix = list(prefix or [])
        self.frozen = False

    def start(self) -> Proc:
        env = {**(os.environ if self.env is None else self.env), "PYTHONUNBUFFERED": "1"}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.prefix + self.command + self.args, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, cwd=self.cwd)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind (its ZooKeeper session must expire)."""
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def freeze(self) -> None:
        """SIGSTOP: the process stays, silent (a hung machine, a long GC pause)."""
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGSTOP)
            self.frozen = True

    def thaw(self) -> None:
        """SIGCONT after `freeze`."""
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGCONT)
        self.frozen = False

    def stop(self, timeout: float = 15.0) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        if self.frozen:
            self.thaw()  # a stopped process would not act on SIGTERM
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@contextmanager
def processes() -> Iterator[list[Proc]]:
    """A list to append started processes to; all are stopped (by PID) at the end, and
    so are the process-runtime tasks of the daemons among them: those outlive their
    daemon by design (a node restarts and adopts them)."""
    procs: list[Proc] = []
    try:
        yield procs
    finally:
        for p in reversed(procs):
            try:
                p.stop(timeout=10)
            except Exception:
                p.kill()
        for p in procs:
            if "--state-dir" in p.args[:-1]:
                kill_process_tasks(Path(p.args[p.args.index("--state-dir") + 1]))


def live_process_tasks(state_dir: Path) -> list[int]:
    """Process groups of the process-runtime tasks recorded under a node's (or a solo's)
    state directory that still run: the recorded pid with its recorded start time, so
    a reused pid is never taken for a task."""
    from helios.node.runtime.process import _proc_start_ticks

    out = []
    for record in [*state_dir.glob("process/*/record.json"),
                   *state_dir.glob("node/process/*/record.json")]:
        try:
            rec = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        pid, ticks = rec.get("pid"), rec.get("start_ticks")
        if pid and ticks is not None and _proc_start_ticks(pid) == ticks:
            out.append(int(pid))
    return out


def kill_process_tasks(state_dir: Path) -> None:
    """SIGKILL the process groups `live_process_tasks` finds."""
    for pid in live_process_tasks(state_dir):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def helios(*args: str, timeout: float = 60.0, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    """Run one client command to completion."""
    return subprocess.run(HELIOS + list(args), capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, **(env or {})))


def helios_json(*args: str, timeout: float = 60.0) -> Any:
    r = helios(*args, "--json", timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"helios {' '.join(args)} failed ({r.returncode}): {r.stderr}")
    return json.loads(r.stdout)


def eventually(fn: Callable[[], Any], timeout: float, what: str, interval: float = 0.3,
               diagnostics: Callable[[], str] | None = None) -> Any:
    """Call `fn` until it returns something truthy (exceptions count as not yet)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            result = fn()
            if result:
                return result
            last = result
        except Exception as e:  # the cluster may be mid-failover
            last = e
        time.sleep(interval)
    extra = diagnostics() if diagnostics else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}"
                         + (f"\n{extra}" if extra else ""))


def write_job(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(json.dumps(doc))
    return path


def current_leader(zk: str, timeout: float = 30.0) -> dict[str, Any]:
    """`helios leader --json` once a conductor leads (a standby's answer names none)."""
    return eventually(lambda: (lambda i: i if i.get("leader") and i.get("name") else None)(
        helios_json("leader", "--zk", zk)), timeout, "a leader")


def start_solo(procs: list[Proc], tmp: Path, runtime: str, state: str = "state",
               name: str | None = None) -> tuple[Proc, str]:
    """`helios solo --runtime RUNTIME` on a free port with its state in `tmp/state`
    (appended to `procs`, so it is stopped by PID), once it answers; (proc, address)."""
    from tests.fixtures.common import free_port

    addr = f"127.0.0.1:{free_port()}"
    args = ["solo", "--runtime", runtime, "--listen", addr, "--state-dir", str(tmp / state)]
    p = Proc(f"solo-{state}", args + (["--name", name] if name else []), tmp).start()
    procs.append(p)
    eventually(lambda: helios("nodes", "--conductor", addr).returncode == 0, 30, "solo up",
               diagnostics=p.tail)
    return p, addr
