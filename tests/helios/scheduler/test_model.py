"""Shared records: round trips through JSON and msgpack, validation of enumerations."""

import json

import msgpack
import pytest

from helios.model import (
    ACTIVE_STATES,
    FINISHED_STATES,
    TASK_STATES,
    Assignment,
    JobRecord,
    NodeInfo,
    Task,
    TaskStatus,
)
from helios.spec import loads

SPEC = loads("name: web\nimage: local/busybox:1\nports: {http: 8080}\n")


def wire(d):
    """What a record looks like after msgpack and after JSON."""
    return msgpack.unpackb(msgpack.packb(d)), json.loads(json.dumps(d))


@pytest.mark.parametrize("record", [
    NodeInfo(name="n1", address="127.0.0.1:7101", cpus=2.0, memory=1 << 30,
             labels={"zone": "a"}, status="down", down_since=12.5, runtime="process"),
    Assignment(id="web-1a2b", job="web", version=3, node="n1", index=1, cpus=0.25,
               memory=64 << 20, ports={"http": 8080}, desired="stop", fingerprint="ab",
               created=5.0, spec=SPEC),
    TaskStatus(id="web-1a2b", node="n1", job="web", state="running", healthy=True,
               container="3f2c", ports={"http": 21004}, exit_code=None, reason="",
               since=1.0, started=1.0, finished=None, updated=2.0, restarts=1),
    JobRecord(spec=SPEC, version=2, stopped=True, parent="cronjob", failed_version=2,
              previous=SPEC.replace(image="old"), created=3.0),
])
def test_round_trip(record):
    for data in wire(record.to_dict()):
        again = type(record).from_dict(data)
        assert again == record
        assert again.to_dict() == record.to_dict()


def test_unknown_keys_are_ignored_for_upgrades():
    d = NodeInfo(name="n").to_dict() | {"future_field": 1}
    assert NodeInfo.from_dict(d).name == "n"


def test_enumerations_are_checked():
    with pytest.raises(ValueError, match="task state"):
        TaskStatus(id="t", node="n", state="sleeping")
    with pytest.raises(ValueError, match="node status"):
        NodeInfo(name="n", status="sideways")
    with pytest.raises(ValueError, match="desired state"):
        Assignment(id="t", job="j", version=1, node="n", desired="maybe")


def test_states_partition():
    assert set(TASK_STATES) == {"pending", "pulling", "starting", "healthchecking",
                                "running", "stopping", "stopped", "exited", "failed", "lost"}
    assert FINISHED_STATES | ACTIVE_STATES | {"lost"} == set(TASK_STATES)
    assert TaskStatus(id="t", node="n", state="exited").finished_state
    assert Task is Assignment
