"""Shared pytest configuration.

Fixtures that start real services live in `tests/fixtures/` (one module per service) and are
registered here, so every test directory sees them. A fixture that needs ZooKeeper or Docker
fails (never skips) when the service is missing and `CI` is set: a green run must mean the
real thing was exercised.
"""

pytest_plugins = [
    "tests.fixtures.common",
    "tests.fixtures.zookeeper",
    "tests.fixtures.docker",
]
