"""Firing cron jobs: exactly one run per tick, also across a conductor failover.

A cron job is a template; each tick that fires becomes a batch run (`spec.run_spec`), a
JobRecord named `<job>-<yyyymmddhhmm>` (`...ss` when the schedule has seconds) with
`parent` set, which the reconciler places like any batch job. The last tick each job
consumed is kept at `/cron/<job>`:

    {"last": "2026-11-29T08:21:00Z", "last_epoch": 1795854060.0, "action": "fired",
     "run": "ticker-202611290821", "fired": "2026-11-29T08:21:00Z", "reason": "...",
     "epoch": 7, "at": 1795854060.04}

**Why exactly once.** A tick is *claimed* in one fenced transaction (`Term.transaction`)
that compare-and-sets `/cron/<job>` at the version this leader read AND creates the run's
JobRecord under its deterministic name. So:

- two conductors racing on one tick: one transaction wins, the other fails its version
  check (or the create of the same run name) and changes nothing;
- a deposed leader (it lost its term between deciding and claiming) fails the epoch check
  (`StaleEpoch`) and changes nothing;
- a leader that dies after the claim leaves both writes, so the next leader sees the tick
  consumed; one that dies before it leaves neither, so the next leader fires it.

A skipped tick (overlap, catch_up: none, job stopped) is consumed the same way, without
a run, so it is decided once too.

**Deciding** (pure, `decide_tick`): the ticks in (last, now] of the job's schedule in its
time zone (`helios.cron`). None: nothing to do. Else the newest of them is the candidate;
older ones are counted as missed and never run (catch_up never piles runs up). The
candidate is skipped when the template is stopped, when `overlap: skip` and a previous
run of the template is still active, or when `catch_up: none` and the tick was missed
while no conductor led (it is older than this leader's term, or more than `tolerance`
seconds late); otherwise it fires. Ticks before the job was created never fire.

**Timing.** `next_wakeup` says when the next tick of any job is due, so the conductor
sleeps exactly until then (its reconcile loop's timeout); the claim is one transaction, so the
firing delay after the tick is the wake-up plus one ZooKeeper round trip.

Use, from the leading conductor (one `CronRunner` per term):

    runner = CronRunner(term)
    outcomes = await runner.run_due(cron_jobs, running=active_templates)
    wake_at = runner.next_wakeup(cron_jobs)          # epoch seconds, None if no cron job
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import trio

from helios.conductor.history import event
from helios.coordination import paths
from helios.coordination.election import Term
from helios.coordination.errors import (
    CorruptValue,
    NodeExists,
    NoNode,
    StaleEpoch,
    TransactionFailed,
)
from helios.coordination.store import Create, Op, Set
from helios.cron import CronError, CronSchedule, parse_cron
from helios.events import EventLog
from helios.model import Assignment, JobRecord, TaskStatus
from helios.spec import run_spec

log = logging.getLogger(__name__)

__all__ = [
    "TICK_ENV",
    "Claim",
    "CronOutcome",
    "CronRunner",
    "decide_tick",
    "latest_tick",
    "next_wakeup",
    "run_name",
    "running_templates",
    "schedule_of",
]

#: a run's environment names the tick it was fired for (ISO 8601, UTC)
TICK_ENV = "HELIOS_CRON_TICK"
#: with catch_up: none, a tick later than this (seconds) counts as missed
DEFAULT_TOLERANCE = 60.0
#: ticks counted one by one before the search for the newest switches to windows
_COUNT_CAP = 1000
#: version meaning "the stored value is corrupt: overwrite it" (fenced, unconditional)
_OVERWRITE = -2
#: claims per batched transaction (a run record is a few KiB; ZooKeeper takes 1 MiB)
_BATCH = 50
#: concurrent claims when falling back to one transaction each
_CLAIMS = 16
#: attempts to claim one job's tick when another writer keeps moving /cron/<job>
_ATTEMPTS = 3

Running = Callable[[str], bool] | Collection[str]


# --------------------------------------------------------------------------- pure parts


@functools.lru_cache(maxsize=1024)
def _parse(expression: str, timezone: str | None) -> CronSchedule:
    return parse_cron(expression, timezone)


def schedule_of(rec: JobRecord) -> CronSchedule:
    """The parsed schedule of a cron job (cached); raises CronError."""
    if rec.spec.schedule is None:
        raise CronError(f"cron job {rec.name} has no schedule")
    return _parse(rec.spec.schedule, rec.spec.timezone)


def _utc(t: datetime | float) -> datetime:
    if isinstance(t, datetime):
        return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    return datetime.fromtimestamp(t, UTC)


def _iso(t: datetime) -> str:
    s = _utc(t).isoformat()
    return s.replace("+00:00", "Z")


def run_name(job: str, tick: datetime, schedule: CronSchedule | None = None) -> str:
    """The run of `job` for `tick`: `<job>-<yyyymmddhhmm>` in UTC, with seconds appended
    when the schedule fires at seconds other than 0. Deterministic, so a second claim of
    the same tick collides instead of starting a second run."""
    t = _utc(tick)
    with_seconds = schedule is not None and schedule.seconds != frozenset({0})
    return f"{job}-{t:%Y%m%d%H%M}" + (f"{t:%S}" if with_seconds or t.second else "")


def latest_tick(schedule: CronSchedule, after: datetime, now: datetime
                ) -> tuple[datetime | None, int]:
    """The newest tick t with after < t <= now, and how many ticks lie in that range
    (exact up to 1000, a lower bound past it). Long gaps of a dense schedule are searched
    in windows instead of tick by tick."""
    after, now = _utc(after), _utc(now)
    t = schedule.next_tick(after)
    latest: datetime | None = None
    count = 0
    while t <= now and count < _COUNT_CAP:
        latest, count = t, count + 1
        t = schedule.next_tick(t)
    if t > now:
        return latest, count
    for window in (60, 3600, 86400, 7 * 86400, 32 * 86400, 367 * 86400):
        start = max(after, datetime.fromtimestamp(now.timestamp() - window, UTC))
        for t in schedule.ticks_between(start, now):
            latest = t
        if latest is not None and latest > start:
            break
    return latest, count


def decide_tick(schedule: CronSchedule, last: datetime, now: datetime, *,
                catch_up: str = "one", overlap: str = "skip", running: bool = False,
                stopped: bool = False, led_since: datetime | None = None,
                tolerance: float = DEFAULT_TOLERANCE
                ) -> tuple[datetime | None, bool, str, int]:
    """What to do at `now` for a job whose last consumed tick is `last`.

    Returns (tick, fire, reason, missed): `tick` None when no tick is due (nothing to
    write); else the tick to consume, `fire` whether it starts a run, `reason` for the
    history, `missed` how many older ticks were passed over."""
    tick, count = latest_tick(schedule, last, now)
    if tick is None:
        return None, False, "", 0
    missed = max(count - 1, 0)
    late = (_utc(now) - tick).total_seconds()
    note = (f"; {missed}{'+' if count >= _COUNT_CAP else ''} older missed "
            f"tick{'s' if missed != 1 else ''} not run") if missed else ""
    if stopped:
        return tick, False, "job is stopped" + note, missed
    if overlap == "skip" and running:
        return tick, False, "previous run still active (overlap: skip)" + note, missed
    if catch_up == "none":
        if led_since is not None and tick < _utc(led_since):
            return tick, False, ("missed while no conductor led (catch_up: none)"
                                 + note), missed
        if late > tolerance:
            return tick, False, (f"missed by {late:.0f}s (catch_up: none)" + note), missed
    if missed:
        return tick, True, f"caught up (catch_up: one){note}", missed
    return tick, True, "scheduled tick", missed


def running_templates(jobs: Mapping[str, JobRecord] | Iterable[JobRecord],
                      assignments: Mapping[str, Assignment] | Iterable[Assignment],
                      statuses: Mapping[str, TaskStatus] | Iterable[TaskStatus]
                      ) -> set[str]:
    """Templates (cron or parameterized jobs) that have a run still going: a run that is
    not stopped and has fewer finished slots (exited, or failed for good) than its count,
    including a run not placed yet. Pass the result as `running=` for overlap: skip."""
    recs = list(jobs.values() if isinstance(jobs, Mapping) else jobs)
    st = {s.id: s for s in (statuses.values() if isinstance(statuses, Mapping)
                            else statuses)}
    done: dict[str, set[int]] = {}
    for a in (assignments.values() if isinstance(assignments, Mapping) else assignments):
        s = st.get(a.id)
        if s is not None and s.node == a.node and s.state in ("exited", "failed"):
            done.setdefault(a.job, set()).add(a.index)
    return {r.parent for r in recs
            if r.parent and not r.stopped and len(done.get(r.name, ())) < r.spec.count}


def _is_running(running: Running, job: str) -> bool:
    if callable(running):
        return bool(running(job))
    return job in running


def _cron_jobs(jobs: Mapping[str, JobRecord] | Iterable[JobRecord]) -> list[JobRecord]:
    recs = jobs.values() if isinstance(jobs, Mapping) else jobs
    return sorted((r for r in recs if r.spec.kind == "cron" and r.parent is None),
                  key=lambda r: r.name)


def _baseline(rec: JobRecord, stored: Mapping[str, Any] | None) -> float | None:
    """Epoch seconds of the last consumed tick: the stored one, but never before the job
    was created (a job re-created under an old name does not catch up its old ticks)."""
    last = None
    if stored is not None and isinstance(stored.get("last_epoch"), int | float):
        last = float(stored["last_epoch"])
    if rec.created > 0:
        last = rec.created if last is None else max(last, rec.created)
    return last


def next_wakeup(jobs: Mapping[str, JobRecord] | Iterable[JobRecord],
                last: Mapping[str, float], now: float) -> float | None:
    """Epoch seconds of the earliest moment any cron job in `jobs` has a tick to consume
    (`now` if one is due already or a job's last tick is unknown); None without cron jobs.
    `last` maps job names to their last consumed tick (epoch seconds)."""
    wake: float | None = None
    for rec in _cron_jobs(jobs):
        try:
            schedule = schedule_of(rec)
        except CronError:
            continue
        base = last.get(rec.name)
        if base is None:
            return now
        t = schedule.next_tick(_utc(base)).timestamp()
        t = max(t, now)
        wake = t if wake is None else min(wake, t)
    return wake


# --------------------------------------------------------------------------- claiming


@dataclass(frozen=True)
class CronOutcome:
    """One consumed tick: fired (with its run) or skipped, and why."""

    job: str
    tick: datetime
    fired: bool
    reason: str
    run: str | None = None
    record: JobRecord | None = field(default=None, repr=False, compare=False)
    missed: int = 0
    at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.job, "tick": _iso(self.tick),
                "action": "fired" if self.fired else "skipped", "run": self.run,
                "reason": self.reason, "missed": self.missed, "at": self.at}

    def history_event(self) -> dict[str, Any]:
        """The record for the template's history (`helios job history <cron job>`)."""
        state = "cron fired" if self.fired else "cron skipped"
        what = f"tick {_iso(self.tick)}" + (f": run {self.run}" if self.run else "")
        return event(self.job, "", "", state, f"{what}; {self.reason}", at=self.at,
                     run=self.run, tick=_iso(self.tick), missed=self.missed)


@dataclass(frozen=True)
class Claim:
    """A decision not yet written: consume `tick` of `job` (and start `record` if it
    fires), with a compare-and-set of `/cron/<job>` at `version` (-1: create it)."""

    job: JobRecord
    tick: datetime | None          # None: only pin the baseline of a new job
    fire: bool
    reason: str
    missed: int
    version: int
    value: dict[str, Any]
    record: JobRecord | None = None

    def outcome(self) -> CronOutcome:
        """What consuming this claim's tick is, once written (a tick is required)."""
        assert self.tick is not None
        return CronOutcome(self.job.name, self.tick, self.fire, self.reason,
                           self.record.name if self.record else None, self.record,
                           self.missed, float(self.value["at"]))


class CronRunner:
    """Fires the cron jobs of one leadership term. Not shared between terms: make a new
    one when a term starts (its `led_since` is that moment, for catch_up: none)."""

    def __init__(self, term: Term, *, clock: Callable[[], float] = time.time,
                 tolerance: float = DEFAULT_TOLERANCE, led_since: float | None = None,
                 events: EventLog | None = None) -> None:
        self.term = term
        #: the cluster's event stream, written in each claim's transaction too
        self.events = events
        self.store = term.store
        self.clock = clock
        self.tolerance = tolerance
        self.led_since = clock() if led_since is None else led_since
        # job -> (stored value or None, version or -1): what this term last read/wrote
        self._known: dict[str, tuple[dict[str, Any] | None, int]] = {}
        self._dirs_ok = False
        #: jobs whose `/history/<job>` this term made sure exists
        self._history_dirs: set[str] = set()

    # -- reading and deciding ---------------------------------------------------------

    async def _read(self, job: str) -> tuple[dict[str, Any] | None, int]:
        """`/cron/<job>` as (value or None, version; -1 when missing). A value that does
        not decode is logged and overwritten at the next claim (version -2)."""
        try:
            entry = await self.store.get(paths.cron(job))
        except CorruptValue as e:
            log.error("cron state of %s is unreadable (%s); it will be overwritten", job, e)
            known: tuple[dict[str, Any] | None, int] = ({}, _OVERWRITE)
        else:
            known = (None, -1) if entry is None else (
                entry.value if isinstance(entry.value, dict) else {}, entry.version)
        self._known[job] = known
        return known

    def _decide_one(self, rec: JobRecord, stored: dict[str, Any] | None, version: int,
                    now: float, running: Running) -> Claim | None:
        try:
            schedule = schedule_of(rec)
        except CronError as e:
            log.warning("cron job %s: %s", rec.name, e)
            return None
        base = _baseline(rec, stored)
        if base is None:
            # a job without a creation time and no state yet: its clock starts now
            value = {"last": _iso(_utc(now)), "last_epoch": now, "action": "start",
                     "run": None, "fired": None, "reason": "first seen",
                     "epoch": self.term.epoch, "at": now}
            return Claim(rec, None, False, "first seen", 0, version, value)
        tick, fire, reason, missed = decide_tick(
            schedule, _utc(base), _utc(now), catch_up=rec.spec.catch_up or "one",
            overlap=rec.spec.overlap or "skip", running=_is_running(running, rec.name),
            stopped=rec.stopped, led_since=_utc(self.led_since), tolerance=self.tolerance)
        if tick is None:
            return None
        record = None
        name = None
        if fire:
            name = run_name(rec.name, tick, schedule)
            spec = run_spec(rec.spec, name[len(rec.name) + 1:], env={TICK_ENV: _iso(tick)})
            record = JobRecord(spec=spec, version=1, parent=rec.name, created=now)
        value = {"last": _iso(tick), "last_epoch": tick.timestamp(),
                 "action": "fired" if fire else "skipped", "run": name,
                 "fired": _iso(tick) if fire else (stored or {}).get("fired"),
                 "reason": reason, "epoch": self.term.epoch, "at": now}
        return Claim(rec, tick, fire, reason, missed, version, value, record)

    async def decide(self, jobs: Mapping[str, JobRecord] | Iterable[JobRecord], *,
                     running: Running = (), now: float | None = None) -> list[Claim]:
        """The claims due at `now` (default: the clock) for the cron jobs among `jobs`
        (other kinds and runs are ignored). Reads `/cron/<job>` for jobs this runner has
        not seen yet; writes nothing."""
        now = self.clock() if now is None else now
        claims = []
        for rec in _cron_jobs(jobs):
            known = self._known.get(rec.name)
            if known is None:
                known = await self._read(rec.name)
            claim = self._decide_one(rec, known[0], known[1], now, running)
            if claim is not None:
                claims.append(claim)
        return claims

    # -- writing ------------------------------------------------------------------------

    async def _ensure_dirs(self) -> None:
        if not self._dirs_ok:
            await self.store.ensure(paths.CRON)
            await self.store.ensure(paths.JOBS)
            self._dirs_ok = True

    async def _ensure_history_dirs(self, claims: Iterable[Claim]) -> None:
        for claim in claims:
            job = claim.job.name
            if claim.tick is not None and job not in self._history_dirs:
                await self.store.ensure(paths.history(job))
                self._history_dirs.add(job)

    async def _ops(self, claim: Claim) -> list[Op]:
        """The claim's writes, in one fenced transaction: `/cron/<job>`, the run it
        starts, and the tick's event in the job's history (and the event stream). Why
        the event too: written with the next flush instead, a leader that dies in
        between leaves a tick consumed (and its run started) that `helios job history`
        never shows."""
        job = claim.job.name
        cron_op: Op = (Create(paths.cron(job), claim.value) if claim.version == -1
                       else Set(paths.cron(job), claim.value, version=max(claim.version, -1)))
        ops: list[Op] = [cron_op]
        if claim.record is not None:
            ops.append(Create(paths.job(claim.record.name), claim.record.to_dict()))
        if claim.tick is not None:
            ev = claim.outcome().history_event()
            if self.events is not None:
                ops.extend(await self.events.append_ops([ev]))
            ops.append(Create(paths.history_event_prefix(job), {"events": [ev]},
                              sequential=True))
        return ops

    def _written(self, claim: Claim, result: Any) -> CronOutcome | None:
        """Note a committed claim; its outcome (None for a baseline-only write)."""
        job = claim.job.name
        version = 0 if claim.version == -1 else int(result)
        self._known[job] = (claim.value, version)
        if claim.tick is None:
            return None
        outcome = claim.outcome()
        log.info("cron %s: %s tick %s%s (%s)", job, "fired" if claim.fire else "skipped",
                 _iso(claim.tick), f" as {outcome.run}" if outcome.run else "",
                 claim.reason)
        return outcome

    async def _commit_one(self, claim: Claim, running: Running) -> CronOutcome | None:
        job = claim.job.name
        for _ in range(_ATTEMPTS):
            try:
                ops = await self._ops(claim)
                results = await self.term.transaction(ops)
            except TransactionFailed as e:
                if e.index == len(ops) - 1 and isinstance(e.cause, NoNode) and \
                        claim.tick is not None:
                    # the job's history was collected and made anew: make it again
                    self._history_dirs.discard(job)
                    await self._ensure_history_dirs([claim])
                    continue
                if e.index == 0:
                    # someone else moved /cron/<job> (a racing leader): decide again
                    stored, version = await self._read(job)
                    now = float(claim.value["at"])
                    again = self._decide_one(claim.job, stored, version, now, running)
                    if again is None:
                        log.info("cron %s: tick already consumed by another writer", job)
                        return None
                    claim = again
                    continue
                if e.index == 1 and isinstance(e.cause, NodeExists):
                    # the run exists though /cron is older: consume the tick, no 2nd run
                    assert claim.record is not None
                    run = claim.record.name
                    why = f"run {run} already exists"
                    claim = Claim(claim.job, claim.tick, False, why, claim.missed,
                                  claim.version, claim.value | {
                                      "action": "skipped", "run": run, "reason": why})
                    continue
                raise
            return self._written(claim, results[0])
        log.warning("cron %s: gave up claiming after %d conflicts", job, _ATTEMPTS)
        return None

    async def _commit_chunk(self, chunk: list[Claim], running: Running
                            ) -> list[CronOutcome | None]:
        """One transaction for the whole chunk (the common case: nobody else writes);
        if any claim in it fails, each is retried in its own transaction."""
        ops: list[Op] = []
        first: list[int] = []
        for claim in chunk:
            first.append(len(ops))
            ops.extend(await self._ops(claim))
        try:
            results = await self.term.transaction(ops)
        except TransactionFailed as e:
            log.info("cron: batched claim failed (%s); claiming one by one", e)
        else:
            return [self._written(c, results[i]) for c, i in zip(chunk, first, strict=True)]
        out: dict[int, CronOutcome | None] = {}
        errors: list[Exception] = []
        limit = trio.CapacityLimiter(_CLAIMS)

        async def one(i: int, claim: Claim) -> None:
            async with limit:
                try:
                    out[i] = await self._commit_one(claim, running)
                except Exception as e:  # raised below, unwrapped, after the others end
                    errors.append(e)

        async with trio.open_nursery() as nursery:
            for i, claim in enumerate(chunk):
                nursery.start_soon(one, i, claim)
        if errors:
            stale = [e for e in errors if isinstance(e, StaleEpoch)]
            raise (stale or errors)[0]
        return [out.get(i) for i in range(len(chunk))]

    async def commit(self, claims: Iterable[Claim], *, running: Running = ()
                     ) -> list[CronOutcome]:
        """Write `claims`: batched in fenced transactions (each claim falls back to its
        own if a batch fails). Returns what was fired or skipped, in job order (a claim
        that another writer beat yields nothing: that writer reports it). Raises
        `StaleEpoch` when this term is over."""
        claims = list(claims)
        if not claims:
            return []
        await self._ensure_dirs()
        await self._ensure_history_dirs(claims)
        outcomes: list[CronOutcome] = []
        for i in range(0, len(claims), _BATCH):
            done = await self._commit_chunk(claims[i:i + _BATCH], running)
            outcomes.extend(o for o in done if o is not None)
        return outcomes

    async def run_due(self, jobs: Mapping[str, JobRecord] | Iterable[JobRecord], *,
                      running: Running = (), now: float | None = None
                      ) -> list[CronOutcome]:
        """`decide` then `commit`: consume every tick due at `now`. Call it on every pass
        of the leader, and at `next_wakeup`. Idempotent: a second call at the same `now`
        does nothing. `running` names the templates with an active run (a set, or a
        callable) for overlap: skip; `running_templates` computes it."""
        return await self.commit(await self.decide(jobs, running=running, now=now),
                                 running=running)

    # -- timing -------------------------------------------------------------------------

    def last_consumed(self) -> dict[str, float]:
        """Last consumed tick per job, as this runner knows it (epoch seconds)."""
        out = {}
        for job, (stored, _v) in self._known.items():
            if stored is not None and isinstance(stored.get("last_epoch"), int | float):
                out[job] = float(stored["last_epoch"])
        return out

    def next_wakeup(self, jobs: Mapping[str, JobRecord] | Iterable[JobRecord],
                    now: float | None = None) -> float | None:
        """When to call `run_due` next (epoch seconds; None without cron jobs)."""
        now = self.clock() if now is None else now
        last: dict[str, float] = {}
        for rec in _cron_jobs(jobs):
            known = self._known.get(rec.name)
            if known is None:
                continue  # unknown: next_wakeup returns now
            base = _baseline(rec, known[0])
            if base is not None:
                last[rec.name] = base
        return next_wakeup(jobs, last, now)

    def forget(self, job: str) -> None:
        """`job` was removed (and its `/cron/<job>` with it): read it afresh if a job of
        that name comes back."""
        self._known.pop(job, None)
