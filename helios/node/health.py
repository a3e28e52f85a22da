"""Health checks a job actor runs against its task: http, tcp, exec.

Each check answers `HealthResult(ok, reason)`; `reason` is one line a user can read in
`helios job status` ("http GET /: status 503", "tcp 127.0.0.1:21004: connection refused").
A check never raises for a failing service: failure is an answer, not an error. Every
check has its own timeout, and everything is pure trio (no blocking call), so a hung
service cannot stall the node actor.

The http check speaks just enough HTTP/1.1 by hand (one GET, read the status line) rather
than pulling in a client library: it only needs the status code, 2xx and 3xx count as
healthy (a redirect means the server is up), as in Nomad and Consul.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import trio

from helios.node.runtime.base import ExecTimeout, Runtime, RuntimeFailure

#: The most of a response the http check reads while looking for the status line.
MAX_STATUS_BYTES = 8192
_STATUS_RE = re.compile(rb"^HTTP/\d(?:\.\d)? (\d{3})(?: ([^\r\n]*))?\r?\n")


class HealthResult(NamedTuple):
    """(ok, reason): unpacks as a plain pair."""

    ok: bool
    reason: str


@dataclass(frozen=True)
class HealthCheck:
    """One check of a job. `port` names one of the task's ports (http and tcp).

    kind "http": GET `path` on the port's host port; "tcp": connect; "exec": run
    `command` inside the task through the runtime.
    """

    kind: str
    port: str | None = None
    path: str = "/"
    command: Sequence[str] = field(default_factory=tuple)
    timeout: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ("http", "tcp", "exec"):
            raise ValueError(f"health check kind must be http, tcp or exec, not {self.kind!r}")
        if self.kind in ("http", "tcp") and not self.port:
            raise ValueError(f"a {self.kind} health check needs a port name")
        if self.kind == "exec" and not self.command:
            raise ValueError("an exec health check needs a command")
        if not self.timeout > 0:
            raise ValueError("health check timeout must be positive")


async def check_http(host: str, port: int, path: str = "/", timeout: float = 1.0) -> HealthResult:
    """GET http://host:port/path; healthy on a 2xx or 3xx status."""
    if not path.startswith("/"):
        path = "/" + path
    what = f"http GET {host}:{port}{path}"
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
               "User-Agent: helios-health\r\nAccept: */*\r\nConnection: close\r\n\r\n")
    with trio.move_on_after(timeout):
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError as e:
            return HealthResult(False, f"{what}: {_os_reason(e)}")
        async with stream:
            try:
                await stream.send_all(request.encode("latin-1"))
                head = b""
                while len(head) < MAX_STATUS_BYTES and b"\n" not in head:
                    chunk = await stream.receive_some(MAX_STATUS_BYTES - len(head))
                    if not chunk:
                        break
                    head += chunk
            except (OSError, trio.BrokenResourceError) as e:
                return HealthResult(False, f"{what}: connection broken: {e}")
        m = _STATUS_RE.match(head)
        if m is None:
            return HealthResult(False, f"{what}: no HTTP status line in the response")
        status = int(m.group(1))
        text = (m.group(2) or b"").decode("latin-1").strip()
        label = f"status {status}{' ' + text if text else ''}"
        if 200 <= status < 400:
            return HealthResult(True, f"{what}: {label}")
        return HealthResult(False, f"{what}: {label}")
    return HealthResult(False, f"{what}: no answer within {timeout:g}s")


async def check_tcp(host: str, port: int, timeout: float = 1.0) -> HealthResult:
    """Healthy when a TCP connection to host:port opens within `timeout`."""
    what = f"tcp {host}:{port}"
    with trio.move_on_after(timeout):
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError as e:
            return HealthResult(False, f"{what}: {_os_reason(e)}")
        await stream.aclose()
        return HealthResult(True, f"{what}: connected")
    return HealthResult(False, f"{what}: no connection within {timeout:g}s")


async def check_exec(runtime: Runtime, cid: str, argv: Sequence[str],
                     timeout: float = 1.0) -> HealthResult:
    """Healthy when `argv` run inside the task exits 0 within `timeout`."""
    what = f"exec {' '.join(argv)}"
    try:
        result = await runtime.exec(cid, argv, timeout)
    except ExecTimeout:
        return HealthResult(False, f"{what}: did not finish within {timeout:g}s")
    except RuntimeFailure as e:
        return HealthResult(False, f"{what}: {e.reason}")
    if result.exit_code == 0:
        return HealthResult(True, f"{what}: exit 0")
    last = result.output.strip().splitlines()[-1:] or [""]
    tail = f" ({last[0][:200]})" if last[0] else ""
    return HealthResult(False, f"{what}: exit {result.exit_code}{tail}")


async def run_check(check: HealthCheck, *, runtime: Runtime, cid: str,
                    ports: Mapping[str, int], host: str = "127.0.0.1") -> HealthResult:
    """Run `check` for one task whose named host ports are `ports`."""
    if check.kind == "exec":
        return await check_exec(runtime, cid, check.command, check.timeout)
    assert check.port is not None
    port = ports.get(check.port)
    if port is None:
        return HealthResult(False, f"{check.kind} check: the task has no port named "
                                   f"{check.port!r} bound")
    if check.kind == "http":
        return await check_http(host, port, check.path, check.timeout)
    return await check_tcp(host, port, check.timeout)


def _os_reason(e: OSError) -> str:
    """'connection refused' rather than '[Errno 111] ...' (trio wraps several errors)."""
    inner = e.__cause__ if isinstance(e.__cause__, OSError) else e
    if isinstance(inner, BaseExceptionGroup) or isinstance(e.__cause__, BaseExceptionGroup):
        group = e.__cause__
        assert isinstance(group, BaseExceptionGroup)
        firsts = [x for x in group.exceptions if isinstance(x, OSError)]
        inner = firsts[0] if firsts else e
    text = getattr(inner, "strerror", None) or str(inner)
    low = text.lower()
    if "refused" in low:
        return "connection refused"
    if "unreachable" in low:
        return "host unreachable"
    return text or type(e).__name__
