"""Shared pytest configuration.

Fixtures that start real services live in `tests/fixtures/` (one module per service) and are
registered here, so every test directory sees them. A fixture that needs ZooKeeper or Docker
fails (never skips) when the service is missing and `CI` is set: a green run must mean the
real thing was exercised.
"""

import os

pytest_plugins = [
    "tests.fixtures.common",
    "tests.fixtures.zookeeper",
    "tests.fixtures.docker",
]

# `helios solo` and `helios conductor` serve HTTP on 127.0.0.1:7071 by default; the many
# daemons tests start (some at once, and other test runs on the same machine) must not
# fight over that port. Tests of the HTTP API pass `--http 127.0.0.1:PORT` themselves.
os.environ.setdefault("HELIOS_HTTP", "off")
