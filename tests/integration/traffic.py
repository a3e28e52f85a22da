"""A service client for the rollout tests: it follows a job's healthy endpoints through
ZooKeeper (`helios.endpoints.Resolver`, the way a real client would) and keeps sending
HTTP requests to their host ports on 127.0.0.1, counting answers and failures.

It runs its own trio loop on a thread, so a synchronous test can start it, drive the
cluster with the CLI, and read the counts at the end. Every request is bounded; the
thread ends when the `with` block does.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import trio

from helios.coordination.zookeeper import open_zookeeper
from helios.endpoints import Resolver, follow_endpoints

#: bound of one request (connect, send, read to EOF)
REQUEST_TIMEOUT = 3.0
#: bound of the wait for an endpoint when there is none
ENDPOINT_WAIT = 10.0


@dataclass
class Traffic:
    """Counts of a running client (read them after the `with` block)."""

    ok: int = 0
    failures: list[str] = field(default_factory=list)
    bodies: Counter[str] = field(default_factory=Counter)
    error: BaseException | None = None
    #: answers seen since `mark()`: body -> count
    since_mark: Counter[str] = field(default_factory=Counter)
    #: endpoint lists seen by a follower (`follow_endpoints`), in order, as task sets
    lists: list[frozenset[str]] = field(default_factory=list)

    def mark(self) -> None:
        self.since_mark = Counter()

    def check_none_failed(self) -> None:
        """The client ran to the end and every request it made was answered."""
        print(f"client: {self.ok} answers {dict(self.bodies)}, {len(self.failures)} failed")
        assert self.error is None, repr(self.error)
        assert self.failures == [], (f"{len(self.failures)} failed of "
                                     f"{self.ok + len(self.failures)}: "
                                     + "\n".join(self.failures[:20]))


async def _get(port: int) -> str:
    """GET / on 127.0.0.1:port; the body when the status is 200, else raises."""
    with trio.fail_after(REQUEST_TIMEOUT):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b"GET / HTTP/1.0\r\nHost: helios-test\r\n\r\n")
            data = b""
            for _ in range(1000):  # bounded: a tiny page ends long before
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if b" 200 " not in status + b" ":
        raise RuntimeError(f"answer {status!r}")
    return body.decode(errors="replace").strip()


class ServiceClient:
    """`with ServiceClient(zk_hosts, zk_root, job) as c:` ... `c.traffic` counts."""

    def __init__(self, zk_hosts: str, zk_root: str, job: str, port: str = "http",
                 pause: float = 0.01) -> None:
        self.hosts, self.root, self.job, self.port, self.pause = \
            zk_hosts, zk_root, job, port, pause
        self.traffic = Traffic()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"client-{job}", daemon=True)

    def __enter__(self) -> ServiceClient:
        self._thread.start()
        if not self._ready.wait(60):
            self._stop.set()
            raise AssertionError(f"client of {self.job} never saw an endpoint: "
                                 f"{self.traffic.error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as e:  # reported through traffic.error
            self.traffic.error = e
            self._ready.set()

    async def _main(self) -> None:
        store = await open_zookeeper(self.hosts, self.root, session_timeout=4.0)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._follow, store)
                await self._requests(store)
                nursery.cancel_scope.cancel()
        finally:
            await store.aclose()

    async def _follow(self, store: Any) -> None:
        async for eps in follow_endpoints(store, self.job):
            self.traffic.lists.append(frozenset(ep["task"] for ep in eps))

    async def _requests(self, store: Any) -> None:
        t = self.traffic
        async with Resolver.open(store, self.job) as resolver:
            for _ in range(10_000_000):  # bounded; ends when the test says so
                if self._stop.is_set():
                    return
                try:
                    ep: dict[str, Any] = await resolver.next(timeout=ENDPOINT_WAIT)
                except trio.TooSlowError:
                    t.failures.append(f"{time.time():.3f} no endpoint for "
                                      f"{ENDPOINT_WAIT}s")
                    continue
                port = int(ep["ports"][self.port])
                try:
                    body = await _get(port)
                except Exception as e:
                    t.failures.append(f"{time.time():.3f} {ep['task']} "
                                      f"127.0.0.1:{port}: {type(e).__name__}: {e}")
                else:
                    t.ok += 1
                    t.bodies[body] += 1
                    t.since_mark[body] += 1
                    self._ready.set()
                await trio.sleep(self.pause)
