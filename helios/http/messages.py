"""What the HTTP API's routes take and give: the `Request` a route sees, the answers
(`ApiError`, a `Stream`, a `FromStore` read) and how an answer is written to ASGI."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["JSON", "STALE_HEADER", "YAML_TYPES", "ApiError", "FromStore", "Handler",
           "Request", "Stream", "dumps", "send_answer"]

JSON = "application/json"
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


class ApiError(Exception):
    """An answer other than 200: status and a one-line reason (plus extra keys)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The JSON answer: `{"error": "one line", ...extra}`."""
        return {"error": str(self), **self.extra}


@dataclass
class Request:
    """What a route sees of one HTTP request."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def flag(self, name: str) -> bool:
        value = self.arg(name)
        if value is None:
            return False
        if value.lower() in ("true", "1", "yes"):
            return True
        if value.lower() in ("false", "0", "no", ""):
            return False
        raise ApiError(400, f"query parameter {name} must be true or false, not {value!r}")

    def int_arg(self, name: str, default: int) -> int:
        value = self.arg(name)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise ApiError(400, f"query parameter {name} must be an integer, "
                                f"not {value!r}") from None

    def json(self) -> Any:
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise ApiError(400, f"the body is not valid JSON: {e}") from None


@dataclass
class Stream:
    """A streamed answer: chunks until the source ends or the client goes."""

    content_type: str
    chunks: AsyncGenerator[bytes, None]


Handler = Callable[[Request], Awaitable[Any]]


#: set on an answer read from the store because no leader answered
STALE_HEADER = "x-helios-stale"


@dataclass
class FromStore:
    """A read answered from the store rather than by the leader."""

    doc: Any


def dumps(doc: Any) -> bytes:
    """Compact JSON; anything JSON does not know is written as its text."""
    return json.dumps(doc, separators=(",", ":"), default=str).encode()


async def send_answer(send: Any, status: int, body: bytes, content_type: str,
                      headers: dict[str, str] | None = None) -> None:
    """A whole answer (never cached) on an ASGI `send`."""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode()),
                            (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-store"),
                            *((k.encode(), v.encode()) for k, v in (headers or {}).items())]})
    await send({"type": "http.response.body", "body": body})
