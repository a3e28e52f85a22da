"""Fixtures for the runtime tests: an open DockerRuntime on a unique node, spec factory.

Each test gets its own node name, so `list()` (which filters on `io.helios.node`) only
ever sees that test's containers, and its own test label, so teardown removes whatever
the test left behind even when it failed half way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from helios.node.runtime import ContainerSpec, DockerRuntime, PortAllocator
from tests.fixtures.common import unique_name

SpecFactory = Callable[..., ContainerSpec]


@pytest.fixture
async def docker_rt(docker_available: None,
                    docker_labels: dict[str, str]) -> AsyncIterator[DockerRuntime]:
    """A DockerRuntime for a fresh node name, closed after the test."""
    async with DockerRuntime(unique_name("node"), ports=PortAllocator(21000, 21999)) as rt:
        yield rt


@pytest.fixture
def make_spec(docker_test_image: str, docker_labels: dict[str, str]) -> SpecFactory:
    """ContainerSpec with a unique name, the test image and the test's cleanup labels."""

    def make(command: list[str], **kw: Any) -> ContainerSpec:
        labels = {**docker_labels, **kw.pop("labels", {})}
        kw.setdefault("name", unique_name("helios-rt"))
        kw.setdefault("image", docker_test_image)
        kw.setdefault("job", "testjob")
        kw.setdefault("task", unique_name("task"))
        return ContainerSpec(command=command, labels=labels, **kw)

    return make
