"""HTTP helpers for the API tests: plain `urllib` (no client library between the test
and the server), and a `helios solo` subprocess that serves the API."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fixtures.common import free_port, unique_name
from tests.integration.procs import Proc, eventually, live_process_tasks, processes


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(method: str, url: str, body: bytes | str | dict[str, Any] | None = None,
            content_type: str | None = None, timeout: float = 30.0,
            headers: dict[str, str] | None = None) -> Answer:
    """One request; an error status is an answer too, not an exception."""
    data: bytes | None
    if isinstance(body, dict):
        data, content_type = json.dumps(body).encode(), content_type or "application/json"
    else:
        data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method=method)
    if content_type:
        req.add_header("Content-Type", content_type)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return Answer(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
    except urllib.error.HTTPError as e:
        return Answer(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


def get_json(url: str) -> Any:
    a = request("GET", url)
    assert a.status == 200, (url, a.status, a.body[:300])
    return a.json()


def ndjson(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in body.decode().splitlines() if line.strip()]


@dataclass
class Solo:
    addr: str   # the actor address (for the CLI)
    http: str   # http://127.0.0.1:PORT
    proc: Proc


@contextmanager
def solo_with_http(tmp: Path, keep_jobs: bool = False) -> Iterator[Solo]:
    """`helios solo --runtime process` serving HTTP on a free port, up and with its node
    registered. At the end its jobs are removed (unless `keep_jobs`: the store is read
    afterwards) and any task process still running is killed."""
    addr = f"127.0.0.1:{free_port()}"
    http = f"127.0.0.1:{free_port()}"
    with processes() as procs:
        p = Proc("solo", ["solo", "--runtime", "process", "--listen", addr, "--http", http,
                          "--state-dir", str(tmp / "state"), "--name", unique_name("solo")],
                 tmp).start()
        procs.append(p)
        url = f"http://{http}"

        def up() -> bool:
            nodes = get_json(f"{url}/v1/nodes")
            return bool(nodes) and nodes[0]["status"] == "up"

        eventually(up, 30, "solo serving HTTP with its node up", diagnostics=p.tail)
        try:
            yield Solo(addr, url, p)
        finally:
            if not keep_jobs:
                _remove_jobs(url, tmp / "state")
    # (`processes()` stops what the removal left, by the process groups recorded)


def _remove_jobs(url: str, state: Path) -> None:
    """`DELETE` every job, then wait (bounded) until the node stopped their tasks."""
    try:
        for job in get_json(f"{url}/v1/jobs"):
            request("DELETE", f"{url}/v1/jobs/{job['name']}")
        eventually(lambda: not live_process_tasks(state), 30, "the jobs' tasks stopped")
    except (AssertionError, OSError):
        pass  # the solo is gone or stuck: the process groups are killed below


class EventFollower:
    """`GET /v1/events?follow=true&index=N` read line by line in a thread, as a client
    would; `cut()` drops the connection mid-stream."""

    def __init__(self, base: str, after: int = -1) -> None:
        import http.client
        import threading

        host, port = base.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=120)
        self.conn.request("GET", f"/v1/events?follow=true&index={after}")
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200, self.resp.status
        self.events: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while True:
                line = self.resp.readline()
                if not line:
                    return
                if line.strip():
                    self.events.append(json.loads(line))
        except (OSError, ValueError, AttributeError) as e:  # cut() closes the socket under us
            self.error = e

    def cut(self) -> list[dict[str, Any]]:
        import socket

        sock = self.conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(10)
        self.conn.close()
        return list(self.events)
