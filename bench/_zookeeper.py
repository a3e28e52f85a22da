"""The ZooKeeper a benchmark runs against: the one named by --zk, or its own.

Its own server is the test fixture's (tickTime 200 ms, forceSync=no), started in a fresh
directory and stopped by PID when the benchmark ends.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def bench_zookeeper(hosts: str | None) -> Iterator[str]:
    """Yield a connection string; start (and finally stop) a server when `hosts` is None."""
    if hosts is not None:
        print(f"ZooKeeper: {hosts}")
        yield hosts
        return
    from tests.fixtures.zookeeper import start_zookeeper

    server = start_zookeeper(Path(tempfile.mkdtemp(prefix="helios-bench-zk-")))
    try:
        print(f"ZooKeeper: own server {server.hosts} (pid {server.pid}, tickTime 200ms, "
              "forceSync=no)")
        yield server.hosts
    finally:
        server.stop()
