"""Who may do what: the authorization table of the Helios network, in one place.

Every request that reaches a Helios process from another one passes the actor layer's one
gate (`actors.Policy`, called before any handler runs, system messages included), and
every HTTP request passes the same `decide` before its route runs. No handler checks a
role by itself. As in Kubernetes' authorizer: one decision over (subject, kind, target,
handler), with a reason; and, like its NodeRestriction admission plugin, one check of
what only the identity can vouch for (`NodeRestriction`: a node reports only for itself).

Subjects (`Subject.role`):

- `conductor`, `node`: a daemon, by the role in its certificate (its name too);
- `daemon`: a peer without a certificate (no TLS configured): it may do what conductors
  and nodes do, since nothing tells them apart (the shared secret, if any, is all it
  proved). Trusted networks only;
- `management`, `operator`, `reader`: a person or script, by the role of the ACL token it
  presented (with a `cli` certificate, or without TLS); while ACLs are off (not
  bootstrapped) every person is `management`, as in Nomad;
- `anonymous`: a person without a token once ACLs are on (refused everything but
  `acl_bootstrap`, which then answers that ACLs are on);
- `invalid`: a token that is unknown or revoked (refused everything).

`TABLE` maps (actor, handler) to the subjects that may send it (tell or ask); `lookup`
of a public actor is allowed to every subject that may send it anything; `stop`,
`kill` and `monitor` are allowed to nobody (no Helios process stops or watches
another's actors); actors not in the table are unreachable. docs/security.md shows the
same table, and tests/security/test_authz_table.py checks that both agree.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import actors
from helios.protocol import CONDUCTOR_ACTOR, NODE_ACTOR

log = logging.getLogger(__name__)

__all__ = ["PEOPLE", "TABLE", "HeliosPolicy", "Subject", "decide", "needs_text"]

#: the name of the anonymous subject while a conductor has not read the ACL state yet
LOADING = "(ACL state not loaded)"
#: how the refusal of a request in that window starts: clients (`helios.client`) retry
#: it for a while, as they retry a failover, since a conductor that just started reads
#: the ACL state within moments
NOT_LOADED = "this conductor has not read the ACL state from the store yet"
#: certificate roles (the OU of a `helios tls cert create` certificate)
CERT_ROLES = ("conductor", "node", "cli")
#: token roles, from least to most
PEOPLE = ("reader", "operator", "management")

_READ = frozenset({"conductor", "reader", "operator", "management"})
_WRITE = frozenset({"conductor", "operator", "management"})
_MANAGE = frozenset({"management"})
_NODES = frozenset({"node", "daemon"})
_CONDUCTORS = frozenset({"conductor", "daemon"})

#: (actor, handler) -> who may send it. The conductor's handlers for people follow
#: docs/security.md: reader lists and reads; operator also changes jobs, nodes and
#: secrets; management also manages tokens and reads the audit log.
TABLE: dict[tuple[str, str], frozenset[str]] = {
    # what nodes send the conductor (NodeRestriction: only for themselves)
    (CONDUCTOR_ACTOR, "task_events"): _NODES,
    # reading
    (CONDUCTOR_ACTOR, "job_ls"): _READ,
    (CONDUCTOR_ACTOR, "job_status"): _READ,
    (CONDUCTOR_ACTOR, "job_history"): _READ,
    (CONDUCTOR_ACTOR, "job_logs"): _READ,
    (CONDUCTOR_ACTOR, "nodes"): _READ,
    (CONDUCTOR_ACTOR, "endpoints"): _READ,
    (CONDUCTOR_ACTOR, "leader"): _READ | _NODES,
    (CONDUCTOR_ACTOR, "events"): _READ,
    (CONDUCTOR_ACTOR, "metrics"): _READ,  # GET /metrics (the HTTP face only)
    (CONDUCTOR_ACTOR, "job_plan"): _READ,  # a dry run: nothing is written
    (CONDUCTOR_ACTOR, "job_versions"): _READ,
    (CONDUCTOR_ACTOR, "job_inspect"): _READ,  # registry passwords are redacted
    (CONDUCTOR_ACTOR, "node_drain_status"): _READ,
    # changing (a conductor forwards what its HTTP API authorized)
    (CONDUCTOR_ACTOR, "job_run"): _WRITE,
    (CONDUCTOR_ACTOR, "job_stop"): _WRITE,
    (CONDUCTOR_ACTOR, "job_rm"): _WRITE,
    (CONDUCTOR_ACTOR, "job_dispatch"): _WRITE,
    (CONDUCTOR_ACTOR, "job_scale"): _WRITE,
    (CONDUCTOR_ACTOR, "job_revert"): _WRITE,
    (CONDUCTOR_ACTOR, "node_rm"): _WRITE,
    (CONDUCTOR_ACTOR, "node_drain"): _WRITE,
    (CONDUCTOR_ACTOR, "node_eligibility"): _WRITE,
    (CONDUCTOR_ACTOR, "rebalance"): _WRITE,
    (CONDUCTOR_ACTOR, "secret_set"): _WRITE,
    (CONDUCTOR_ACTOR, "secret_ls"): _WRITE,
    (CONDUCTOR_ACTOR, "secret_rm"): _WRITE,
    (CONDUCTOR_ACTOR, "secret_rewrap"): _MANAGE,  # after a key rotation
    # tokens and the audit log
    (CONDUCTOR_ACTOR, "acl_bootstrap"): frozenset({"anonymous", *PEOPLE}),
    (CONDUCTOR_ACTOR, "acl_token_create"): _MANAGE,
    (CONDUCTOR_ACTOR, "acl_token_ls"): _MANAGE,
    (CONDUCTOR_ACTOR, "acl_token_rm"): _MANAGE,
    (CONDUCTOR_ACTOR, "audit"): _MANAGE,
    # what only the leader conductor sends a node (which checks the epoch with the store)
    (NODE_ACTOR, "assign"): _CONDUCTORS,
    (NODE_ACTOR, "statuses"): _CONDUCTORS,
    (NODE_ACTOR, "logs"): _CONDUCTORS,
    (NODE_ACTOR, "info"): _CONDUCTORS,
    (NODE_ACTOR, "ping"): _CONDUCTORS,
}
#: the actors another process may address at all
PUBLIC_ACTORS = frozenset(actor for actor, _ in TABLE)
#: message kinds of the table; every other kind (stop, kill, monitor) is refused to all
MESSAGE_KINDS = frozenset({"tell", "ask"})
#: handlers whose use is an operator action, recorded by the audit log when allowed
#: (refusals are always recorded)
_TASK_EVENTS = (CONDUCTOR_ACTOR, "task_events")
AUDITED = frozenset(key for key, who in TABLE.items()
                    if key[0] == CONDUCTOR_ACTOR and who in (_WRITE, _MANAGE)) | {
    (CONDUCTOR_ACTOR, "acl_bootstrap")}


@dataclass(frozen=True, slots=True)
class Subject:
    """Who a request is from, as the table knows it: one role, or several for a peer
    that nothing tells apart (without TLS, a daemon or a person: `daemon` plus what a
    person without a token is)."""

    roles: tuple[str, ...]  # see the module docstring
    name: str = ""     # the certificate's or the token's name
    via: str = ""      # how it came: "cli:alice at 10.0.0.9:53211", "http 10.0.0.9"
    token: str = ""    # the token's name, when one was presented

    @property
    def role(self) -> str:
        return "+".join(self.roles)

    def __str__(self) -> str:
        if self.token:
            who = f"token {self.token!r} ({self.role})"
        elif self.name and self.roles[0] in CERT_ROLES:
            who = f"{self.roles[0]}:{self.name}"
        else:
            who = self.role
        return f"{who} via {self.via}" if self.via and self.via != who else who


def needs_text(allowed: frozenset[str]) -> str:
    """What would allow a request: the token roles, or the daemons, that may send it."""
    people = [r for r in PEOPLE if r in allowed]
    daemons = sorted(r for r in allowed if r in ("conductor", "node"))
    parts = []
    if people:
        parts.append(f"a token with role {' or '.join(people)}")
    if daemons:
        parts.append(f"a {' or '.join(daemons)} certificate")
    return " or ".join(parts) if parts else "nothing (no one may)"


def decide(subject: Subject, kind: str, target: str, method: str) -> str | None:
    """The table's answer: None to allow, or why not and what would allow it."""
    roles = subject.roles
    if len(target) > 100 or len(method) > 100:  # names from the wire: keep answers short
        target, method = target[:100], method[:100]
    if "invalid" in roles:
        return ("the token presented is not valid (unknown or revoked); get a new one "
                "from a management token holder")
    if kind not in MESSAGE_KINDS and kind != "lookup":
        return f"{kind} is not allowed from another process (only tell, ask, lookup)"
    if target not in PUBLIC_ACTORS:
        return (f"{target!r} is internal to its process; only "
                f"{', '.join(sorted(PUBLIC_ACTORS))} are reachable")
    if kind == "lookup":
        if any(not who.isdisjoint(roles) for (actor, _), who in TABLE.items()
               if actor == target):
            return None
        return f"{subject.role} may send nothing to {target}"
    allowed = TABLE.get((target, method))
    if allowed is None:
        return f"{target}.{method} is not in the authorization table"
    if not allowed.isdisjoint(roles):
        return None
    if "anonymous" in roles and subject.name == LOADING:
        return f"{NOT_LOADED} (is the store reachable?); try again"
    if "anonymous" in roles:
        return (f"ACLs are on and no token was sent: {target}.{method} needs "
                f"{needs_text(allowed)} (--token-file F or HELIOS_TOKEN)")
    return f"{target}.{method} needs {needs_text(allowed)}"


class NodeRestriction:
    """What a node's certificate vouches for: it reports only as itself. (That each
    report is about a task assigned to it is the conductor's check, which knows the
    assignments: `NodeSync.merge_reports` drops the others.)"""

    @staticmethod
    def check(subject: Subject, target: str, method: str, args: list[Any],
              kwargs: dict[str, Any]) -> str | None:
        if subject.roles != ("node",) or (target, method) != (CONDUCTOR_ACTOR, "task_events"):
            return None
        claimed = args[0] if args else kwargs.get("node")
        if claimed != subject.name:
            return (f"node {subject.name} may report only for itself, not for "
                    f"{str(claimed)[:100]!r}")
        return None


#: resolves a token's secret -> (token name, role), None if unknown or revoked
TokenResolver = Callable[[str], "tuple[str, str] | None"]


class HeliosPolicy(actors.Policy):
    """The `actors.Policy` of every Helios process (see the module docstring).

    `tls`: whether this process runs mutual TLS (then every peer must present a
    certificate naming a Helios role). `acl_enabled` and `resolve`: the ACL state and
    the token lookup (a conductor's `TokenCache`; None elsewhere: people then have no
    business with this process). `audit`: where operator actions and refusals are
    recorded (a conductor's `AuditLog`)."""

    def __init__(self, *, tls: bool, resolve: TokenResolver | None = None,
                 acl_enabled: Callable[[], bool | None] | None = None,
                 audit: Callable[[Subject, str, str, bool, str], None] | None = None,
                 version: Callable[[], int] | None = None) -> None:
        """`audit(subject, action, what, allowed, reason)` records one decision.
        `version()` changes whenever the ACL state or a token does (the TokenCache's
        counter): a peer's subject is derived once per connection and version."""
        self.tls = tls
        self.resolve = resolve
        self.acl_enabled = acl_enabled
        self.audit = audit
        self.version = version

    # -- who ----------------------------------------------------------------------------
    def subject(self, peer: actors.PeerInfo) -> Subject:
        """Who `peer` is (see the module docstring); cached on the connection."""
        return self._memo(peer)[1]

    def _memo(self, peer: actors.PeerInfo) -> tuple[Any, Subject, dict[Any, str | None]]:
        """(key, subject, decisions so far) of a connection, valid while `key` is: a
        daemon's certificate never changes; a person's subject changes with the ACL
        state and the tokens (`version`). Decisions are kept for the table's rows only,
        so a peer sending made-up names cannot grow the cache."""
        daemon = peer.role in ("conductor", "node") and not peer.credential
        key = 0 if daemon else (self.version() if self.version is not None else None)
        memo = peer.memo
        if key is not None and memo is not None and memo[0] == key:
            return memo
        fresh: tuple[Any, Subject, dict[Any, str | None]] = (key, self._subject(peer), {})
        if key is not None:
            peer.memo = fresh
        return fresh

    def _subject(self, peer: actors.PeerInfo) -> Subject:
        via = str(peer)
        if peer.credential:
            return self.token_subject(peer.credential, via)
        if peer.role in ("conductor", "node"):
            return Subject((peer.role,), peer.name, via)
        person = self.person(via)
        if peer.role is None and not self.tls:
            name = LOADING if person.name == LOADING else peer.name
            return Subject(("daemon", *person.roles), name, via)
        return person

    def person(self, via: str) -> Subject:
        """A person or script without a token: everything while ACLs are off."""
        enabled = self.acl_enabled() if self.acl_enabled is not None else False
        if enabled is False:
            return Subject(("management",), "anonymous", via)
        return Subject(("anonymous",), "" if enabled else LOADING, via)

    def token_subject(self, secret: str | None, via: str) -> Subject:
        """The subject of a request with this token (or none: `person`)."""
        if not secret:
            return self.person(via)
        found = self.resolve(secret) if self.resolve is not None else None
        if found is None:
            return Subject(("invalid",), via=via, token="?")
        return Subject((found[1],), found[0], via, token=found[0])

    # -- the actor layer's hooks --------------------------------------------------------
    def connected(self, peer: actors.PeerInfo, dialed: str | None) -> str | None:
        if not self.tls:
            return None
        if peer.role not in CERT_ROLES:
            return ("its certificate names no Helios role (OU conductor, node or cli); "
                    "issue one with `helios tls cert create`")
        if dialed is not None and peer.role == "cli":
            return "a cli certificate never serves; expected a conductor or a node here"
        return None

    def credential_for(self, role: str | None, name: str | None, dialed: str | None) -> bool:
        """A token goes only to a conductor: with TLS, to a peer whose certificate says
        so (a node, or anyone else, answering at a conductor's address gets none)."""
        return not self.tls or role == "conductor"

    def authorize(self, peer: actors.PeerInfo, kind: str, target: str, method: str
                  ) -> str | None:
        _, subject, decisions = self._memo(peer)
        row = (kind, target, method)
        try:
            return decisions[row]
        except KeyError:
            why = decide(subject, kind, target, method)
            if (target, method) in TABLE or (kind != "tell" and kind != "ask"
                                             and target in PUBLIC_ACTORS):
                decisions[row] = why
            return why

    def admit(self, peer: actors.PeerInfo, target: str, method: str, args: list[Any],
              kwargs: dict[str, Any]) -> str | None:
        """Called for the tells and asks `authorize` allowed: node restriction, and the
        audit record of an allowed operator action (with its target, e.g. the job)."""
        row = (target, method)
        if row not in AUDITED and row != _TASK_EVENTS:
            return None
        subject = self.subject(peer)
        why = NodeRestriction.check(subject, target, method, args, kwargs)
        if why is None and self._audited(subject, target, method):
            self._record(subject, "ask", target, method, detail(method, args, kwargs), None)
        return why

    def refused(self, peer: actors.PeerInfo, kind: str, target: str, method: str,
                args: list[Any], kwargs: dict[str, Any], reason: str) -> None:
        """Every refusal is audited, with what it was about."""
        self._record(self.subject(peer), kind, target, method,
                     detail(method, args, kwargs), reason)

    def check(self, subject: Subject, target: str, method: str, args: list[Any] | None = None,
              kwargs: dict[str, Any] | None = None) -> str | None:
        """`authorize` and `admit` at once, for a request that did not come through the
        actor layer (the HTTP API): None to allow, or why not."""
        args, kwargs = list(args or []), dict(kwargs or {})
        why = decide(subject, "ask", target, method) or NodeRestriction.check(
            subject, target, method, args, kwargs)
        if why is not None or self._audited(subject, target, method):
            self._record(subject, "ask", target, method, detail(method, args, kwargs), why)
        return why

    @staticmethod
    def _audited(subject: Subject, target: str, method: str) -> bool:
        # a conductor forwards what its own HTTP API authorized (and recorded) already
        return (target, method) in AUDITED and subject.roles != ("conductor",)

    def _record(self, subject: Subject, kind: str, target: str, method: str, what: str,
                why: str | None) -> None:
        if self.audit is not None:
            action = f"{target}.{method}" if method else f"{kind} {target}"
            self.audit(subject, action, what, why is None, why or "")


def detail(method: str, args: list[Any], kwargs: dict[str, Any]) -> str:
    """What an action was about, for the audit log: the job, node or token it names
    (never other arguments: a secret's value must not reach the log)."""
    first = args[0] if args else kwargs.get("name", kwargs.get("spec"))
    if isinstance(first, dict):
        first = first.get("name")
    return first[:200] if isinstance(first, str) else ""
