"""How Helios's processes talk: actor names, message handlers, and where to find whom.

This is the contract between the conductor, the node daemons and the CLI, all of which
are actor systems (see `actors`). Records travel as the `to_dict()` of `helios.model`
classes. Keep this file the single place that names a handler another process calls.

Node daemon (`helios node`): actor `node` in the daemon's system.
  assign(epoch, generation, assignments) -> {"epoch", "generation", "accepted"}
      `assignments` is the COMPLETE desired set for this node (Assignment dicts, each with
      its "spec"); the node reconciles its containers to it (level-triggered). The same
      set is in the store: /assignments/<node> holds {"epoch", "generation"} and its
      children the Assignment dicts, so a node that starts while no conductor runs (or
      missed a push) reads it there and keeps the newer (epoch, generation). The epoch
      is checked against the store's /conductors/epoch: an older one is refused with
      RemoteError(type_name "StaleEpoch"), a newer one (no leader holds it) or one the
      node cannot check with "UnverifiedEpoch". Within one epoch, a generation older
      than the newest is ignored.
  statuses() -> [TaskStatus dict, ...]      every task the node knows, with its last state
  info() -> NodeInfo dict + {"cpus_free", "memory_free", "tasks"}
  logs(task_id, since=None, tail=None) -> {"lines": [str, ...], "cursor": str | None}
      `cursor` is opaque and goes back as `since` to read only what came after (the
      CLI's --follow polls with it); a number as `since` counts lines (older clients).

Conductor (`helios conductor`): actor `conductor` in the conductor's system.
  Called by nodes:
    task_events(node, events)      TaskStatus dicts, oldest first; nodes buffer them while
                                   no conductor is reachable and replay them in order
  Called by the CLI (names follow docs/cli.md):
    job_run(spec) -> {"name", "version", "changed"}      spec: the job file as a dict
                                   (a new version adds "unplaced": [{"index", "reason"}]
                                   and "failures": [reason]: what placing it finds wrong)
    job_plan(spec) -> {"name", "version", "changed", "changes", "place", "stop",
                       "update", "unplaced", "failures", "plan"}    nothing is written
    job_scale(name, count) / job_revert(name, version) -> like job_run
                                   (VersionNotFound for a version not kept)
    job_versions(name) -> [{"version", "submitted", "current", "stable", "failed",
                            "changes"}] newest first
    job_inspect(name) -> {"name", "version", "spec"}
    job_ls() -> [{"name", "kind", "count", "running", "version", "status"}]
    job_status(name) -> docs/json.md `job status --json` shape
    job_stop(name) / job_rm(name) -> {"name", ...}
                                   (job_rm of a cron or parameterized job adds "runs":
                                   its runs, which stop and are collected once finished)
    job_history(name) -> [event dict, ...] newest last
    job_logs(name, task=None, since=None, tail=None) -> {"lines", "cursor", "missing",
                                                          "tasks"}
                                   (with several tasks, `cursor` maps task id -> cursor;
                                   `missing`: [{"task", "node", "reason"}] left out)
    job_dispatch(name, payload=None, idempotency_key=None) -> {"job", "run", "created"}
    nodes() -> docs/json.md `nodes --json` shape
    node_rm(name, force=False) -> {"name", "removed", "was_up", "tasks", "kept"}
                                   forget a node (record, presence, assignments,
                                   statuses); refused with NodeUp while its session
                                   lives unless `force`, NodeNotFound if unknown.
                                   `kept`: finished batch tasks whose records stay
    endpoints(name) -> docs/json.md `endpoints --json` shape
    leader() -> {"leader": bool, "name", "url", "epoch"}
    acl_bootstrap() -> {"name", "role", "secret"}     once: ACLs on, first management token
    acl_token_create(name, role) -> {"name", "role", "secret"}
    acl_token_ls() -> [{"name", "role", "created"}]   (never a secret nor its hash)
    acl_token_rm(name) -> {"name", "removed"}
    audit(since=None, limit=10000) -> [audit record, ...] oldest first (security/audit.py)
  Who may call what is the authorization table (helios/security/authz.py), checked by
  the actor layer before any handler runs; no handler checks a role itself.
  A standby conductor answers the CLI handlers with RemoteError(type_name "NotLeader",
  message = the leader's actor URL, or "" when no leader is known); clients retry there.

Where to find the leader: the leader writes LEADER_PATH (fenced by its epoch) with
{"name", "url", "epoch"}; clients with `--zk` read it.
"""

from __future__ import annotations

import os
from typing import Any

import actors

NODE_ACTOR = "node"
CONDUCTOR_ACTOR = "conductor"
LEADER_PATH = "/conductors/leader"
DEFAULT_CONDUCTOR = "127.0.0.1:7070"

#: environment variables that secure the actor network between Helios processes
ENV_SECRET = "HELIOS_CLUSTER_SECRET"
#: a file holding the cluster secret: unlike a variable, it is not in /proc/<pid>/environ
#: for any process of the same user to read, nor inherited by children
ENV_SECRET_FILE = "HELIOS_CLUSTER_SECRET_FILE"
ENV_TLS_CERT = "HELIOS_TLS_CERT"
ENV_TLS_KEY = "HELIOS_TLS_KEY"
ENV_TLS_CA = "HELIOS_TLS_CA"
#: `name=value,...` overrides of the actor network's limits (see `LIMITS`)
ENV_LIMITS = "HELIOS_LIMITS"

#: the limits an operator may set through HELIOS_LIMITS, with their type; the defaults
#: are `actors.SystemConfig`'s, and the README's "Limits" table lists them all
LIMITS: dict[str, type] = {
    "max_frame": int, "send_queue": int, "max_queued_bytes": int,
    "heartbeat_interval": float, "heartbeat_timeout": float, "handshake_timeout": float,
    "connect_timeout": float, "frame_timeout": float, "max_connections": int,
    "max_connections_per_host": int, "max_connection_rate": float,
    "max_receive_buffer": int, "max_mailbox": int,
    "max_monitors": int,
}


class StaleEpochRefused(actors.Refusal):
    """A node's refusal of an instruction from a conductor whose leadership epoch is
    older than one seen (the store's own fencing error is
    `helios.coordination.errors.StaleEpoch`).

    A refusal: the asker gets RemoteError(type_name "StaleEpoch", the wire name
    docs/wire.md gives it), the actor goes on."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message, type_name="StaleEpoch")


class UnverifiedEpoch(actors.Refusal):
    """An instruction whose epoch the node could not confirm as the store's current one
    (newer than the store's, or the store unreachable). Not a reason to step down."""


class NotLeader(actors.Refusal):
    """This conductor is a standby; the message is the leader's URL ("" if unknown)."""


#: the shortest HELIOS_CLUSTER_SECRET accepted (it keys the handshake's HMAC and the
#: ZooKeeper credentials derived from it)
MIN_SECRET = 16


def network_options(env: dict[str, str] | None = None, *, role: str = "cli",
                    name: str | None = None, tokens: Any = None, audit: Any = None,
                    token: str = "") -> dict[str, Any]:
    """`actors.open_system` options that secure the Helios network, for a process of
    `role` ("conductor", "node", "cli"; solo is a conductor) named `name`.

    HELIOS_TLS_CERT/KEY/CA turn on mutual TLS: every peer then proves its role and name
    with a certificate from the cluster's CA (`helios tls cert create`), and this
    process's own certificate must name its role (and, for a node, its name).
    HELIOS_CLUSTER_SECRET (at least MIN_SECRET characters) turns on mutual HMAC
    authentication of each handshake: a trusted-network mode, where any holder of the
    secret may act as any daemon. The policy is `helios.security.authz.HeliosPolicy`
    (the authorization table); a conductor gives it its `tokens` (TokenCache) and
    `audit` (AuditLog); a client gives its ACL `token`. Secrets never come from the
    command line, where `ps` would show them.
    """
    from helios.security.authz import HeliosPolicy

    env = dict(os.environ if env is None else env)
    opts: dict[str, Any] = parse_limits(env.get(ENV_LIMITS, ""))
    secret = read_secret_file(env[ENV_SECRET_FILE]) if env.get(ENV_SECRET_FILE) \
        else env.get(ENV_SECRET)
    if secret:
        if len(secret) < MIN_SECRET:
            raise ValueError(f"the cluster secret must be at least {MIN_SECRET} characters "
                             f"(it has {len(secret)}); make one with `openssl rand -hex 24`")
        opts["secret"] = secret
    cert, key, ca = env.get(ENV_TLS_CERT), env.get(ENV_TLS_KEY), env.get(ENV_TLS_CA)
    if cert and key and ca:
        check_own_certificate(cert, role, name)
        try:
            opts["tls"] = actors.tls_config(cert, key, ca)
        except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
            raise ValueError(f"TLS: cannot load {cert}, {key} or {ca}: {e}") from None
    elif cert or key or ca:
        raise ValueError(f"set all of {ENV_TLS_CERT}, {ENV_TLS_KEY} and {ENV_TLS_CA} for TLS "
                         "(or --tls-cert, --tls-key and --tls-ca)")
    opts["policy"] = HeliosPolicy(
        tls="tls" in opts,
        resolve=tokens.resolve if tokens is not None else None,
        acl_enabled=tokens.enabled if tokens is not None else None,
        version=(lambda: tokens.version) if tokens is not None else None,
        audit=audit.record if audit is not None else None)
    if token:
        opts["credential"] = token
    return opts


def read_secret_file(path: str) -> str:
    """The secret in `path` (surrounding whitespace dropped); ValueError in one line."""
    try:
        with open(path, encoding="utf-8") as f:
            secret = f.read().strip()
    except OSError as e:
        raise ValueError(f"{ENV_SECRET_FILE}: cannot read {path}: {e.strerror}") from None
    if not secret:
        raise ValueError(f"{ENV_SECRET_FILE}: {path} is empty")
    return secret


def check_own_certificate(cert: str, role: str, name: str | None) -> None:
    """A daemon refuses to start with a certificate that names another identity: its
    peers would treat it as that one (a node certificate of another name, a cli one)."""
    from helios.security.tls import TLSError, read_identity

    if role == "cli":
        return
    try:
        ident = read_identity(cert)
    except TLSError as e:
        raise ValueError(str(e)) from None
    if ident.role != role:
        raise ValueError(f"{cert} is a {ident.role} certificate ({ident}); a {role} needs "
                         f"one made with `helios tls cert create --role {role}`")
    if role == "node" and name is not None and ident.name != name:
        raise ValueError(f"{cert} names node {ident.name!r}, but this node is {name!r}: "
                         "a node may act only as the node its certificate names")


def parse_limits(text: str) -> dict[str, int | float]:
    """`frame_timeout=5,max_connections=100` -> options; ValueError naming what is wrong."""
    out: dict[str, int | float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in LIMITS:
            raise ValueError(f"{ENV_LIMITS}: {item!r} is not NAME=VALUE with NAME one of "
                             f"{', '.join(sorted(LIMITS))}")
        try:
            value = LIMITS[key](raw.strip())
        except ValueError:
            raise ValueError(f"{ENV_LIMITS}: {key} must be a {LIMITS[key].__name__}, "
                             f"not {raw.strip()!r}") from None
        if value <= 0:
            raise ValueError(f"{ENV_LIMITS}: {key} must be positive, not {value}")
        out[key] = value
    return out


def conductor_url(address: str) -> str:
    """`host:port` (or a full URL) -> the conductor actor's URL."""
    if "://" in address:
        return address if address.rstrip("/").endswith(f"/{CONDUCTOR_ACTOR}") else \
            f"{address.rstrip('/')}/{CONDUCTOR_ACTOR}"
    return f"tcp://{address}/{CONDUCTOR_ACTOR}"
