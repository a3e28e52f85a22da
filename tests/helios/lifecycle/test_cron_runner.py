"""Cron firing: exactly one run per tick, across racing and deposed leaders, on both
backends, with a test clock (and one real-time failover)."""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack
from datetime import UTC, datetime

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helios.conductor.cron_runner import (
    TICK_ENV,
    CronRunner,
    _iso,
    decide_tick,
    latest_tick,
    next_wakeup,
    run_name,
    running_templates,
)
from helios.conductor.history import read_history
from helios.coordination import StaleEpoch, Store, Term, leadership, paths
from helios.cron import parse_cron
from helios.events import EventLog, read_events
from helios.model import Assignment, JobRecord, TaskStatus
from tests.helios.coordination.conftest import Backend
from tests.helios.lifecycle.conftest import job

WAIT = 30
T0 = datetime(2026, 11, 29, 8, 0, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


async def runs_of(store: Store, template: str) -> dict[str, JobRecord]:
    out = {}
    for name in await store.children(paths.JOBS):
        if not name.startswith(f"{template}-"):  # runs are named <template>-<tick>; the
            continue                            # root is shared by hypothesis examples
        entry = await store.get(paths.job(name))
        if entry is not None and entry.value.get("parent") == template:
            out[name] = JobRecord.from_dict(entry.value)
    return out


async def cron_state(store: Store, template: str) -> dict:
    entry = await store.get(paths.cron(template))
    assert entry is not None
    return entry.value


def every_second(name: str = "tick", created: float = T0, **kw: object) -> JobRecord:
    return job(name, "cron", created=created, schedule="* * * * * *", **kw)


# --------------------------------------------------------------------------- pure parts


def test_run_names_are_the_tick_in_utc() -> None:
    minute = parse_cron("*/5 * * * *", "Europe/Paris")
    tick = minute.next_tick(datetime(2026, 11, 29, 8, 1, tzinfo=UTC))
    assert run_name("report", tick, minute) == "report-202611290805"
    sec = parse_cron("*/10 * * * * *")
    t = sec.next_tick(datetime(2026, 11, 29, 8, 1, tzinfo=UTC))
    assert run_name("fast", t, sec) == "fast-20261129080110"
    assert run_name("fast", datetime(2026, 1, 1, tzinfo=UTC), sec) == "fast-20260101000000"


def test_latest_tick_counts_and_finds_the_newest_fast() -> None:
    s = parse_cron("* * * * * *")
    a = datetime(2026, 1, 1, tzinfo=UTC)
    assert latest_tick(s, a, a) == (None, 0)
    assert latest_tick(s, a, datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC)) == (
        datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC), 5)
    # a week of seconds: found through windows, not 600,000 steps
    tick, count = latest_tick(s, a, datetime(2026, 1, 8, 0, 0, 0, 500000, tzinfo=UTC))
    assert tick == datetime(2026, 1, 8, tzinfo=UTC) and count >= 1000
    m = parse_cron("0 0 1 1 *")
    tick, count = latest_tick(m, datetime(2020, 6, 1, tzinfo=UTC),
                              datetime(2026, 6, 1, tzinfo=UTC))
    assert tick == datetime(2026, 1, 1, tzinfo=UTC) and count == 6


def test_decide_tick_rules() -> None:
    s = parse_cron("* * * * *")
    last = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    now = datetime(2026, 1, 1, 0, 3, 10, tzinfo=UTC)
    t3 = datetime(2026, 1, 1, 0, 3, tzinfo=UTC)
    assert decide_tick(s, last, datetime(2026, 1, 1, 0, 0, 59, tzinfo=UTC))[0] is None
    tick, fire, why, missed = decide_tick(s, last, now)
    assert (tick, fire, missed) == (t3, True, 2) and "catch_up: one" in why
    assert decide_tick(s, last, now, running=True)[1:3] == (
        False, "previous run still active (overlap: skip); 2 older missed ticks not run")
    assert decide_tick(s, last, now, running=True, overlap="allow")[1] is True
    assert decide_tick(s, last, now, stopped=True)[1] is False
    # catch_up none: a tick from before this leader's term was missed -> dropped
    assert decide_tick(s, last, now, catch_up="none", led_since=now)[1] is False
    # ... one inside the term is on time and fires
    assert decide_tick(s, last, now, catch_up="none", led_since=last)[1] is True
    # ... unless it is later than the tolerance
    assert decide_tick(s, last, now, catch_up="none", tolerance=5)[1] is False


def test_next_wakeup_is_the_next_tick() -> None:
    rec = job("m", "cron", created=T0, schedule="*/5 * * * *")
    assert next_wakeup([rec], {"m": T0}, T0 + 10) == T0 + 300
    assert next_wakeup([rec], {"m": T0 - 300}, T0 + 10) == T0 + 10   # due: now
    assert next_wakeup([rec], {}, T0 + 10) == T0 + 10                # unknown: look now
    assert next_wakeup([job("b", "batch")], {}, T0) is None


def test_running_templates() -> None:
    spec = every_second().spec
    run_a = JobRecord(spec=spec.replace(name="tick-a", kind="batch"), parent="tick")
    run_b = JobRecord(spec=spec.replace(name="other-b", kind="batch"), parent="other")
    a = Assignment(id="tick-a-1", job="tick-a", version=1, node="n1")
    b = Assignment(id="other-b-1", job="other-b", version=1, node="n1")
    done = TaskStatus(id="other-b-1", node="n1", job="other-b", state="exited")
    running = TaskStatus(id="tick-a-1", node="n1", job="tick-a", state="running")
    assert running_templates([run_a, run_b], [a, b], [running, done]) == {"tick"}
    assert running_templates([run_a], [], []) == {"tick"}            # not placed yet
    assert running_templates([run_a.replace(stopped=True)], [], []) == set()


# --------------------------------------------------------------------------- on a store


async def test_exactly_one_run_per_tick_with_a_test_clock(store: Store) -> None:
    rec = every_second()
    clock = Clock(T0)
    async with leadership(store, "c1") as term:
        runner = CronRunner(term, clock=clock)
        fired = []
        for step in range(60):                # 0.25 s steps over 15 s: every tick fires
            clock.t = T0 + step * 0.25
            fired += await runner.run_due([rec])
            assert await runner.run_due([rec]) == []       # same instant again: nothing
    ticks = [o.tick.timestamp() for o in fired]
    assert ticks == [T0 + i for i in range(1, 15)]
    runs = await runs_of(store, "tick")
    assert sorted(runs) == sorted(o.run for o in fired)
    first = runs[fired[0].run]
    assert first.spec.kind == "batch" and first.parent == "tick"
    assert first.spec.env[TICK_ENV] == "2026-11-29T08:00:01Z"
    state = await cron_state(store, "tick")
    assert state["last"] == "2026-11-29T08:00:14Z" and state["run"] == fired[-1].run


async def test_one_minute_schedule_across_a_leader_change(backend: Backend) -> None:
    """The issue's case with a test clock: a leader fires, is killed around the next
    tick, a new leader takes over and the tick fires once."""
    a, b = await backend.open(), await backend.open()
    rec = job("minutely", "cron", created=T0, schedule="* * * * *")
    clock = Clock(T0 + 61)
    with trio.fail_after(WAIT):
        async with AsyncExitStack() as stack:
            term_a = await stack.enter_async_context(leadership(a, "a"))
            runner_a = CronRunner(term_a, clock=clock)
            assert [o.run for o in await runner_a.run_due([rec])] == ["minutely-202611290801"]
            clock.t = T0 + 120.2
            claims = await runner_a.decide([rec])          # decided 08:02, then killed
            assert len(claims) == 1
        # its term ends (its session is kept open, so the stale claim reaches the store)
        async with leadership(b, "b") as term_b:
            clock.t = T0 + 121
            runner_b = CronRunner(term_b, clock=clock, led_since=T0 + 120.5)
            fired = await runner_b.run_due([rec])
            assert [o.run for o in fired] == ["minutely-202611290802"]
            assert await runner_b.run_due([rec]) == []
            with pytest.raises(StaleEpoch):
                await runner_a.commit(claims)
    assert sorted(await runs_of(b, "minutely")) == ["minutely-202611290801",
                                                    "minutely-202611290802"]


async def test_two_leaders_racing_on_the_same_tick_fire_once(backend: Backend) -> None:
    """Three writers with the same epoch (as if all believed they lead): the compare-and-
    set lets exactly one claim each tick; batches that lose fall back job by job."""
    stores = [await backend.open() for _ in range(3)]
    recs = [every_second(), every_second("tock")]
    clock = Clock(T0)
    async with leadership(stores[0], "a") as term:
        runners = [CronRunner(Term(s, f"r{i}", term.epoch, term.epoch_version, term.node),
                              clock=clock) for i, s in enumerate(stores)]
        fired = []
        for step in range(1, 9):
            clock.t = T0 + step
            async with trio.open_nursery() as n:
                for r in runners:
                    async def go(r: CronRunner = r) -> None:
                        fired.extend(await r.run_due(recs))
                    n.start_soon(go)
    for name in ("tick", "tock"):
        assert sorted(o.tick.timestamp() for o in fired if o.job == name) == [
            T0 + i for i in range(1, 9)]
        assert len(await runs_of(stores[0], name)) == 8


async def test_many_jobs_on_one_tick_are_claimed_together(store: Store) -> None:
    recs = [every_second(f"j{i}") for i in range(120)]       # three batches
    async with leadership(store, "c") as term:
        out = await CronRunner(term, clock=Clock(T0 + 1.5)).run_due(recs)
    assert [o.job for o in out] == sorted(r.name for r in recs)
    assert all(o.fired for o in out)
    assert len(await store.children(paths.JOBS)) == 120


async def test_a_deposed_leader_claims_nothing(backend: Backend) -> None:
    """Killed between deciding and claiming: its claim fails the epoch check, the next
    leader fires the tick once."""
    a, b = await backend.open(), await backend.open()
    rec = every_second()
    clock = Clock(T0 + 1.2)
    with trio.fail_after(WAIT):
        async with leadership(a, "a") as term_a:
            runner_a = CronRunner(term_a, clock=clock)
            claims = await runner_a.decide([rec])
        async with leadership(b, "b") as term_b:
            with pytest.raises(StaleEpoch):
                await runner_a.commit(claims)
            assert await runs_of(b, "tick") == {}
            runner_b = CronRunner(term_b, clock=clock)
            assert [o.run for o in await runner_b.run_due([rec])] == ["tick-20261129080001"]
            # the old leader, still unaware, decides again from its cache: still fenced
            with pytest.raises(StaleEpoch):
                await runner_a.run_due([rec], now=T0 + 2.5)
    assert list(await runs_of(b, "tick")) == ["tick-20261129080001"]


async def test_a_leader_killed_after_claiming_is_not_repeated(backend: Backend) -> None:
    a, b = await backend.open(), await backend.open()
    rec = every_second()
    clock = Clock(T0 + 1.5)
    async with leadership(a, "a") as term_a:
        assert len(await CronRunner(term_a, clock=clock).run_due([rec])) == 1
    async with leadership(b, "b") as term_b:
        assert await CronRunner(term_b, clock=clock).run_due([rec]) == []
    assert len(await runs_of(b, "tick")) == 1


async def test_a_claimed_tick_is_in_the_history_without_any_flush(backend: Backend) -> None:
    """The tick's history event is written in the claim's own transaction: a leader
    killed right after claiming (before its next flush) leaves no consumed tick that
    `helios job history` and `helios events` do not show."""
    a, b = await backend.open(), await backend.open()
    rec = every_second()
    async with leadership(a, "a") as term_a:
        runner = CronRunner(term_a, clock=Clock(T0 + 3.5), events=EventLog(a))
        (first,) = await runner.run_due([rec])
    # nothing else of leader a is ever written: b reads what the claim wrote
    (ev,) = [e for e in await read_history(b, "tick") if e["state"] == "cron fired"]
    assert ev["tick"] == _iso(first.tick) and ev["run"] == first.run
    assert ev["missed"] == 2  # ticks 1 and 2 passed over, tick 3 fired
    events = (await read_events(b))["events"]
    assert [e["type"] for e in events if e["job"] == "tick"] == ["cron fired"]


async def test_overlap_skip_and_allow(store: Store) -> None:
    skip, allow = every_second("skip"), every_second("allow", overlap="allow")
    clock = Clock(T0 + 1)
    async with leadership(store, "c") as term:
        runner = CronRunner(term, clock=clock)
        first = await runner.run_due([skip, allow])
        assert [o.fired for o in first] == [True, True]
        clock.t = T0 + 2
        second = await runner.run_due([skip, allow], running={"skip", "allow"})
        by_job = {o.job: o for o in second}
        assert by_job["allow"].fired and not by_job["skip"].fired
        assert "overlap: skip" in by_job["skip"].reason
        assert (await cron_state(store, "skip"))["last"] == "2026-11-29T08:00:02Z"
        clock.t = T0 + 3
        third = await runner.run_due([skip, allow], running=lambda name: False)
        assert [o.fired for o in third] == [True, True]
        ev = by_job["skip"].history_event()
        assert ev["job"] == "skip" and ev["state"] == "cron skipped"
    assert len(await runs_of(store, "skip")) == 2 and len(await runs_of(store, "allow")) == 3


@pytest.mark.parametrize("catch_up", ["one", "none"])
async def test_catch_up_after_a_gap_without_a_leader(backend: Backend, catch_up: str) -> None:
    a, b = await backend.open(), await backend.open()
    rec = every_second(catch_up=catch_up)
    clock = Clock(T0 + 1)
    async with leadership(a, "a") as term:
        assert len(await CronRunner(term, clock=clock).run_due([rec])) == 1
    clock.t = T0 + 30.5       # 29 ticks pass while nobody leads
    async with leadership(b, "b") as term:
        out = await CronRunner(term, clock=clock).run_due([rec])
        assert len(out) == 1 and out[0].tick.timestamp() == T0 + 30 and out[0].missed == 28
        assert out[0].fired is (catch_up == "one")
        clock.t = T0 + 31
        assert [o.fired for o in await CronRunner(term, clock=clock,
                                                  led_since=T0 + 30.5).run_due([rec])] == [True]
    expected = 3 if catch_up == "one" else 2
    assert len(await runs_of(b, "tick")) == expected


async def test_ticks_before_the_job_existed_never_fire(store: Store) -> None:
    rec = every_second(created=T0 + 10.5)
    async with leadership(store, "c") as term:
        runner = CronRunner(term, clock=Clock(T0 + 11.2))
        assert [o.tick.timestamp() for o in await runner.run_due([rec])] == [T0 + 11]
    # without a creation time the job's clock starts when a leader first sees it
    new = every_second("fresh", created=0.0)
    async with leadership(store, "c") as term:
        runner = CronRunner(term, clock=Clock(T0 + 100.5))
        assert await runner.run_due([new]) == []
        assert [o.tick.timestamp() for o in await runner.run_due([new], now=T0 + 101.5)] == [
            T0 + 101]


async def test_stopped_cron_job_consumes_ticks_without_runs(store: Store) -> None:
    rec = every_second(stopped=True)
    async with leadership(store, "c") as term:
        out = await CronRunner(term, clock=Clock(T0 + 1)).run_due([rec])
        assert [(o.fired, o.reason) for o in out] == [(False, "job is stopped")]
    assert await runs_of(store, "tick") == {}


async def test_six_field_schedules_and_time_zones(store: Store) -> None:
    every3 = job("three", "cron", created=T0, schedule="*/3 * * * * *")
    paris = job("paris", "cron", created=T0, schedule="0 9 * * *", timezone="Europe/Paris")
    clock = Clock(T0)
    fired = []
    async with leadership(store, "c") as term:
        runner = CronRunner(term, clock=clock)
        for step in range(1, 11):
            clock.t = T0 + step
            fired += await runner.run_due([every3, paris])
        assert runner.next_wakeup([every3, paris]) == T0 + 12
        clock.t = T0 + 3600 + 1.0        # 09:00 in Paris is 08:00 UTC in November
        later = await runner.run_due([paris])
    assert [o.run for o in fired] == ["three-20261129080003", "three-20261129080006",
                                      "three-20261129080009"]
    assert [o.run for o in later] == []  # 08:00 UTC tick is T0 itself: not after creation
    async with leadership(store, "c") as term:
        out = await CronRunner(term, clock=Clock(T0 + 86400 + 0.5)).run_due([paris])
    assert [o.run for o in out] == ["paris-202611300800"]


async def test_a_corrupt_cron_state_is_overwritten(backend: Backend) -> None:
    store = await backend.open()
    await backend.write_raw(store, paths.cron("tick"), b"\xff not json")
    async with leadership(store, "c") as term:
        out = await CronRunner(term, clock=Clock(T0 + 1.5)).run_due([every_second()])
    assert [o.run for o in out] == ["tick-20261129080001"]
    assert (await cron_state(store, "tick"))["run"] == "tick-20261129080001"


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(st.floats(0.0, 4.0), st.sampled_from(
    ["pass", "pass", "race", "new-leader", "killed-before-claim"])), min_size=1, max_size=12),
    catch_up=st.sampled_from(["one", "none"]), offset=st.floats(0.0, 0.999))
async def test_random_clocks_and_failovers_never_fire_a_tick_twice(
        backend: Backend, steps: list[tuple[float, str]], catch_up: str, offset: float
        ) -> None:
    """Random clock advances, racing writers and leaders replaced (some between deciding
    and claiming): every tick is consumed at most once, fired ticks only move forward,
    and with catch_up: one each pass that finds due ticks fires the newest of them."""
    store = await backend.open()
    # Unique per execution: hypothesis may run one example twice, and the store's root is
    # shared by the examples, so a name derived from the example would find old state.
    name = f"p{uuid.uuid4().hex[:10]}"
    rec = every_second(name, created=T0 + offset, catch_up=catch_up)
    clock = Clock(T0 + offset)
    sched = parse_cron("* * * * * *")
    fired: list[float] = []
    consumed: list[float] = []
    async with AsyncExitStack() as stack:
        term = await stack.enter_async_context(leadership(store, "x"))
        runner = CronRunner(term, clock=clock)
        for dt, what in steps:
            last = consumed[-1] if consumed else T0 + offset
            clock.t += dt
            due, _ = latest_tick(sched, datetime.fromtimestamp(last, UTC),
                                 datetime.fromtimestamp(clock.t, UTC))
            if what == "killed-before-claim":
                claims = await runner.decide([rec])
                await stack.aclose()
                term = await stack.enter_async_context(leadership(store, "x"))
                if claims:
                    with pytest.raises(StaleEpoch):
                        await runner.commit(claims)
                runner = CronRunner(term, clock=clock)
                outs = await runner.run_due([rec])
            elif what == "new-leader":
                await stack.aclose()
                term = await stack.enter_async_context(leadership(store, "x"))
                runner = CronRunner(term, clock=clock)
                outs = await runner.run_due([rec])
            elif what == "race":
                twin = CronRunner(Term(store, "twin", term.epoch, term.epoch_version,
                                       term.node), clock=clock)
                outs = []
                async with trio.open_nursery() as n:
                    for r in (runner, twin):
                        async def go(r: CronRunner = r, outs: list = outs) -> None:
                            outs.extend(await r.run_due([rec]))
                        n.start_soon(go)
            else:
                outs = await runner.run_due([rec])
            assert len(outs) == (0 if due is None else 1)
            for o in outs:
                t = o.tick.timestamp()
                assert t == due.timestamp() and (not consumed or t > consumed[-1])
                consumed.append(t)
                if o.fired:
                    fired.append(t)
                elif catch_up == "one":
                    raise AssertionError(f"catch_up one skipped {o}")
    runs = await runs_of(store, name)
    assert sorted(r.spec.env[TICK_ENV] for r in runs.values()) == sorted(
        datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z") for t in fired)
