"""One daemon per node name in a cluster.

Two daemons that share a node name share everything keyed by it: the assignments, the
presence, and the `io.helios.node=<name>` label by which each finds "its" containers, so
each removes the other's containers as orphans. A daemon therefore refuses to start while
a live daemon of the same name exists in its cluster.

"Another daemon" is told apart from "this daemon's previous run" (a restart must still
be quick and move nothing) by an instance id kept in the state directory: a restart with
the same state directory is the same instance, and waits for its old session to expire as
before; a presence held by another instance is a duplicate.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from helios.coordination import CoordinationError, Store, paths

log = logging.getLogger(__name__)

__all__ = ["INSTANCE_FILE", "NodeNameTaken", "instance_id", "kept_value", "refuse_duplicate"]

INSTANCE_FILE = "instance"
#: how long the start-up check waits for the store; a node must still start (and run its
#: last assignments) while ZooKeeper is down, so past this it starts unchecked
CHECK_TIMEOUT = 1.0


class NodeNameTaken(RuntimeError):
    """A live daemon of the same name is in the cluster."""


def kept_value(path: Path, make: Callable[[], str]) -> str:
    """The one-line value kept in ``path``, or ``make()``'s, written there (atomically)
    on first use: identities that must outlive the process, one per state directory."""
    try:
        kept = path.read_text().strip()
    except FileNotFoundError:
        kept = ""
    if kept:
        return kept
    new = make()
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(new + "\n")
    tmp.replace(path)
    return new


def instance_id(state_dir: Path) -> str:
    """This state directory's instance id, made on first use."""
    return kept_value(state_dir / INSTANCE_FILE, lambda: secrets.token_hex(8))


async def refuse_duplicate(name: str, instance: str,
                           connect: Callable[[], Awaitable[Store]],
                           where: str, timeout: float = CHECK_TIMEOUT) -> bool:
    """Raise NodeNameTaken when `/nodes/<name>/up` is held by another instance. Returns
    whether the store answered (when not, this said "ZooKeeper unreachable" already)."""
    store: Store | None = None
    holder = None
    failed = False
    with trio.move_on_after(timeout + 1.0) as scope:  # (connect is bounded by timeout)
        try:
            store = await connect()
            entry = await store.get(paths.node_up(name))
            holder = entry.value if entry is not None and isinstance(entry.value, dict) \
                else None
        except CoordinationError as e:
            failed = True
            log.debug("node %s: name check: %s", name, e)
    if store is not None:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await store.aclose()
    if failed or scope.cancelled_caught:
        log.warning("node %s: ZooKeeper unreachable at %s (no answer); starting without "
                    "checking that the name is free, running its last assignments and "
                    "retrying quietly", name, where)
        return False
    other = holder.get("instance") if holder else None
    if holder and other and other != instance:
        raise NodeNameTaken(
            f"node {name} is already running in the cluster at {where} (another daemon, "
            f"session {holder.get('session')}); give this one another --name, or stop "
            "that one first")
    return True
