"""Cluster coordination: membership, leadership and desired state.

One `Store` interface, two backends: `ZooKeeperStore` (a cluster) and `EmbeddedStore`
(one SQLite file, `helios solo`). Helpers on top: `membership`, `election`, `guard`,
`acl`; path builders in `paths`. See each module's docstring.
"""

from helios.config import split_zk
from helios.coordination import paths
from helios.coordination.acl import Credential, load_credential
from helios.coordination.election import Term, fenced_transaction, lead, leadership
from helios.coordination.embedded import EmbeddedStore, open_embedded
from helios.coordination.errors import (
    ClusterIdMismatch,
    CoordinationError,
    CorruptValue,
    NodeExists,
    NoNode,
    NotAuthorized,
    NotEmpty,
    StaleEpoch,
    StoreClosed,
    TransactionFailed,
    Unavailable,
    ValueTooLarge,
    VersionConflict,
)
from helios.coordination.guard import check_cluster, init_cluster, wait_for_cluster
from helios.coordination.membership import members, presence, register_node, watch_members
from helios.coordination.store import (
    Check,
    ConnectionState,
    Create,
    Delete,
    Entry,
    Op,
    Set,
    Store,
)
from helios.coordination.zookeeper import ZooKeeperStore, open_zookeeper


async def open_store(url: str, *, session_timeout: float = 10.0,
                     credential: Credential | None = None) -> Store:
    """Open a store from a URL: `zk://h1:2181,h2:2181/helios` or `sqlite:///path/file.db`
    (root `/helios`, or `sqlite:///path/file.db#/root`)."""
    if url.startswith("zk://"):
        hosts, root = split_zk(url)
        return await open_zookeeper(hosts, root,
                                    session_timeout=session_timeout, credential=credential)
    if url.startswith("sqlite://"):
        file, _, root = url[len("sqlite://"):].partition("#")
        return await open_embedded(file, root or "/helios")
    raise ValueError(f"unknown store URL {url!r} (expected zk://... or sqlite://...)")


__all__ = [
    "Check",
    "ClusterIdMismatch",
    "ConnectionState",
    "CoordinationError",
    "CorruptValue",
    "Create",
    "Credential",
    "Delete",
    "EmbeddedStore",
    "Entry",
    "NoNode",
    "NodeExists",
    "NotAuthorized",
    "NotEmpty",
    "Op",
    "Set",
    "StaleEpoch",
    "Store",
    "StoreClosed",
    "Term",
    "TransactionFailed",
    "Unavailable",
    "ValueTooLarge",
    "VersionConflict",
    "ZooKeeperStore",
    "check_cluster",
    "fenced_transaction",
    "init_cluster",
    "lead",
    "leadership",
    "load_credential",
    "members",
    "open_embedded",
    "open_store",
    "open_zookeeper",
    "paths",
    "presence",
    "register_node",
    "wait_for_cluster",
    "watch_members",
]
