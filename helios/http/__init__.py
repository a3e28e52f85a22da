"""Helios's HTTP face: the JSON API, `/metrics` and the dashboard (docs/http-api.md).

`serve_http` runs the ASGI application of `helios.http.app` with hypercorn's trio worker
inside the conductor's own trio program, so a route asks the conductor actor in the same
process. `serve_metrics` is the node daemon's `/metrics`-only server. `check_bind` parses
`--http` / `--metrics` and refuses a non-loopback address without TLS unless `--insecure`
(requests carry ACL tokens, which must not cross a network in clear). With TLS
configured (HELIOS_TLS_CERT/KEY/CA) both serve HTTPS with the process's certificate;
clients authenticate with tokens, not certificates (a browser has none).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable
from typing import Any

import trio

__all__ = ["check_bind", "is_loopback", "serve_http", "serve_metrics"]

log = logging.getLogger(__name__)

#: what `--http` defaults to on `helios conductor` and `helios solo`
DEFAULT_HTTP = "127.0.0.1:7071"


def check_bind(text: str | None, insecure: bool = False, flag: str = "--http",
               tls: bool = False) -> str | None:
    """`H:P` -> the bind string; "off" (or empty) -> None. Raises ValueError with a
    one-line reason for a malformed address or a non-loopback one without TLS or
    `insecure`."""
    if text is None or text.strip().lower() in ("", "off", "none", "false"):
        return None
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{flag} must be HOST:PORT or off, not {text!r}")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not insecure and not tls:
        raise ValueError(f"{flag} {text}: refusing to serve plain HTTP beyond this machine "
                         "(tokens would cross the network in clear); configure TLS "
                         "(--tls-cert/--tls-key/--tls-ca), use a loopback address, or "
                         "give --insecure")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(bind: str) -> bool:
    """Whether `HOST:PORT` names a loopback address (or localhost)."""
    host = bind.rpartition(":")[0].strip("[]")
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _config(bind: str, tls: Any = None) -> Any:
    from hypercorn.config import Config

    config = Config()
    config.bind = [bind]
    if tls is not None:  # HTTPS with this process's certificate (see the module docstring)
        config.certfile, config.keyfile = tls.certfile, tls.keyfile
    config.accesslog = None
    config.errorlog = logging.getLogger("helios.http.server")
    config.graceful_timeout = 1.0
    config.keep_alive_timeout = 30.0
    return config


async def serve_http(conductor: Any, bind: str, *, extra: Iterable[Any] = (),
                     task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve the API of `conductor` at `bind` until cancelled; `task_status.started(url)`
    with the URL it listens at (`http://127.0.0.1:7071`). `extra`: more collectors whose
    figures `/metrics` shows (solo mode adds its node's)."""
    from hypercorn.trio import serve

    from helios.http.app import Api
    from helios.metrics import conductor_metrics, render

    metrics = conductor_metrics(conductor)
    for registry in extra:
        metrics.add_registry(registry)
    app = Api(conductor, metrics=lambda: render(metrics.registry) + b"".join(
        render(r) for r in metrics.extra), loopback_only=is_loopback(bind))
    app.on_request = lambda method, status: metrics.http_requests.labels(
        method, str(status)).inc()
    async with trio.open_nursery() as nursery:
        binds = await _start(nursery, serve, app, bind, conductor.system.config.tls)
        url = binds[0] if binds else f"http://{bind}"
        conductor.http_url = url
        log.info("HTTP API at %s", url)
        task_status.started(url)


async def _start(nursery: trio.Nursery, serve: Callable[..., Any], app: Any,
                 bind: str, tls: Any = None) -> list[str]:
    """Start hypercorn; a port it cannot bind is one clear line, not a socket error."""
    try:
        return await nursery.start(_hypercorn, serve, app, _config(bind, tls))
    except (OSError, BaseExceptionGroup) as e:
        err = e
        while isinstance(err, BaseExceptionGroup) and len(err.exceptions) == 1:
            err = err.exceptions[0]
        if not isinstance(err, OSError):
            raise
        raise OSError(err.errno, f"cannot serve HTTP at {bind}: {err.strerror}") from None


async def _hypercorn(serve: Callable[..., Any], app: Any, config: Any,
                     task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
                     ) -> None:
    await serve(app, config, task_status=task_status)


async def serve_metrics(core: Any, bind: str, *,
                        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
                        ) -> None:
    """A node daemon's `/metrics` (and nothing else) at `bind`, until cancelled."""
    from hypercorn.trio import serve

    from helios.metrics import CONTENT_TYPE, node_metrics, render

    metrics = node_metrics(core)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[-1]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        if scope["type"] != "http":
            return
        if scope["method"] == "GET" and scope["path"] == "/metrics":
            status, body, ctype = 200, render(metrics.registry), CONTENT_TYPE
        else:
            status, body, ctype = 404, b'{"error":"only GET /metrics here"}', \
                "application/json"
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype.encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async with trio.open_nursery() as nursery:
        binds = await _start(nursery, serve, app, bind, core.system.config.tls)
        url = binds[0] if binds else f"http://{bind}"
        log.info("node metrics at %s/metrics", url)
        task_status.started(url)
