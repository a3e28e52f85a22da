"""The job file (docs/job-file.md): the contract's example, defaults, every problem
reported, round trips."""

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helios.spec import (
    FrozenMap,
    JobSpec,
    SpecError,
    load_file,
    loads,
    run_spec,
    validate,
)

MIB = 1024 * 1024

# The job file example of the contract, verbatim.
CONTRACT_EXAMPLE = """\
name: web                      # [a-z0-9-], unique
kind: service                  # service | batch | cron | parameterized
image: local/busybox:1         # docker runtime; ignored by the process runtime
command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
env: {GREETING: hello}
count: 3                       # tasks (service); parallel runs (batch)
resources: {cpus: 0.25, memory: 64M}
ports: {http: {container: 8080}}          # host port picked by the node unless `host:` is given
constraints: {zone: a}                    # node labels that must match
spread: false                             # true: prefer spreading over packing
health: {http: {port: http, path: /}, interval: 1s, timeout: 1s}   # or tcp: {port: http}, or exec: [cmd...]
restart: {policy: on-failure, max: 5, backoff: 1s}                 # always | on-failure | never
update: {parallel: 1, deadline: 60s, auto_rollback: true}
grace: 3s                                 # after deregistering an endpoint, wait before stopping
schedule: "*/5 * * * *"                   # cron kind only
log: {driver: fluentd, options: {fluentd-address: 127.0.0.1:24224}}
registry_auth: {username: u, password: p} # for private registries
"""  # noqa: E501
SCHEDULE_LINE = 'schedule: "*/5 * * * *"                   # cron kind only\n'


def without_schedule(text: str = CONTRACT_EXAMPLE) -> str:
    return text.replace(SCHEDULE_LINE, "")


def test_contract_example_validates_as_service():
    spec = loads(without_schedule())
    assert spec.name == "web" and spec.kind == "service" and spec.count == 3
    assert spec.image == "local/busybox:1"
    assert spec.command == ("httpd", "-f", "-p", "8080", "-h", "/www")
    assert spec.env == {"GREETING": "hello"}
    assert spec.resources.cpus == 0.25 and spec.resources.memory == 64 * MIB
    assert spec.ports["http"].container == 8080 and spec.ports["http"].host is None
    assert spec.constraints == {"zone": "a"}
    assert spec.health is not None and spec.health.type == "http"
    assert (spec.health.port, spec.health.path) == ("http", "/")
    assert spec.health.interval == 1.0 and spec.health.timeout == 1.0
    assert (spec.restart.policy, spec.restart.max, spec.restart.backoff) == ("on-failure", 5, 1)
    assert (spec.update.parallel, spec.update.deadline, spec.update.auto_rollback) == \
        (1, 60.0, True)
    assert spec.grace == 3.0
    assert spec.log.driver == "fluentd"
    assert spec.log.options == {"fluentd-address": "127.0.0.1:24224"}
    assert spec.registry_auth is not None and spec.registry_auth.username == "u"
    assert "p" not in repr(spec.registry_auth).replace("username", "")


def test_contract_example_schedule_is_cron_only():
    # The contract's block lists every field; `schedule` is marked "cron kind only", so
    # as a service it is refused with exactly that reason, and as cron it validates.
    with pytest.raises(SpecError) as e:
        loads(CONTRACT_EXAMPLE)
    assert [str(p) for p in e.value.problems] == \
        ["schedule: only applies to kind cron (this job is service)"]
    spec = loads(CONTRACT_EXAMPLE.replace("kind: service ", "kind: cron    "))
    assert spec.kind == "cron" and spec.schedule == "*/5 * * * *"
    assert (spec.timezone, spec.overlap, spec.catch_up) == ("UTC", "skip", "one")


@pytest.mark.parametrize("health", [
    "{tcp: {port: http}}", "{exec: [wget, -q, -O-, 'http://127.0.0.1:8080/']}",
    "{exec: 'wget -q -O- http://127.0.0.1:8080/'}", "{http: {port: 8080}}",
])
def test_contract_health_alternatives(health):
    text = without_schedule().replace(
        "health: {http: {port: http, path: /}, interval: 1s, timeout: 1s}",
        f"health: {health}")
    spec = loads(text)
    assert spec.health is not None


@pytest.mark.parametrize("policy", ["always", "on-failure", "never"])
def test_contract_restart_policies(policy):
    spec = loads(without_schedule().replace("policy: on-failure", f"policy: {policy}"))
    assert spec.restart.policy == policy
    if policy == "never":
        assert spec.restart.max == 0


@pytest.mark.parametrize("kind", ["service", "batch", "cron", "parameterized"])
def test_contract_kinds(kind):
    text = f"name: k\nkind: {kind}\nimage: local/busybox:1\n"
    if kind == "cron":
        text += 'schedule: "*/5 * * * *"\n'
    assert loads(text).kind == kind


def test_json_is_accepted():
    spec = loads(json.dumps({"name": "j", "image": "local/busybox:1",
                             "resources": {"memory": "128M"}}))
    assert spec.resources.memory == 128 * MIB


def test_defaults_service():
    spec = loads("name: s\nimage: local/busybox:1\n")
    assert spec.kind == "service" and spec.count == 1
    assert spec.restart.policy == "always" and spec.restart.max is None
    assert (spec.update.parallel, spec.update.deadline, spec.update.auto_rollback) == \
        (1, 300.0, True)
    assert spec.grace == 3.0 and spec.log.driver == "json-file" and not spec.spread
    assert spec.schedule is None and spec.payload is None and spec.health is None
    assert spec.resources.cpus > 0 and spec.resources.memory >= 6 * MIB


def test_defaults_batch_and_health():
    spec = loads("name: b\nkind: batch\nimage: i\nports: {p: 80}\nhealth: {tcp: {port: p}}\n")
    assert spec.restart.policy == "on-failure" and spec.restart.max == 3
    assert spec.health.interval == 10.0 and spec.health.timeout == 2.0
    assert spec.health.start_grace >= 0 and spec.health.failures == 3
    assert spec.ports["p"].container == 80


def test_defaults_cron_and_parameterized():
    c = loads('name: c\nkind: cron\nimage: i\nschedule: "@hourly"\n')
    assert (c.timezone, c.overlap, c.catch_up) == ("UTC", "skip", "one")
    p = loads("name: p\nkind: parameterized\nimage: i\n")
    assert p.payload == "optional"
    p2 = loads("name: p\nkind: parameterized\nimage: i\npayload: required\n")
    assert p2.payload == "required"


def test_cron_fields():
    c = loads('name: c\nkind: cron\nimage: i\nschedule: "0 3 * * MON-FRI"\n'
              "timezone: Europe/Paris\noverlap: allow\ncatch_up: none\n")
    assert (c.timezone, c.overlap, c.catch_up) == ("Europe/Paris", "allow", "none")


def test_cron_requires_schedule():
    with pytest.raises(SpecError) as e:
        loads("name: c\nkind: cron\nimage: i\n")
    assert [p.path for p in e.value.problems] == ["schedule"]


MANY_MISTAKES = """
name: Web_1
kind: servce
image: local/busybox:1
count: -1
resources: {cpus: 0, memory: 64Q}
ports: {http: {container: 80000, host: 80}, api: {container: 1, host: 80}}
helth: {}
restart: {policy: sometimes, max: -2}
update: {parallel: 0, deadline: forever, auto_rollback: maybe}
grace: soon
timezone: Mars/Olympus
log: {driver: fluent}
payload: required
registry_auth: {username: u}
env: {1BAD: x, GOOD: {nested: no}}
"""


def test_every_problem_is_reported_with_its_path():
    with pytest.raises(SpecError) as e:
        loads(MANY_MISTAKES)
    got = {p.path: p.reason for p in e.value.problems}
    expected_paths = {
        "name", "kind", "count", "resources.cpus", "resources.memory",
        "ports.http.container", "ports.api.host", "helth", "restart.policy", "restart.max",
        "update.parallel", "update.deadline", "update.auto_rollback", "grace", "timezone",
        "log.driver", "payload", "registry_auth.password", "env.1BAD", "env.GOOD",
    }
    assert expected_paths <= set(got), sorted(expected_paths - set(got))
    assert got["resources.memory"].startswith('"64Q" is not a size')
    assert "did you mean 'health'" in got["helth"]
    assert "did you mean 'service'" in got["kind"]
    assert "did you mean 'fluentd'" in got["log.driver"]
    assert "host port 80 is also used by port" in got["ports.api.host"]
    text = str(e.value)
    assert text.startswith(f"job file is invalid ({len(e.value.problems)} problems)")
    assert 'resources.memory: "64Q" is not a size' in text


def test_not_a_mapping_and_bad_yaml():
    with pytest.raises(SpecError, match="must be a mapping"):
        loads("- a\n- b\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        loads("name: [unclosed\n")
    with pytest.raises(SpecError) as e:
        loads("{}")
    assert {p.path for p in e.value.problems} == {"name", "image"}


def test_health_port_must_be_declared():
    with pytest.raises(SpecError) as e:
        loads("name: h\nimage: i\nports: {http: 80}\nhealth: {http: {port: web, path: x}}\n")
    paths = [p.path for p in e.value.problems]
    assert paths == ["health.http.port", "health.http.path"]
    with pytest.raises(SpecError, match="exactly one of http, tcp or exec"):
        loads("name: h\nimage: i\nhealth: {interval: 1s}\n")


def test_command_string_is_split_like_a_shell():
    spec = loads("name: c\nimage: i\ncommand: sh -c 'echo hi; sleep 1'\n")
    assert spec.command == ("sh", "-c", "echo hi; sleep 1")


def test_env_and_labels_accept_scalars():
    spec = loads("name: e\nimage: i\nenv: {DEBUG: true, N: 3}\nconstraints: {gpu: true}\n")
    assert spec.env == {"DEBUG": "true", "N": "3"}
    assert spec.constraints == {"gpu": "true"}


def test_command_only_is_enough_for_the_process_runtime():
    spec = loads("name: p\ncommand: [sleep, '5']\n")
    assert spec.image is None and spec.command == ("sleep", "5")


def test_round_trip_and_immutability():
    spec = loads(without_schedule())
    data = spec.to_dict()
    assert json.loads(json.dumps(data)) == data
    again = JobSpec.from_dict(data)
    assert again == spec and hash(again) == hash(spec)
    assert again.fingerprint() == spec.fingerprint()
    with pytest.raises(AttributeError):
        spec.count = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.env["X"] = "y"  # type: ignore[index]


def test_fingerprint_ignores_count_but_not_image():
    spec = loads(without_schedule())
    fp = spec.fingerprint()
    same = [spec.replace(count=7), spec.replace(update=spec.update.__class__(parallel=3)),
            spec.replace(grace=10.0), spec.replace(spread=True)]
    for s in same:
        assert s.fingerprint() == fp
    different = [spec.replace(image="local/busybox:2"), spec.replace(command=("true",)),
                 spec.replace(env=FrozenMap({"A": "b"})),
                 spec.replace(resources=spec.resources.__class__(cpus=1.0)),
                 spec.replace(health=None),
                 spec.replace(log=spec.log.__class__())]
    for s in different:
        assert s.fingerprint() != fp


def test_field_order_does_not_matter():
    a = loads("name: o\nimage: i\nenv: {A: '1', B: '2'}\n")
    b = loads("image: i\nenv: {B: '2', A: '1'}\nname: o\n")
    assert a == b and a.fingerprint() == b.fingerprint()


def test_run_spec_makes_a_batch_child():
    parent = loads("name: thumb\nkind: parameterized\nimage: i\npayload: required\n")
    child = run_spec(parent, "a1b2", payload='{"x": 1}')
    assert child.kind == "batch" and child.name == "thumb-a1b2"
    assert child.env["HELIOS_PAYLOAD"] == '{"x": 1}' and child.payload is None


def test_load_file_reports_unreadable(tmp_path: Path):
    with pytest.raises(SpecError, match="cannot read"):
        load_file(str(tmp_path / "missing.yaml"))


def test_every_example_job_file_validates():
    root = Path(__file__).resolve().parents[3] / "examples" / "jobs"
    files = sorted(root.glob("*.yaml")) + sorted(root.glob("*.json"))
    names = {f.name for f in files}
    assert {"web.yaml", "batch.yaml", "cron.yaml", "dispatch.yaml"} <= names
    kinds = {load_file(str(f)).kind for f in files}
    assert kinds == {"service", "batch", "cron", "parameterized"}


names = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)


@given(name=names, count=st.integers(0, 50), cpus=st.sampled_from([0.1, 0.25, 1.0, 2.5]),
       mem=st.sampled_from(["6M", "64M", "1Gi", 10 * MIB]),
       env=st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True),
                           st.text(max_size=10), max_size=4))
def test_round_trip_property(name, count, cpus, mem, env):
    spec = validate({"name": name, "image": "x", "count": count, "env": env,
                     "resources": {"cpus": cpus, "memory": mem}})
    assert JobSpec.from_dict(spec.to_dict()) == spec


def test_duplicate_keys_are_reported_with_other_problems():
    with pytest.raises(SpecError) as e:
        loads("name: a\nimage: i\ncount: 2\nresources: {memory: 1G, memory: 2G}\n"
              "count: 3\nkind: nope\n")
    got = [str(p) for p in e.value.problems]
    assert "resources.memory: given twice (again at line 4); remove one" in got
    assert "count: given twice (again at line 5); remove one" in got
    assert any(p.startswith("kind:") for p in got)


def test_runs_of_long_named_jobs_round_trip():
    parent = loads(f"name: {'a' * 63}\nkind: parameterized\nimage: i\n")
    child = run_spec(parent, "0123456789abcdef")
    assert JobSpec.from_dict(child.to_dict()) == child
    with pytest.raises(SpecError, match="1-63 characters"):
        loads(f"name: {'a' * 64}\nimage: i\n")
