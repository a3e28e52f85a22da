"""Health checks a job actor runs against its task: http, tcp, exec.

Each check answers `HealthResult(ok, reason)`; `reason` is one line a user can read in
`helios job status` ("http GET /: status 503", "tcp 127.0.0.1:21004: connection refused").
A check never raises for a failing service: failure is an answer, not an error. Every
check has its own timeout, and everything is pure trio (no blocking call), so a hung
service cannot stall the node actor.

The http check sends one GET and reads the status line through h11, the sans-I/O HTTP/1.1
state machine: it writes a request that cannot carry an injected header (a path with CR or
LF is refused, non-ASCII is percent-encoded) and parses whatever the service answers
strictly. Only the status code matters: 2xx and 3xx count as healthy (a redirect means the
server is up), as in Nomad and Consul.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import quote

import h11
import trio

from helios.node.runtime.base import ExecTimeout, Runtime, RuntimeFailure

#: The most of a response the http check reads while looking for the status line.
MAX_STATUS_BYTES = 8192
#: what may stand in a request target unescaped (RFC 3986 path and query characters)
_TARGET_SAFE = "/?#[]@!$&'()*+,;=:%-._~"


class HealthResult(NamedTuple):
    """(ok, reason): unpacks as a plain pair."""

    ok: bool
    reason: str


@dataclass(frozen=True)
class HealthProbe:
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


def request_target(path: str) -> bytes:
    """`path` as an HTTP request target: non-ASCII percent-encoded; raises ValueError for
    whitespace or control characters (a CR LF would start a header of the path's choice)."""
    if any(ch <= " " or ch == "\x7f" for ch in path):
        raise ValueError("the path has spaces or control characters")
    if not path.startswith("/"):
        path = "/" + path
    return quote(path, safe=_TARGET_SAFE).encode("ascii")


async def check_http(host: str, port: int, path: str = "/", timeout: float = 1.0) -> HealthResult:
    """GET http://host:port/path; healthy on a 2xx or 3xx status."""
    what = f"http GET {host}:{port}{path[:200]}"
    try:
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_STATUS_BYTES)
        request = conn.send(h11.Request(
            method="GET", target=request_target(path),
            headers=[("Host", f"{host}:{port}"), ("User-Agent", "helios-health"),
                     ("Accept", "*/*"), ("Connection", "close")]))
    except (ValueError, h11.LocalProtocolError) as e:
        return HealthResult(False, f"{what}: cannot send this request: {e}")
    with trio.move_on_after(timeout):
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError as e:
            return HealthResult(False, f"{what}: {_os_reason(e)}")
        async with stream:
            try:
                await stream.send_all(request or b"")
                response = await _read_response(stream, conn)
            except (OSError, trio.BrokenResourceError) as e:
                return HealthResult(False, f"{what}: connection broken: {e}")
            except h11.RemoteProtocolError as e:
                return HealthResult(False, f"{what}: no HTTP status line in the response ({e})")
        if response is None:
            return HealthResult(False, f"{what}: no HTTP status line in the response")
        status = response.status_code
        text = bytes(response.reason).decode("latin-1").strip()[:200]
        label = f"status {status}{' ' + text if text else ''}"
        if 200 <= status < 400:
            return HealthResult(True, f"{what}: {label}")
        return HealthResult(False, f"{what}: {label}")
    return HealthResult(False, f"{what}: no answer within {timeout:g}s")


async def _read_response(stream: trio.SocketStream, conn: h11.Connection
                         ) -> h11.Response | None:
    """The response head (h11 bounds it to MAX_STATUS_BYTES), or None if the peer
    closed first. 1xx interim answers are skipped."""
    for _ in range(64):  # bounded: h11 yields an event or needs data each round
        event = conn.next_event()
        if isinstance(event, h11.Response):
            return event
        if isinstance(event, h11.ConnectionClosed):
            return None
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(MAX_STATUS_BYTES))
    return None


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


async def run_check(check: HealthProbe, *, runtime: Runtime, cid: str,
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
    if isinstance(e.__cause__, BaseExceptionGroup):
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
