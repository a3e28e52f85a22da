"""Leader election among conductors, with a fencing epoch that only grows.

Recipe (the standard ZooKeeper one, plus a fenced claim):

1. each candidate creates an ephemeral sequential node under `/conductors/election/`;
2. the candidate with the lowest sequence number claims leadership in ONE transaction
   that checks its candidate node still exists and bumps `/conductors/epoch` with a
   compare-and-set. So a new epoch exists only if its leader's session was alive at that
   instant, and epochs strictly increase across leaders;
3. every fenced write (`Term.transaction`) carries a check of the epoch node's version:
   once a newer leader has bumped it, a deposed leader's writes fail with `StaleEpoch`.

A term is lost (`term.lost` set) the moment any of these is seen: the session is LOST or
the store closed; the connection stays SUSPENDED longer than 2/3 of the session timeout
(kazoo only learns of expiry after reconnecting, so a partitioned leader must stop on
its own before the server expires its session); its candidate node vanishes; or the
epoch moves past its own.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing, asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import trio

import helios.coordination.paths as paths
from helios.coordination.errors import (
    CoordinationError,
    StaleEpoch,
    TransactionFailed,
    Unavailable,
)
from helios.coordination.store import (
    Check,
    ConnectionState,
    Create,
    Op,
    Set,
    Store,
    wait_connected,
)

log = logging.getLogger(__name__)


@dataclass
class Term:
    """One leadership term: `epoch` is the fencing number to stamp on instructions."""

    store: Store
    candidate: str
    epoch: int
    epoch_version: int
    node: str
    lost: trio.Event = field(default_factory=trio.Event)

    async def transaction(self, ops: Sequence[Op]) -> list[Any]:
        """A transaction applied only while this term's epoch is current."""
        return await fenced_transaction(self.store, self.epoch, self.epoch_version, ops)

    async def set(self, path: str, value: Any, version: int = -1) -> int:
        """A fenced single write; returns the new version."""
        result = await self.transaction([Set(path, value, version)])
        return int(result[0])


async def fenced_transaction(store: Store, epoch: int, epoch_version: int,
                             ops: Sequence[Op]) -> list[Any]:
    """Apply `ops` only if `/conductors/epoch` is still at `epoch_version`.

    Raises `StaleEpoch` if a newer leader has claimed, `TransactionFailed` (indexed in
    `ops`) if one of `ops` fails."""
    try:
        results = await store.transaction([Check(paths.EPOCH, epoch_version), *ops])
    except TransactionFailed as e:
        if e.index == 0:
            raise StaleEpoch(epoch) from None
        raise TransactionFailed(e.index - 1, e.op, e.cause) from None
    return results[1:]


async def current_epoch(store: Store) -> int:
    """The newest epoch (0 if no leader was ever elected)."""
    entry = await store.get(paths.EPOCH)
    return 0 if entry is None else int(entry.value["epoch"])


async def _candidate(store: Store, candidate: str) -> str:
    return await store.create(paths.election_prefix(),
                              {"candidate": candidate, "session": store.session_id},
                              ephemeral=True, sequential=True)


async def _claim(store: Store, node: str, candidate: str) -> Term | None:
    """Bump the epoch iff our candidate node exists; None if we lost a race."""
    entry = await store.get(paths.EPOCH)
    value = {"leader": candidate, "candidate": paths.basename(node)}
    if entry is None:
        epoch, version = 1, 0
        op: Op = Create(paths.EPOCH, {"epoch": epoch, **value})
    else:
        epoch, version = int(entry.value["epoch"]) + 1, entry.version + 1
        op = Set(paths.EPOCH, {"epoch": epoch, **value}, version=entry.version)
    try:
        await store.transaction([Check(node), op])
    except TransactionFailed as e:
        log.info("claim of epoch %d by %s lost a race: %s", epoch, candidate, e.cause)
        return None
    log.info("%s leads with epoch %d", candidate, epoch)
    return Term(store, candidate, epoch, version, node)


async def _stand(store: Store, candidate: str) -> str:
    """Create our candidate node, waiting out disconnections."""
    while True:
        await wait_connected(store)
        try:
            return await _candidate(store, candidate)
        except Unavailable as e:
            log.info("%s: cannot stand yet (%s)", candidate, e)
            await trio.sleep(0.5)


async def _wait_for_turn(store: Store, candidate: str) -> Term:
    node = await _stand(store, candidate)
    try:
        async with aclosing(store.watch_children(paths.ELECTION)) as watch:
            async for names in watch:
                mine = paths.basename(node)
                if mine not in names:
                    # our candidate vanished with our session: stand again
                    node = await _stand(store, candidate)
                    continue
                if min(names, key=paths.sequence_of) != mine:
                    continue  # the watch wakes us when the candidates change
                while True:
                    try:
                        term = await _claim(store, node, candidate)
                        break
                    except Unavailable as e:
                        log.info("%s: cannot claim yet (%s)", candidate, e)
                        await trio.sleep(0.5)
                        await wait_connected(store)
                if term is not None:
                    return term
                # lost the claim: our node vanished, so the next yield shows it
        raise CoordinationError("election watch ended")  # pragma: no cover
    except BaseException:
        with trio.CancelScope(shield=True), trio.move_on_after(5), \
                suppress(CoordinationError):
            await store.delete(node)
        raise


async def _watch_term(store: Store, term: Term) -> None:
    """Set `term.lost` at the first sign that this term is over."""
    grace = getattr(store, "session_timeout", 10.0) * 2 / 3

    async def session(cancel: trio.CancelScope) -> None:
        deadline_scope: trio.CancelScope | None = None
        async with trio.open_nursery() as n:
            async def expire_after_grace() -> None:
                nonlocal deadline_scope
                with trio.CancelScope() as deadline_scope:
                    await trio.sleep(grace)
                    log.warning("%s: disconnected for %.1fs, dropping leadership",
                                term.candidate, grace)
                    cancel.cancel()

            async for state in store.connection_events():
                if state in (ConnectionState.LOST, ConnectionState.CLOSED):
                    log.warning("%s: session %s, dropping leadership", term.candidate,
                                state.value)
                    cancel.cancel()
                    return
                if state == ConnectionState.SUSPENDED and deadline_scope is None:
                    n.start_soon(expire_after_grace)
                elif state == ConnectionState.CONNECTED and deadline_scope is not None:
                    deadline_scope.cancel()
                    deadline_scope = None

    async def candidate_node(cancel: trio.CancelScope) -> None:
        async with aclosing(store.watch_data(term.node)) as watch:
            async for entry in watch:
                if entry is None:
                    log.warning("%s: election node gone, dropping leadership", term.candidate)
                    cancel.cancel()
                    return

    async def epoch(cancel: trio.CancelScope) -> None:
        async with aclosing(store.watch_data(paths.EPOCH)) as watch:
            async for entry in watch:
                if entry is None or entry.version != term.epoch_version:
                    log.warning("%s: epoch moved past %d, dropping leadership",
                                term.candidate, term.epoch)
                    cancel.cancel()
                    return

    try:
        async with trio.open_nursery() as nursery:
            for fn in (session, candidate_node, epoch):
                nursery.start_soon(fn, nursery.cancel_scope)
    except CoordinationError as e:
        log.warning("%s: cannot watch the term (%s), dropping leadership", term.candidate, e)
    finally:
        term.lost.set()


@asynccontextmanager
async def leadership(store: Store, candidate: str) -> AsyncIterator[Term]:
    """Wait until `candidate` leads, then hold the term for the `async with` body.

    The body should watch `term.lost` (or use `lead()`, which cancels it) and stop acting
    when it is set. Leaving the block resigns (deletes the candidate node)."""
    term = await _wait_for_turn(store, candidate)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_term, store, term)
            try:
                yield term
            finally:
                nursery.cancel_scope.cancel()
    finally:
        term.lost.set()
        with trio.CancelScope(shield=True), trio.move_on_after(5), \
                suppress(CoordinationError):
            await store.delete(term.node)


async def lead(store: Store, candidate: str,
               body: Callable[[Term], Awaitable[None]], *,
               retry_interval: float = 1.0) -> None:
    """Contend forever: each time `candidate` wins, run `body(term)`, cancelled at once
    when the term is lost; then stand again. Store outages are waited out."""
    while True:
        try:
            async with leadership(store, candidate) as term, trio.open_nursery() as n:
                async def stop_when_lost(n: trio.Nursery = n, term: Term = term) -> None:
                    await term.lost.wait()
                    n.cancel_scope.cancel()

                n.start_soon(stop_when_lost)
                await body(term)
                n.cancel_scope.cancel()
                return
        except Unavailable as e:
            log.warning("%s: store unavailable (%s); contending again in %.1fs",
                        candidate, e, retry_interval)
            await trio.sleep(retry_interval)
