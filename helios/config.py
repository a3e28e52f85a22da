"""Parsers of the settings that daemons and clients take as text: ZooKeeper host strings
and `key=value` labels.

Why a module of its own: the CLI, `python -m helios.node`, the conductor and the node
daemon all read the same `--zk h1:2181,h2:2181/root` and `--label k=v` forms; one parser
each keeps them reading those forms the same way. Nothing here does I/O or imports the
rest of helios, so any part may import it.
"""

from __future__ import annotations

from collections.abc import Iterable

#: the ZooKeeper chroot a cluster uses when the host string names none
DEFAULT_ZK_ROOT = "/helios"

__all__ = ["DEFAULT_ZK_ROOT", "parse_labels", "split_zk", "zk_store_url"]


def split_zk(hosts: str, default_root: str = DEFAULT_ZK_ROOT) -> tuple[str, str]:
    """`h1:2181,h2:2181/root` (or `zk://h1:2181,h2:2181/root`, the store URL) ->
    (`h1:2181,h2:2181`, `/root`); the root is `default_root` when none is given."""
    hosts = hosts.removeprefix("zk://")
    h, sep, root = hosts.partition("/")
    return h, ("/" + root.strip("/")) if sep and root.strip("/") else default_root


def zk_store_url(zk: str) -> str:
    """`--zk h1:2181,h2:2181[/root]` -> the store URL `open_store` takes
    (`zk://h1:2181,h2:2181/root`); a store URL (`zk://...`, `sqlite://...`) is kept,
    a `zk://` one with its root made explicit."""
    if zk.startswith("sqlite://"):
        return zk
    hosts, root = split_zk(zk)
    return f"zk://{hosts}{root}"


def parse_labels(items: Iterable[str] | None, flag: str = "--label") -> dict[str, str]:
    """`["zone=a", "disk=ssd"]` -> {"zone": "a", "disk": "ssd"}; ValueError naming the
    flag for an item that is not `key=value` with a non-empty key."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} {item!r}: expected key=value")
        out[key] = value
    return out
