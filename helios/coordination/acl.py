"""ZooKeeper ACLs: who may write what, and where credentials come from.

With a credential configured, every znode Helios creates carries digest ACLs:

- conductors (identity `helios-conductor`) may read and write everything;
- every member of the cluster (identity `helios-reader`) may read everything;
- a node (identity `node-<name>`) may write only its own subtrees: `/nodes/<name>/**`
  (record and presence), `/status/<name>/**`, and `/services/<job>/<name>/**`, the
  directory of the endpoints it publishes for a job, which the conductor creates when it
  assigns the job to the node. `/services` and `/services/<job>` are the conductors'
  alone: ZooKeeper grants create and delete on a parent for all its children, so a
  shared directory would let any node delete or fake another node's endpoints.

Credentials are one line of text, read from the file named by `HELIOS_ZK_CREDENTIAL_FILE`
or from the variable `HELIOS_ZK_CREDENTIAL` (never from the command line, where `ps`
shows it):

- `conductor:<cluster-secret>` for conductors (the cluster secret: keep it to them);
- `node:<name>:<node-password>:<reader-password>:<conductor-digest>` for a node, issued
  by `issue_node_credential(cluster_secret, name)`. It holds no secret that lets the
  node act as a conductor or as another node: the passwords are HMACs of the cluster
  secret, and the conductor appears only as its (public) digest.

Known limit: `/nodes` and `/status` grant CREATE to every member, so a node could create
the subtree of a node name that was never registered; it can never change an existing
one it does not own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from kazoo.security import ACL, Id, Permissions

ENV_CREDENTIAL = "HELIOS_ZK_CREDENTIAL"
ENV_CREDENTIAL_FILE = "HELIOS_ZK_CREDENTIAL_FILE"

CONDUCTOR_USER = "helios-conductor"
READER_USER = "helios-reader"


def _derive(secret: str, purpose: str) -> str:
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def digest(user: str, password: str) -> str:
    """ZooKeeper's digest id for user:password (`user:base64(sha1(user:password))`)."""
    h = base64.b64encode(hashlib.sha1(f"{user}:{password}".encode()).digest()).decode()
    return f"{user}:{h}"


def node_user(name: str) -> str:
    return f"node-{name}"


@dataclass(frozen=True)
class Credential:
    """A parsed credential. `cluster_secret` is set for conductors only."""

    role: str                     # "conductor" or "node"
    name: str                     # node name; "conductor" for conductors
    auth: tuple[tuple[str, str], ...]  # (scheme, "user:password") pairs to authenticate with
    conductor_id: str             # digest id of the conductor identity
    reader_id: str                # digest id of the reader identity
    cluster_secret: str | None = None

    def node_id(self, name: str) -> str | None:
        """Digest id of node `name`, if this credential can compute it."""
        if self.cluster_secret is not None:
            return digest(node_user(name), _derive(self.cluster_secret, f"node:{name}"))
        if self.role == "node" and name == self.name:
            return self.own_id
        return None

    @property
    def own_id(self) -> str:
        scheme_user_pw = self.auth[0][1]
        user, pw = scheme_user_pw.split(":", 1)
        return digest(user, pw)

    def __repr__(self) -> str:  # never print secrets
        return f"Credential(role={self.role!r}, name={self.name!r})"


def conductor_credential(cluster_secret: str) -> Credential:
    """The credential of every conductor of the cluster."""
    if not cluster_secret:
        raise ValueError("empty cluster secret")
    cpw = _derive(cluster_secret, "conductor")
    rpw = _derive(cluster_secret, "reader")
    return Credential(
        role="conductor", name="conductor",
        auth=(("digest", f"{CONDUCTOR_USER}:{cpw}"), ("digest", f"{READER_USER}:{rpw}")),
        conductor_id=digest(CONDUCTOR_USER, cpw), reader_id=digest(READER_USER, rpw),
        cluster_secret=cluster_secret,
    )


def issue_node_credential(cluster_secret: str, name: str) -> str:
    """The credential line to give node `name` (store it in its credential file)."""
    from helios.coordination.paths import check_name

    check_name(name)
    npw = _derive(cluster_secret, f"node:{name}")
    rpw = _derive(cluster_secret, "reader")
    cid = digest(CONDUCTOR_USER, _derive(cluster_secret, "conductor")).split(":", 1)[1]
    return f"node:{name}:{npw}:{rpw}:{cid}"


def parse_credential(text: str) -> Credential:
    """Parse one credential line (see the module docstring)."""
    line = text.strip()
    kind, _, rest = line.partition(":")
    if kind == "conductor" and rest:
        return conductor_credential(rest)
    if kind == "node":
        parts = rest.split(":")
        if len(parts) == 4 and all(parts):
            name, npw, rpw, cdig = parts
            return Credential(
                role="node", name=name,
                auth=(("digest", f"{node_user(name)}:{npw}"),
                      ("digest", f"{READER_USER}:{rpw}")),
                conductor_id=f"{CONDUCTOR_USER}:{cdig}", reader_id=digest(READER_USER, rpw),
            )
    raise ValueError("malformed Helios credential (expected 'conductor:<secret>' or "
                     "'node:<name>:...'; see helios.coordination.acl)")


def load_credential(environ: dict[str, str] | None = None) -> Credential | None:
    """The credential from HELIOS_ZK_CREDENTIAL_FILE or HELIOS_ZK_CREDENTIAL, or None."""
    env = os.environ if environ is None else environ
    file = env.get(ENV_CREDENTIAL_FILE)
    if file:
        return parse_credential(Path(file).read_text())
    text = env.get(ENV_CREDENTIAL)
    if text:
        return parse_credential(text)
    return None


_ALL = Permissions.ALL
_READ = Permissions.READ


def _acl(perms: int, ident: str) -> ACL:
    return ACL(perms, Id("digest", ident))


#: znodes anyone may read: where the leader is (its name, URL and epoch), so that a
#: client with `--zk` and no ZooKeeper credential finds it
WORLD_READABLE = frozenset({"conductors/leader", "cluster-id"})


def acl_for(cred: Credential, path: str) -> list[ACL]:
    """The ACL for a znode at relative `path` created under credential `cred`."""
    base = [_acl(_ALL, cred.conductor_id)]
    parts = [p for p in path.split("/") if p]
    if "/".join(parts) in WORLD_READABLE:
        return [*base, _acl(_READ, cred.reader_id), ACL(_READ, Id("world", "anyone"))]
    owner: str | None = None
    if len(parts) >= 2 and parts[0] in ("nodes", "status"):
        owner = parts[1]
    elif len(parts) >= 3 and parts[0] == "services":
        owner = parts[2]  # /services/<job>/<node>/**
    if owner is not None:
        ident = cred.node_id(owner)
        if ident is not None and ident != cred.conductor_id:
            base.append(_acl(_ALL, ident))
        return [*base, _acl(_READ, cred.reader_id)]
    if len(parts) == 1 and parts[0] in ("nodes", "status"):
        return [*base, _acl(_READ | Permissions.CREATE, cred.reader_id)]
    return [*base, _acl(_READ, cred.reader_id)]
