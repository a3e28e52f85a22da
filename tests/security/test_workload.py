"""The node operator's rules for containers: restrictive by default, widened per node by
flags, refusals naming the rule and the flag. Against real Docker."""

from __future__ import annotations

import json

import pytest

from helios.node.runtime import ContainerSpec, DockerRuntime, LogDriver
from helios.node.workload import WorkloadPolicy, WorkloadRefused
from helios.spec import SpecError, validate
from tests.fixtures.common import unique_name
from tests.fixtures.docker import docker_cli


def spec(image: str, labels: dict[str, str], **kw: object) -> ContainerSpec:
    name = unique_name("wl")
    return ContainerSpec(image=image, command=kw.pop("command", ["true"]),  # type: ignore[arg-type]
                         name=name, job="wl", task=name, labels=labels, **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------ pure rules
def test_refusals_name_the_rule_and_the_flag() -> None:
    strict = WorkloadPolicy(refuse_root=True)
    with pytest.raises(WorkloadRefused, match=r"refuses root.*without --refuse-root"):
        strict.check(ContainerSpec(name="a", image="i"), "n1")
    with pytest.raises(WorkloadRefused, match="refuses root"):
        strict.check(ContainerSpec(name="a", image="i", user="0:0"), "n1")
    strict.check(ContainerSpec(name="a", image="i", user="1000:1000"), "n1")
    p = WorkloadPolicy()
    with pytest.raises(WorkloadRefused, match="--allow-log-driver awslogs"):
        p.check(ContainerSpec(name="a", image="i", log=LogDriver("awslogs")), "n1")
    for opt in ({"syslog-address": "tcp://10.1.2.3:514"},
                {"fluentd-address": "collector.example:24224"},
                {"gelf-address": "udp://[2001:db8::1]:12201"},
                {"syslog-address": "unix:///var/run/docker.sock"}):
        driver = next(iter(opt)).split("-")[0]
        with pytest.raises(WorkloadRefused, match="--allow-log-address"):
            p.check(ContainerSpec(name="a", image="i", log=LogDriver(driver, opt)), "n1")
    p.check(ContainerSpec(name="a", image="i",
                          log=LogDriver("fluentd", {"fluentd-address": "127.0.0.1:24224"})),
            "n1")
    wide = WorkloadPolicy.from_flags(allow_log_drivers=["awslogs"],
                                     allow_log_addresses=["collector.example"])
    wide.check(ContainerSpec(name="a", image="i", log=LogDriver("awslogs")), "n1")
    wide.check(ContainerSpec(name="a", image="i", log=LogDriver(
        "fluentd", {"fluentd-address": "collector.example:24224"})), "n1")


def test_user_in_the_job_file() -> None:
    assert validate({"name": "a", "image": "i", "user": "1000:1000"}).user == "1000:1000"
    assert validate({"name": "a", "image": "i", "user": "app"}).user == "app"
    with pytest.raises(SpecError, match="user"):
        validate({"name": "a", "image": "i", "user": "root; rm -rf /"})
    plain = validate({"name": "a", "image": "i"})
    assert plain.fingerprint() == validate({"name": "a", "image": "i"}).fingerprint()
    assert validate({"name": "a", "image": "i", "user": "1"}).fingerprint() != \
        plain.fingerprint()


# ------------------------------------------------------------------ real Docker
def _host_config(cid: str) -> dict:
    return json.loads(docker_cli("inspect", "-f", "{{json .HostConfig}}", cid).stdout)


@pytest.mark.docker
async def test_containers_get_the_restrictive_defaults(docker_test_image: str,
                                                       docker_labels: dict[str, str]) -> None:
    async with DockerRuntime("wl-node") as rt:
        cid = await rt.create(spec(docker_test_image, docker_labels, user="1000:1000"))
        try:
            hc = _host_config(cid)
            user = docker_cli("inspect", "-f", "{{.Config.User}}", cid).stdout.strip()
        finally:
            await rt.remove(cid)
    assert hc["SecurityOpt"] == ["no-new-privileges:true"]
    assert hc["PidsLimit"] == 1024
    assert hc["CapDrop"] == ["ALL"] and "NET_RAW" not in hc["CapAdd"]
    assert user == "1000:1000"


@pytest.mark.docker
async def test_raw_sockets_need_the_node_to_allow_net_raw(docker_test_image: str,
                                                          docker_labels: dict[str, str]
                                                          ) -> None:
    """The attack: a raw socket (ping) from inside a container. Docker's default set of
    capabilities allows it; the node's does not, unless `--allow-cap NET_RAW`."""
    results = {}
    for label, policy in (("default", WorkloadPolicy()),
                          ("allowed", WorkloadPolicy.from_flags(allow_caps=["NET_RAW"]))):
        async with DockerRuntime("wl-node", workload=policy) as rt:
            cid = await rt.create(spec(docker_test_image, docker_labels,
                                       command=["ping", "-c", "1", "-W", "1", "127.0.0.1"]))
            try:
                await rt.start(cid)
                results[label] = await rt.wait(cid)
            finally:
                await rt.remove(cid)
    assert results["allowed"] == 0
    assert results["default"] != 0


@pytest.mark.docker
async def test_a_refused_log_driver_never_reaches_docker(docker_test_image: str,
                                                         docker_labels: dict[str, str]
                                                         ) -> None:
    async with DockerRuntime("wl-node") as rt:
        with pytest.raises(WorkloadRefused, match="--allow-log-driver"):
            await rt.create(spec(docker_test_image, docker_labels,
                                 log=LogDriver("awslogs", {"awslogs-region": "x"})))
        with pytest.raises(WorkloadRefused, match=r"--allow-log-address 10\.9\.9\.9"):
            await rt.create(spec(docker_test_image, docker_labels, log=LogDriver(
                "syslog", {"syslog-address": "tcp://10.9.9.9:514"})))
    left = docker_cli("ps", "-aq", "--filter", "label=io.helios.node=wl-node").stdout.split()
    assert not [c for c in left if "wl" in docker_cli("inspect", "-f", "{{.Name}}", c).stdout]
