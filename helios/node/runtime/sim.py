"""The `sim` runtime: tasks that start, pass health checks and stop with no container and
no process, so one machine can run hundreds of real node daemons (real actors, real
ZooKeeper sessions) for scale tests (`helios node --runtime sim`, `bench/fleet_bench.py`).

What is simulated, and why it is enough for the conductor and the node to behave as on a
real machine:

- A task is an in-memory record. `start` makes it `running` at once; `stop` ends it
  with 143 (SIGTERM, as a process killed by it), after no delay.
- The command decides how the simulated program ends (everything else runs until it is
  stopped, like a server):

      ["sleep", "N"]        exits 0 after N seconds (a batch task's work)
      ["true"]              exits 0 at once
      ["false"]             exits 1 at once
      ["exit", "N"]         exits N at once

- Each named port gets a host port from the node's allocator and, unless `serve=False`,
  a real listener on `bind` that answers every HTTP request with `200 OK` (and accepts
  plain TCP connections), so the real http and tcp health checks pass and a client
  following endpoints gets real answers. A task without ports costs no socket at all,
  so ten thousand of them are a few megabytes.
- `exec` (exec health checks) answers as the task's own command would: exit 0 while
  running, or the command's code for `false` / `exit N`.
- Tasks live in the runtime object: a node daemon that restarts in the same process
  adopts them (`list` / `adopt`); a new process starts with none (like a rebooted
  machine), and the node starts its assigned tasks again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import trio

from helios.node.runtime.base import (
    LABEL_NODE,
    ContainerConflict,
    ContainerNotFound,
    ContainerNotRunning,
    ContainerSpec,
    ContainerState,
    ExecResult,
    RegistryCredentials,
    Runtime,
    helios_labels,
)
from helios.node.runtime.ports import PortAllocator

__all__ = ["SimRuntime", "sim_behaviour"]

log = logging.getLogger(__name__)

#: exit code of a task stopped by `stop` (SIGTERM, as a process runtime reports it)
STOPPED_CODE = 143
#: bytes of a request the built-in HTTP responder reads before answering
MAX_REQUEST = 8192
#: how long the responder waits for a request before closing the connection
REQUEST_TIMEOUT = 5.0


def sim_behaviour(command: Sequence[str]) -> tuple[float | None, int]:
    """(seconds until the simulated program exits, or None for never; its exit code).

    >>> sim_behaviour(["sleep", "2"])
    (2.0, 0)
    >>> sim_behaviour(["httpd", "-f"])
    (None, 0)
    """
    argv = list(command)
    if not argv:
        return None, 0
    head = argv[0].rsplit("/", 1)[-1]
    try:
        if head == "sleep" and len(argv) >= 2:
            return max(0.0, float(argv[1])), 0
        if head == "exit":
            return 0.0, int(argv[1]) if len(argv) >= 2 else 0
    except ValueError:
        return None, 0
    if head == "true":
        return 0.0, 0
    if head == "false":
        return 0.0, 1
    return None, 0


@dataclass
class _Task:
    """One simulated program: its record, and the scope of its port listeners."""

    id: str
    name: str
    image: str
    command: tuple[str, ...]
    labels: dict[str, str]
    host_ports: dict[str, int]
    run_for: float | None
    code: int
    started_at: float | None = None
    started_mono: float = 0.0
    finished_at: float | None = None
    exit_code: int | None = None
    ended: trio.Event = field(default_factory=trio.Event)
    serving: trio.CancelScope | None = None
    lines: list[str] = field(default_factory=list)

    def settle(self) -> None:
        """Turn a program whose run time is over into an exited one (lazily: no timer)."""
        if (self.started_at is not None and self.exit_code is None
                and self.run_for is not None
                and time.monotonic() - self.started_mono >= self.run_for):
            self.finish(self.code, self.started_at + self.run_for)

    def finish(self, code: int, at: float | None = None) -> None:
        if self.exit_code is None:
            self.exit_code = code
            self.finished_at = at if at is not None else time.time()
            self.lines.append(f"sim: exited with code {code}")
            self.ended.set()
        if self.serving is not None:
            self.serving.cancel()
            self.serving = None

    @property
    def running(self) -> bool:
        self.settle()
        return self.started_at is not None and self.exit_code is None


class SimRuntime(Runtime):
    """Simulated tasks held in memory; see the module docstring."""

    kind: ClassVar[str] = "sim"

    def __init__(self, node: str, *, ports: PortAllocator | None = None,
                 serve: bool = True, bind: str = "127.0.0.1") -> None:
        super().__init__(node)
        self.ports = ports if ports is not None else PortAllocator()
        self.serve = serve
        self.bind = bind
        self._tasks: dict[str, _Task] = {}
        self.requests = 0  # HTTP requests answered (tests and the benchmark read it)

    async def aclose(self) -> None:
        """Stop serving: the simulated programs end with the runtime (a new process
        starts with none and the node starts its tasks again)."""
        for t in self._tasks.values():
            if t.serving is not None:
                t.serving.cancel()
                t.serving = None

    def _get(self, cid: str) -> _Task:
        t = self._tasks.get(cid)
        if t is None:
            raise ContainerNotFound(f"sim task {cid} does not exist")
        return t

    def _state(self, t: _Task) -> ContainerState:
        running = t.running
        status = "created" if t.started_at is None else "running" if running else "exited"
        return ContainerState(
            id=t.id, name=t.name, status=status, running=running,
            exit_code=t.exit_code if status == "exited" else None,
            started_at=t.started_at, finished_at=t.finished_at if status == "exited" else None,
            ports=dict(t.host_ports) if running else {}, labels=dict(t.labels),
            image=t.image)

    # ------------------------------------------------------------------ interface
    async def has_image(self, image: str) -> bool:
        """Always: a simulated task has no image."""
        return True

    async def pull(self, image: str, auth: RegistryCredentials | None = None) -> None:
        """Nothing to fetch: a simulated task has no image."""

    async def create(self, spec: ContainerSpec) -> str:
        spec.validate()
        cid = spec.name
        if cid in self._tasks:
            raise ContainerConflict(f"a sim task named {cid} already exists")
        host_ports = self.ports.allocate(cid, {n: p.host for n, p in spec.ports.items()})
        run_for, code = sim_behaviour(spec.command)
        self._tasks[cid] = _Task(
            id=cid, name=spec.name, image=spec.image, command=tuple(spec.command),
            labels=helios_labels(self.node, spec,
                                 {n: p.container for n, p in spec.ports.items()}),
            host_ports=dict(host_ports), run_for=run_for, code=code)
        return cid

    async def start(self, cid: str) -> None:
        t = self._get(cid)
        if t.running:
            return
        t.started_at, t.started_mono = time.time(), time.monotonic()
        t.exit_code = t.finished_at = None
        t.ended = trio.Event()
        t.lines.append(f"sim: started {' '.join(t.command) or '(no command)'}")
        if self.serve and t.host_ports and t.run_for != 0.0:
            await self._serve(t)

    async def _serve(self, t: _Task) -> None:
        """Listen on every host port of `t` until it ends (a system task: it belongs to
        the simulated program, not to whichever actor called `start`)."""
        listeners = []
        try:
            for port in t.host_ports.values():
                listeners.extend(await trio.open_tcp_listeners(port, host=self.bind))
        except OSError as e:
            for lst in listeners:
                await lst.aclose()
            t.finish(1)
            t.lines.append(f"sim: cannot listen: {e}")
            return
        scope = t.serving = trio.CancelScope()

        async def serve_all() -> None:
            with scope:
                try:
                    async with trio.open_nursery() as nursery:
                        for lst in listeners:
                            nursery.start_soon(trio.serve_listeners, self._answer,
                                               [lst])
                        if t.run_for is not None:
                            await trio.sleep(t.run_for)
                            t.settle()
                            nursery.cancel_scope.cancel()
                except Exception as e:  # a system task must never raise: it ends the run
                    log.warning("sim task %s: its listener failed: %s", t.id, e)
                    t.lines.append(f"sim: listener failed: {e}")
                    t.finish(1)
                finally:
                    for lst in listeners:
                        with trio.CancelScope(shield=True):
                            await lst.aclose()

        trio.lowlevel.spawn_system_task(serve_all, name=f"sim-serve-{t.id}")

    async def _answer(self, stream: trio.SocketStream) -> None:
        """One connection: read a request head (bounded), answer 200, close."""
        async with stream:
            with trio.move_on_after(REQUEST_TIMEOUT):
                try:
                    head = b""
                    while b"\r\n\r\n" not in head and len(head) < MAX_REQUEST:
                        chunk = await stream.receive_some(MAX_REQUEST)
                        if not chunk:
                            return  # a tcp check: connected, nothing to answer
                        head += chunk
                    body = f"sim {self.node}\n".encode()
                    await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                          b"Content-Length: " + str(len(body)).encode()
                                          + b"\r\nConnection: close\r\n\r\n" + body)
                    self.requests += 1
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    return
                except Exception as e:  # one bad connection must not end the listener
                    log.debug("sim node %s: connection failed: %s", self.node, e)

    async def stop(self, cid: str, grace: float) -> None:
        t = self._get(cid)
        if t.running:
            t.finish(STOPPED_CODE)
        else:
            t.finish(t.exit_code if t.exit_code is not None else STOPPED_CODE)

    async def remove(self, cid: str) -> None:
        t = self._tasks.pop(cid, None)
        if t is not None:
            t.finish(t.exit_code if t.exit_code is not None else STOPPED_CODE)
        self.ports.release(cid)

    async def inspect(self, cid: str) -> ContainerState:
        return self._state(self._get(cid))

    async def wait(self, cid: str) -> int:
        t = self._get(cid)
        if t.running and t.run_for is not None:
            left = t.run_for - (time.monotonic() - t.started_mono)
            with trio.move_on_after(max(0.0, left)):
                await t.ended.wait()
            t.settle()
        elif t.running:
            await t.ended.wait()
        t.settle()
        return t.exit_code if t.exit_code is not None else -1

    async def list(self, labels: Mapping[str, str] | None = None) -> list[ContainerState]:
        wanted = {LABEL_NODE: self.node, **(labels or {})}
        return [self._state(t) for t in sorted(self._tasks.values(), key=lambda t: t.id)
                if all(t.labels.get(k) == v for k, v in wanted.items())]

    async def adopt(self, cid: str) -> ContainerState:
        t = self._get(cid)
        for port in t.host_ports.values():
            self.ports.reserve(cid, int(port))
        return self._state(t)

    async def logs(self, cid: str, *, follow: bool = False,
                   tail: int | None = None) -> AsyncGenerator[str, None]:
        t = self._get(cid)
        lines = list(t.lines)
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        for line in lines:
            yield line
        if follow and t.running:
            seen = len(t.lines)
            await self.wait(cid)
            for line in t.lines[seen:]:
                yield line

    async def exec(self, cid: str, argv: Sequence[str], timeout: float) -> ExecResult:
        """As the task's own program would answer a probe: 0 while it runs, unless the
        probe itself is `false` / `exit N`."""
        t = self._get(cid)
        if not t.running:
            raise ContainerNotRunning(f"sim task {cid} is not running, cannot exec")
        run_for, code = sim_behaviour(argv)
        return ExecResult(exit_code=code if run_for == 0.0 else 0, output="")
