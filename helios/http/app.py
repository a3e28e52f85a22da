"""The HTTP API as a plain ASGI application (docs/http-api.md).

Why hand-routed ASGI rather than a web framework: the routes are a dozen small functions
that each ask the conductor actor one question and return its answer unchanged (the
`--json` shapes of the CLI), so the only framework needed is a router and an error
mapping. HTTP/1.1 parsing is hypercorn's (h11), served on the conductor's own trio loop
(`helios.http.serve_http`).

The pieces: `messages` (what a route takes and gives), `forward` (`Forwarder`),
`store_read` (reads without a leader); this module routes, authorizes and streams.

Every route goes through `Forwarder.call`: it asks the conductor actor of this process,
exactly as the CLI does over the network, and when that conductor is a standby
(`NotLeader` naming the leader) asks the leader instead. So reads and writes work on any
conductor, and writes are always made by the leader. The event stream is read from the
store directly (`helios.events`), so it works without a leader at all.

Reads (`GET` of jobs, a job, its history, nodes, endpoints) that find no leader within a
few seconds are answered from the store as this conductor reads it, with the header
`X-Helios-Stale: true`: a dashboard keeps working through a failover.

Errors are one JSON object `{"error": "one line"}` with a status from the conductor's
error type; an invalid job file is 422 with `"problems": [{"path", "reason"}]`, every
one named (the same validation as `helios job run`).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trio

from helios import protocol
from helios.coordination.errors import CoordinationError
from helios.events import follow_events, read_events
from helios.http.forward import Forwarder
from helios.http.messages import (
    JSON,
    STALE_HEADER,
    YAML_TYPES,
    ApiError,
    FromStore,
    Handler,
    Request,
    Stream,
    dumps,
    send_answer,
)
from helios.http.store_read import store_read
from helios.units import UnitError, parse_duration

log = logging.getLogger(__name__)

__all__ = ["Api", "ApiError", "Forwarder", "Request"]

#: largest request body taken (a job file is far smaller)
MAX_BODY = 1 << 20
#: how long a read waits for a leader before it is answered from the store instead
READ_WAIT = 3.0


class Api:
    """The ASGI application of one conductor (see the module docstring)."""

    def __init__(self, conductor: Any, metrics: Callable[[], bytes] | None = None,
                 loopback_only: bool = True) -> None:
        self.conductor = conductor
        self.loopback_only = loopback_only
        self.store = conductor.store
        self.client = Forwarder(conductor.system, conductor.url)
        self.metrics = metrics
        self.on_request: Callable[[str, int], None] = lambda method, status: None
        #: the process's authorization policy (`helios.security.authz.HeliosPolicy`),
        #: None in bare tests: then nothing is checked
        self.policy = getattr(getattr(conductor.system, "config", None), "policy", None)
        self.routes: list[tuple[str, re.Pattern[str], Handler, str | None]] = []
        r = self._route
        r("GET", "/v1/jobs", lambda q: self.read("job_ls"), "job_ls")
        r("POST", "/v1/jobs", self.job_run, "job_run")
        r("GET", "/v1/jobs/{name}", lambda q: self.read("job_status", q.params["name"]),
          "job_status")
        r("DELETE", "/v1/jobs/{name}", lambda q: self.client.call("job_rm", q.params["name"]),
          "job_rm")
        r("POST", "/v1/jobs/{name}/stop",
          lambda q: self.client.call("job_stop", q.params["name"]), "job_stop")
        r("GET", "/v1/jobs/{name}/history",
          lambda q: self.read("job_history", q.params["name"]), "job_history")
        r("GET", "/v1/jobs/{name}/logs", self.job_logs, "job_logs")
        r("POST", "/v1/jobs/{name}/dispatch", self.job_dispatch, "job_dispatch")
        r("GET", "/v1/nodes", lambda q: self.read("nodes"), "nodes")
        r("DELETE", "/v1/nodes/{name}", lambda q: self.client.call(
            "node_rm", q.params["name"], force=q.flag("force")), "node_rm")
        r("POST", "/v1/nodes/{name}/drain", self.node_drain, "node_drain")
        r("GET", "/v1/endpoints/{name}",
          lambda q: self.read("endpoints", q.params["name"]), "endpoints")
        r("GET", "/v1/leader", lambda q: self._leader(), "leader")
        r("GET", "/v1/events", self.events, "events")
        r("GET", "/metrics", self.prometheus, "metrics")
        # public: the API's description and the dashboard's files (no cluster data)
        r("GET", "/v1/openapi.json", self.openapi, None)
        r("GET", "/", self.static, None)
        r("GET", "/ui/{name}", self.static, None)

    def _route(self, method: str, template: str, handler: Handler,
               action: str | None) -> None:
        """`action`: the conductor handler whose row of the authorization table the
        route is judged by (None: public)."""
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
        self.routes.append((method, re.compile(f"^{pattern}$"), handler, action))

    # ---------------------------------------------------------------- ASGI
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        status = 500
        stream: Stream | None = None
        action: str | None = None
        req: Request | None = None
        try:
            req = await self._request(scope, receive)
            self._check_origin(req)
            handler, action = self._match(req)
            if action is not None:
                self._authorize(req, action, scope.get("client"))
            result = await handler(req)
            status = 200
            if isinstance(result, Stream):
                stream = result
            elif isinstance(result, tuple):  # (content type, bytes) of a static answer
                await send_answer(send, 200, result[1], result[0])
            elif isinstance(result, FromStore):
                await send_answer(send, 200, dumps(result.doc), JSON, {STALE_HEADER: "true"})
            else:
                await send_answer(send, 200, dumps(result), JSON)
        except ApiError as e:
            status = e.status
            await send_answer(send, e.status, dumps(e.body()), JSON, e.headers)
        except CoordinationError as e:
            status = 503
            await send_answer(send, 503, dumps({"error": f"the store is unavailable: {e}"}), JSON)
        except Exception as e:
            log.exception("HTTP %s %s failed", scope.get("method"), scope.get("path"))
            await send_answer(send, 500, dumps({"error": f"internal error: {type(e).__name__}"}),
                        JSON)
        finally:
            self.on_request(str(scope.get("method")), status)
        if stream is not None:
            if action is not None and self.policy is not None and req is not None:
                stream = Stream(stream.content_type, self._revocable(
                    stream.chunks, req, action, scope.get("client")))
            await self._stream(stream, receive, send)

    async def _revocable(self, chunks: AsyncGenerator[bytes, None], req: Request, action: str,
                         client: Any) -> AsyncGenerator[bytes, None]:
        """A stream (`--follow`) ends as soon as its token is revoked: each chunk is
        authorized again (a dictionary look-up) before it goes out."""
        async with aclosing(chunks) as source:
            async for chunk in source:
                try:
                    self._authorize(req, action, client)
                except ApiError as e:
                    log.info("stream of %s ended: %s", req.path, e)
                    return
                yield chunk

    def _check_origin(self, req: Request) -> None:
        """Refuse what a web page elsewhere could make a browser send here: a write with
        another site's `Origin` (cross-site request forgery) and, while the API is
        loopback-only, a `Host` that is not a loopback name (DNS rebinding)."""
        host = req.headers.get("host", "")
        if self.loopback_only and not _loopback_host(host):
            raise ApiError(403, f"forbidden: Host {host!r} is not a loopback address")
        origin = req.headers.get("origin")
        if origin is not None and req.method not in ("GET", "HEAD", "OPTIONS") \
                and urlsplit(origin).netloc != host:
            raise ApiError(403, f"forbidden: a request from {origin!r} to {host!r}")

    def _authorize(self, req: Request, action: str, client: Any) -> None:
        """The same table as every actor request (`HeliosPolicy.check`), for the subject
        of the request's `Authorization: Bearer <token>`; refusals and operator actions
        are audited like theirs."""
        if self.policy is None or not hasattr(self.policy, "token_subject"):
            return
        auth = req.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if auth and scheme.lower() != "bearer":
            raise ApiError(401, "forbidden: the Authorization header must be 'Bearer "
                                "<token>'", headers={"www-authenticate": "Bearer"})
        host = f"{client[0]}:{client[1]}" if client else "?"
        subject = self.policy.token_subject(token.strip() or None, f"http {host}")
        why = self.policy.check(subject, protocol.CONDUCTOR_ACTOR, action,
                                [req.params["name"]] if "name" in req.params else [])
        if why is None:
            return
        if "anonymous" in subject.roles:
            raise ApiError(401, f"forbidden: {why}", headers={"www-authenticate": "Bearer"})
        raise ApiError(403, f"forbidden: {action} by {subject}: {why}")

    async def _request(self, scope: dict[str, Any], receive: Any) -> Request:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        try:
            query = parse_qs(scope.get("query_string", b"").decode("utf-8"),
                             keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise ApiError(400, "the query string is not UTF-8") from None
        req = Request(scope["method"], scope["path"], query, headers)
        if scope["method"] in ("POST", "PUT", "PATCH", "DELETE"):
            chunks: list[bytes] = []
            size = 0
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    break
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > MAX_BODY:
                    raise ApiError(413, f"the body is larger than {MAX_BODY} bytes")
                chunks.append(chunk)
                if not message.get("more_body"):
                    break
            req.body = b"".join(chunks)
        return req

    def _match(self, req: Request) -> tuple[Handler, str | None]:
        allowed = []
        for method, pattern, handler, action in self.routes:
            m = pattern.match(req.path)
            if m is None:
                continue
            if method == req.method:
                req.params = m.groupdict()
                return handler, action
            allowed.append(method)
        if allowed:
            methods = ", ".join(sorted(set(allowed)))
            raise ApiError(405, f"{req.method} is not allowed on {req.path} "
                                f"(allowed: {methods})", headers={"allow": methods})
        raise ApiError(404, f"no such route: {req.path}")

    async def _stream(self, result: Stream, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", result.content_type.encode()),
                                (b"cache-control", b"no-store")]})
        async with trio.open_nursery() as nursery:
            async def gone() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                nursery.cancel_scope.cancel()

            nursery.start_soon(gone)
            try:
                async with aclosing(result.chunks) as chunks:
                    async for chunk in chunks:
                        await send({"type": "http.response.body", "body": chunk,
                                    "more_body": True})
            except Exception as e:  # the store or the leader went: end it, the client
                log.warning("stream ended: %s", e)  # resumes from its last line
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            nursery.cancel_scope.cancel()

    # ---------------------------------------------------------------- routes
    async def read(self, method: str, *args: Any) -> Any:
        """A read, from the leader; while no leader answers (a failover, a quorum
        without a leader), from the store as this conductor sees it, marked stale."""
        try:
            return await self.client.call(method, *args, wait=READ_WAIT)
        except ApiError as e:
            if e.status != 503:
                raise
            log.info("no leader for %s (%s): answering from the store", method, e)
        return FromStore(await store_read(self.store, method, *args))

    async def _leader(self) -> Any:
        return await self.conductor.system.ref(self.conductor.url).ask("leader",
                                                                       timeout=10.0)

    async def job_run(self, req: Request) -> Any:
        from helios.spec import SpecError, loads

        ctype = req.headers.get("content-type", JSON).split(";")[0].strip().lower()
        if ctype not in (JSON, *YAML_TYPES):
            raise ApiError(415, f"send the job as {JSON} or application/yaml, "
                                f"not {ctype or 'no content type'}")
        try:
            text = req.body.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "the body is not UTF-8") from None
        try:
            if ctype == JSON:
                try:
                    json.loads(text)
                except ValueError as e:
                    raise ApiError(400, f"the body is not valid JSON: {e}") from None
            spec = loads(text, source="the job")
        except SpecError as e:
            n = len(e.problems)
            raise ApiError(422, f"job refused, {n} problem{'s' if n != 1 else ''}: "
                                + "; ".join(str(p) for p in e.problems),
                           problems=[{"path": p.path, "reason": p.reason}
                                     for p in e.problems]) from None
        return await self.client.call("job_run", spec.to_dict())

    async def job_dispatch(self, req: Request) -> Any:
        doc = req.json()
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            raise ApiError(400, "the body must be a JSON object "
                                '{"payload": ..., "idempotency_key": "..."}')
        unknown = sorted(set(doc) - {"payload", "idempotency_key"})
        if unknown:
            raise ApiError(400, f"unknown field(s) in the body: {', '.join(unknown)}")
        payload = doc.get("payload")
        if payload is not None and not isinstance(payload, str):
            payload = json.dumps(payload)  # the CLI sends the JSON text it was given
        key = doc.get("idempotency_key")
        if key is not None and not isinstance(key, str):
            raise ApiError(400, "idempotency_key must be a string")
        return await self.client.call("job_dispatch", req.params["name"], payload=payload,
                                      idempotency_key=key)

    async def job_logs(self, req: Request) -> Any:
        name, task = req.params["name"], req.arg("task")
        tail = req.arg("tail")
        tail_n = req.int_arg("tail", 0) if tail is not None else None
        first = await self.client.call("job_logs", name, task=task, since=None, tail=tail_n)
        follow = req.flag("follow")

        async def chunks() -> AsyncGenerator[bytes, None]:
            out = first
            cursor: Any = None
            while True:
                text = "".join(line if line.endswith("\n") else line + "\n"
                               for line in out.get("lines") or [])
                if text:
                    yield text.encode("utf-8", "replace")
                if out.get("cursor") is not None:
                    cursor = out["cursor"]
                if not follow:
                    return
                await trio.sleep(1.0)
                out = await self.client.call("job_logs", name, task=task, since=cursor)

        return Stream("text/plain; charset=utf-8", chunks())

    async def node_drain(self, req: Request) -> Any:
        """`helios node drain`: body `{"deadline": "1h" | seconds}` (optional), or
        `{"enable": true}` to end a drain; answers the drain report."""
        doc = req.json()
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            raise ApiError(400, 'the body must be a JSON object {"deadline": "1h"}')
        unknown = sorted(set(doc) - {"deadline", "enable"})
        if unknown:
            raise ApiError(400, f"unknown field(s) in the body: {', '.join(unknown)}")
        name = req.params["name"]
        if doc.get("enable") is True:
            return await self.client.call("node_drain", name, draining=False, eligible=True)
        deadline = doc.get("deadline")
        if deadline is not None:
            try:
                deadline = parse_duration(deadline)
            except (UnitError, ValueError) as e:
                raise ApiError(400, f"deadline: {e}") from None
        return await self.client.call("node_drain", name, deadline)

    async def events(self, req: Request) -> Any:
        after = req.int_arg("index", -1)
        job = req.arg("job")
        last = req.int_arg("last", -1) if req.arg("last") is not None else None
        if last is not None and last < 0:
            raise ApiError(400, "query parameter last must be >= 0")
        if req.flag("follow"):
            async def follow() -> AsyncGenerator[bytes, None]:
                async with aclosing(follow_events(self.store, after, job, last)) as evs:
                    async for ev in evs:
                        yield dumps(ev) + b"\n"

            return Stream("application/x-ndjson", follow())
        got = await read_events(self.store, after, job, last=last)

        async def once() -> AsyncGenerator[bytes, None]:
            for ev in got["events"]:
                yield dumps(ev) + b"\n"

        return Stream("application/x-ndjson", once())

    async def openapi(self, req: Request) -> Any:
        from helios.http.openapi import document

        return document()

    async def prometheus(self, req: Request) -> Any:
        from helios.metrics import CONTENT_TYPE

        if self.metrics is None:
            raise ApiError(404, "no metrics here")
        return (CONTENT_TYPE, self.metrics())

    async def static(self, req: Request) -> Any:
        name = req.params.get("name", "index.html")
        types = {".html": "text/html; charset=utf-8", ".js": "text/javascript",
                 ".css": "text/css"}
        ext = name[name.rfind("."):] if "." in name else ""
        if ext not in types or "/" in name or name.startswith("."):
            raise ApiError(404, f"no such file: {name}")
        try:
            data = resources.files("helios.http").joinpath("static", name).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise ApiError(404, f"no such file: {name}") from None
        return (types[ext], data)


def _loopback_host(host: str) -> bool:
    """Whether a `Host` header names this machine by a loopback name or address."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
