"""Path builders for the layout in the README's "Coordination" section.

Paths are relative to the store's root (default `/helios`) and start with `/`. Build them
here, never by hand elsewhere, so the layout lives in one place.
"""

from __future__ import annotations

import re

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")

CLUSTER_ID = "/cluster-id"
CONDUCTORS = "/conductors"
ELECTION = "/conductors/election"
EPOCH = "/conductors/epoch"
NODES = "/nodes"
JOBS = "/jobs"
ASSIGNMENTS = "/assignments"
STATUS = "/status"
HISTORY = "/history"
CRON = "/cron"
SERVICES = "/services"
DRAIN = "/drain"
ACL = "/acl"
ACL_TOKENS = "/acl/tokens"
AUDIT = "/audit"
SECRETS = "/secrets"


def check_name(name: str) -> str:
    """Refuse names that would escape their directory or break the layout ("/", "..")."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"invalid name for a store path: {name!r}")
    return name


def is_name(name: str) -> bool:
    """Whether `check_name` takes `name` (for names read from the store: a child a
    reader cannot use is skipped, not fatal)."""
    return _NAME.fullmatch(name) is not None


def node(name: str) -> str:
    """A node's record: address, resources, labels."""
    return f"{NODES}/{check_name(name)}"


def node_up(name: str) -> str:
    """A node's ephemeral presence: exists while its session lives."""
    return f"{node(name)}/up"


def job(name: str) -> str:
    """A job spec and its version."""
    return f"{JOBS}/{check_name(name)}"


def assignments(node_name: str) -> str:
    """The directory of a node's assignments."""
    return f"{ASSIGNMENTS}/{check_name(node_name)}"


def assignment(node_name: str, task_id: str) -> str:
    """Desired state: task `task_id` runs on `node_name`."""
    return f"{assignments(node_name)}/{check_name(task_id)}"


def statuses(node_name: str) -> str:
    """The directory of a node's task reports."""
    return f"{STATUS}/{check_name(node_name)}"


def status(node_name: str, task_id: str) -> str:
    """Last reported state of one task."""
    return f"{statuses(node_name)}/{check_name(task_id)}"


def secret(name: str) -> str:
    """One secret, sealed (helios.secrets.store): never its value in clear."""
    return f"{SECRETS}/{check_name(name)}"


def history(job_name: str) -> str:
    """Directory of a job's task events (children are sequential)."""
    return f"{HISTORY}/{check_name(job_name)}"


def history_event_prefix(job_name: str) -> str:
    """Prefix to create a sequential history event with."""
    return f"{history(job_name)}/e-"


def cron(job_name: str) -> str:
    """Last fired tick of a cron job."""
    return f"{CRON}/{check_name(job_name)}"


def drain(node_name: str) -> str:
    """The operator's drain and eligibility record of a node (conductor/drain.py)."""
    return f"{DRAIN}/{check_name(node_name)}"


def services(job_name: str) -> str:
    """Directory of a service job's healthy endpoints."""
    return f"{SERVICES}/{check_name(job_name)}"


def service_node(job_name: str, node_name: str) -> str:
    """Directory of the endpoints one node publishes for a service job. The conductor
    creates it when it assigns the job's first task to the node, with an ACL that lets
    only that node (and the conductors) create or delete in it: a node's credential
    cannot withdraw or fake another node's endpoints."""
    return f"{services(job_name)}/{check_name(node_name)}"


def service(job_name: str, node_name: str, task_id: str) -> str:
    """One healthy endpoint (ephemeral), under the directory of the node that runs it."""
    return f"{service_node(job_name, node_name)}/{check_name(task_id)}"


def acl_token(name: str) -> str:
    """One ACL token's record (name, role, hash of its secret)."""
    return f"{ACL_TOKENS}/{check_name(name)}"


def audit_prefix() -> str:
    """Prefix to create a sequential audit entry (a batch of records) with."""
    return f"{AUDIT}/b-"


def election_prefix() -> str:
    """Prefix of the ephemeral sequential election candidates."""
    return f"{ELECTION}/c-"


def sequence_of(name: str) -> int:
    """The counter a sequential create appended to `name` (the last 10 digits)."""
    return int(name[-10:])


def parent(path: str) -> str:
    """The parent of a relative path ("/" for top-level entries)."""
    head = path.rsplit("/", 1)[0]
    return head or "/"


def basename(path: str) -> str:
    """Last segment of a path."""
    return path.rsplit("/", 1)[1]


def normalize(path: str) -> str:
    """Canonical relative form: one leading slash, no trailing slash, no empty segments."""
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ValueError(f"invalid store path: {path!r}")
    return "/" + "/".join(parts)
