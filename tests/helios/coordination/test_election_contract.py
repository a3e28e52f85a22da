"""Leader election and fencing, run unchanged against ZooKeeper and the embedded store."""

from __future__ import annotations

import pytest
import trio

from helios.coordination import (
    Set,
    StaleEpoch,
    Store,
    Term,
    lead,
    leadership,
    paths,
)
from helios.coordination.election import current_epoch
from tests.helios.coordination.conftest import Backend

WAIT = 30


async def test_exactly_one_leader_among_contenders(backend: Backend) -> None:
    stores = [await backend.open() for _ in range(4)]
    leaders: list[str] = []
    holding = 0
    max_holding = 0
    epochs: list[int] = []

    async def contender(store: Store, name: str) -> None:
        nonlocal holding, max_holding
        async with leadership(store, name) as term:
            holding += 1
            max_holding = max(max_holding, holding)
            leaders.append(name)
            epochs.append(term.epoch)
            assert await current_epoch(store) == term.epoch
            await trio.sleep(0.05)   # hold the term while others wait
            holding -= 1
        # leaving the block resigns: the next contender takes over

    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            for i, s in enumerate(stores):
                nursery.start_soon(contender, s, f"c{i}")
    assert max_holding == 1
    assert sorted(leaders) == ["c0", "c1", "c2", "c3"]
    assert epochs == sorted(epochs) and len(set(epochs)) == 4   # strictly increasing


async def test_epoch_increases_across_session_loss(backend: Backend) -> None:
    a, b = await backend.open(), await backend.open()
    with trio.fail_after(WAIT):
        async with leadership(a, "a") as term_a:
            first = term_a.epoch
            async with trio.open_nursery() as nursery:
                got_b: list[Term] = []
                b_leads = trio.Event()
                release_b = trio.Event()

                async def contend_b() -> None:
                    async with leadership(b, "b") as term_b:
                        got_b.append(term_b)
                        b_leads.set()
                        await release_b.wait()

                nursery.start_soon(contend_b)
                await trio.sleep(0.2)          # time for b to win, were it wrongly able to
                assert not b_leads.is_set()
                await backend.expire(a)        # a's session ends: a loses, b wins
                await term_a.lost.wait()       # a drops leadership at once
                await b_leads.wait()
                assert got_b[0].epoch > first
                # a deposed leader's fenced write is rejected, once it can reach the store
                await backend.wait_connected(a)
                with pytest.raises(StaleEpoch):
                    await term_a.transaction([Set("/jobs/web", {"by": "a"})])
                await b.create("/jobs/web", {"by": "b"})
                await got_b[0].set("/jobs/web", {"by": "b", "v": 2})
                release_b.set()
    assert (await b.get("/jobs/web")).value == {"by": "b", "v": 2}


async def test_stale_leader_write_rejected_while_unaware(backend: Backend) -> None:
    """Deposition happens behind the old leader's back (its candidate node removed by
    someone else); its writes are refused even before it notices."""
    a, b, admin = await backend.open(), await backend.open(), await backend.open()
    await admin.create("/jobs/web", {"v": 0})
    with trio.fail_after(WAIT):
        async with leadership(a, "a") as term_a:
            await term_a.set("/jobs/web", {"v": 1})            # a leads: accepted
            async with trio.open_nursery() as nursery:
                b_term: list[Term] = []
                done = trio.Event()

                async def contend_b() -> None:
                    async with leadership(b, "b") as t:
                        b_term.append(t)
                        await done.wait()

                nursery.start_soon(contend_b)
                await trio.sleep(0.1)
                await admin.delete(term_a.node)                 # a is deposed
                while not b_term:
                    await trio.sleep(0.01)
                with pytest.raises(StaleEpoch):
                    await term_a.set("/jobs/web", {"v": "stale"})
                await term_a.lost.wait()
                done.set()
    assert (await admin.get("/jobs/web")).value == {"v": 1}
    assert await current_epoch(admin) == b_term[0].epoch > term_a.epoch


async def test_lead_recontends_after_session_loss(backend: Backend) -> None:
    store = await backend.open()
    terms: list[int] = []
    second = trio.Event()

    async def body(term: Term) -> None:
        terms.append(term.epoch)
        if len(terms) == 1:
            await backend.expire(store)
            await trio.sleep_forever()     # cancelled by lead() when the term is lost
        second.set()

    with trio.fail_after(WAIT):
        await lead(store, "solo", body)
    assert second.is_set() and len(terms) == 2 and terms[1] > terms[0]
    assert await current_epoch(store) == terms[1]
    assert paths.basename(paths.EPOCH) == "epoch"


async def test_waiting_candidate_stands_again_after_session_loss(backend: Backend) -> None:
    leader, waiter = await backend.open(), await backend.open()
    won: list[Term] = []

    async def wait_turn() -> None:
        async with leadership(waiter, "w") as term:
            won.append(term)

    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery, leadership(leader, "l") as first:
            nursery.start_soon(wait_turn)
            while len(await leader.children(paths.ELECTION)) < 2:
                await trio.sleep(0.02)
            await backend.expire(waiter)      # its candidate node vanishes
            await backend.wait_connected(waiter)
            while len(await leader.children(paths.ELECTION)) < 2:
                await trio.sleep(0.02)        # ...and it stands again
            assert not won
            # "l" resigned: the waiter takes over
    assert won and won[0].epoch > first.epoch
