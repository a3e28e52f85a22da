"""Pulling through DockerRuntime from real local registries, and the errors users see.

Each failure must come out as its own error type with a reason naming the image, because
that reason becomes the task's `failed` reason in `helios job status`.
"""

from __future__ import annotations

import pytest

from helios.node.runtime import (
    DockerRuntime,
    ImageNotFound,
    InvalidImageName,
    RegistryAuthFailed,
    RegistryCredentials,
    RegistryUnreachable,
)
from tests.fixtures.common import free_port, unique_name
from tests.fixtures.docker import docker_cli

pytestmark = pytest.mark.docker


async def test_pull_from_local_registry_then_run(docker_rt: DockerRuntime, make_spec,
                                                 docker_registry, docker_test_image):
    ref = docker_registry.push(docker_test_image, f"helios/{unique_name('app')}:1")
    assert not await docker_rt.has_image(ref)
    await docker_rt.pull(ref)
    assert await docker_rt.has_image(ref)
    cid = await docker_rt.create(make_spec(["echo", "pulled"], image=ref))
    try:
        await docker_rt.start(cid)
        assert await docker_rt.wait(cid) == 0
        assert [line async for line in docker_rt.logs(cid)] == ["pulled"]
    finally:
        await docker_rt.remove(cid)
        docker_cli("rmi", ref, check=False)


async def test_missing_image_in_registry(docker_rt: DockerRuntime, docker_registry):
    ref = f"{docker_registry.host}/helios/{unique_name('absent')}:1"
    with pytest.raises(ImageNotFound) as ei:
        await docker_rt.pull(ref)
    assert ref in ei.value.reason and "not found" in ei.value.reason


async def test_create_without_local_image(docker_rt: DockerRuntime, make_spec):
    image = f"local/{unique_name('never-built')}:1"
    with pytest.raises(ImageNotFound) as ei:
        await docker_rt.create(make_spec(["true"], image=image))
    assert image in ei.value.reason and "pull it first" in ei.value.reason


async def test_pull_with_credentials(docker_rt: DockerRuntime, docker_registry_auth,
                                     docker_test_image):
    reg = docker_registry_auth
    ref = reg.push(docker_test_image, f"helios/{unique_name('private')}:2")
    try:
        with pytest.raises(RegistryAuthFailed) as ei:
            await docker_rt.pull(ref)  # no credentials
        assert ref in ei.value.reason and "credentials" in ei.value.reason
        with pytest.raises(RegistryAuthFailed) as ei:
            await docker_rt.pull(ref, RegistryCredentials(reg.username, "wrong-password"))
        assert "wrong or missing credentials" in ei.value.reason
        assert not await docker_rt.has_image(ref)

        await docker_rt.pull(ref, RegistryCredentials(reg.username, reg.password))
        assert await docker_rt.has_image(ref)
    finally:
        docker_cli("rmi", ref, check=False)
    # The password never shows in a repr (it ends up in logs).
    assert reg.password not in repr(RegistryCredentials(reg.username, reg.password))


@pytest.mark.parametrize("image", ["Bad Name!", "local/UPPER:1", "", "repo:tag with space",
                                   "local/app:", "//x"])
async def test_bad_image_name(docker_rt: DockerRuntime, image: str):
    with pytest.raises(InvalidImageName) as ei:
        await docker_rt.pull(image)
    assert "not a valid Docker image reference" in ei.value.reason


async def test_unreachable_registry(docker_rt: DockerRuntime):
    ref = f"127.0.0.1:{free_port()}/helios/app:1"  # nothing listens there
    with pytest.raises(RegistryUnreachable) as ei:
        await docker_rt.pull(ref)
    assert "unreachable" in ei.value.reason and "127.0.0.1" in ei.value.reason
