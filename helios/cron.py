"""Cron expressions: parse once, then ask for the next tick after any instant.

Standard five fields (minute hour day-of-month month day-of-week) with lists, ranges, steps
and names (``MON``, ``JAN``), the ``@hourly``-style aliases, and Vixie cron's rule that
when both day-of-month and day-of-week are restricted a day matching *either* fires. A
six-field form with a leading seconds field is accepted so tests can use second-resolution
schedules.

Time zones are real (``zoneinfo``): a schedule names wall-clock times in its zone, UTC by
default. Around daylight-saving changes we follow Vixie cron, which is what operators
expect: a job with a fixed hour whose time is skipped by a spring-forward runs once, at the
moment the clocks jump; a fixed-hour job whose time repeats in the autumn runs only the
first time; jobs whose hour field is ``*`` simply run at the wall times that exist.

The search walks real time in 15-minute blocks (every zone offset in use is a multiple of 15
minutes, so the offset is constant inside a block) and skips whole hours and days that
cannot match, so a yearly schedule is found in a few thousand cheap steps. Pure: no clock is
read here; callers pass ``after``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["CronError", "CronSchedule", "parse_cron"]


class CronError(ValueError):
    """An expression or time zone that cannot be used; the message says which part."""


ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTHS = {m: i for i, m in enumerate(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1)}
_DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}

# name, low, high, names
_FIELDS = {
    "second": (0, 59, {}),
    "minute": (0, 59, {}),
    "hour": (0, 23, {}),
    "day-of-month": (1, 31, {}),
    "month": (1, 12, _MONTHS),
    "day-of-week": (0, 7, _DAYS),
}
_DAYS_IN_MONTH = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31,
                  11: 30, 12: 31}
_BLOCK = 900  # seconds; zone offsets are multiples of this


def _value(text: str, name: str, names: dict[str, int], lo: int, hi: int) -> int:
    upper = text.upper()
    if upper in names:
        return names[upper]
    if not text.isdigit():
        hint = f" (names: {', '.join(names)})" if names else ""
        raise CronError(f'{name} field: "{text}" is not a number{hint}')
    n = int(text)
    if not lo <= n <= hi:
        raise CronError(f"{name} field: {n} is out of range {lo}-{hi}")
    return n


def _parse_field(text: str, name: str) -> frozenset[int]:
    lo, hi, names = _FIELDS[name]
    out: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f'{name} field "{text}": empty list item')
        rng, _, step_text = part.partition("/")
        step = 1
        if _:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f'{name} field "{part}": step "{step_text}" must be a number > 0')
            step = int(step_text)
        if rng == "*":
            a, b = lo, hi
        elif "-" in rng:
            first, _, last = rng.partition("-")
            a = _value(first, name, names, lo, hi)
            b = _value(last, name, names, lo, hi)
            if a > b:
                raise CronError(f'{name} field "{part}": range start {a} is after its end {b}')
        else:
            a = _value(rng, name, names, lo, hi)
            b = hi if _ else a  # "5/15" means 5-max/15, as in Vixie cron
        out.update(range(a, b + 1, step))
    if name == "day-of-week" and 7 in out:
        out.discard(7)
        out.add(0)
    return frozenset(out)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed expression in a time zone; ask it for ticks."""

    expression: str
    timezone: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool
    hours_wildcard: bool
    _tz: ZoneInfo = field(repr=False, compare=False, hash=False)
    _sorted: tuple[tuple[int, ...], tuple[int, ...]] = field(repr=False, compare=False,
                                                             hash=False)

    def _day_matches(self, d: datetime) -> bool:
        if d.month not in self.months:
            return False
        dom = d.day in self.days
        dow = (d.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return dom or dow
        return dom and dow

    def _wall_matches_minute(self, w: datetime) -> bool:
        return (self._day_matches(w) and w.hour in self.hours and w.minute in self.minutes)

    def next_tick(self, after: datetime) -> datetime:
        """The first tick strictly after ``after`` (naive means UTC), in the schedule's zone."""
        if after.tzinfo is None:
            after = after.replace(tzinfo=UTC)
        after_ts = after.timestamp()
        minutes_sorted, seconds_sorted = self._sorted
        tz = self._tz
        block = math.floor(after_ts / _BLOCK) * _BLOCK
        limit = block + 10 * 366 * 86400
        while block < limit:
            lt = datetime.fromtimestamp(block, tz)
            off = lt.utcoffset()
            prev_off = datetime.fromtimestamp(block - 1, tz).utcoffset()
            if (off is not None and prev_off is not None and off > prev_off
                    and not self.hours_wildcard and block > after_ts):
                # Spring forward: wall times in [lt - jump, lt) never happen. A fixed-hour
                # job due in that gap runs once, now.
                gap_start = lt.replace(tzinfo=None) - (off - prev_off)
                w = gap_start
                while w < lt.replace(tzinfo=None):
                    if self._wall_matches_minute(w):
                        return datetime.fromtimestamp(block, tz)
                    w += timedelta(minutes=1)
            if not self._day_matches(lt):
                to_midnight = 86400 - (lt.hour * 3600 + lt.minute * 60 + lt.second)
                target = block + to_midnight - 7200  # margin for a DST change on the way
                block = max(block + _BLOCK, math.floor(target / _BLOCK) * _BLOCK)
                continue
            if lt.hour not in self.hours or (lt.fold == 1 and not self.hours_wildcard):
                block += _BLOCK * (4 - lt.minute // 15) if lt.fold == 0 else _BLOCK
                continue
            for m in minutes_sorted:
                if m < lt.minute:
                    continue
                if m >= lt.minute + 15:
                    break
                base = block + (m - lt.minute) * 60 - lt.second
                for s in seconds_sorted:
                    ts = base + s
                    if ts > after_ts:
                        return datetime.fromtimestamp(ts, tz)
            block += _BLOCK
        raise CronError(f'"{self.expression}" has no tick in the ten years after {after}')

    def ticks_between(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """Every tick t with start < t <= end, in order."""
        if end.tzinfo is None:
            end = end.replace(tzinfo=UTC)
        t = self.next_tick(start)
        while t <= end:
            yield t
            t = self.next_tick(t)


def parse_cron(expression: str, timezone: str | None = None) -> CronSchedule:
    """Parse ``expression`` for ``timezone`` (IANA name, default UTC); raise CronError."""
    if not isinstance(expression, str):
        raise CronError(f"{expression!r} is not a cron expression (a string)")
    tzname = timezone or "UTC"
    try:
        tz = ZoneInfo(tzname)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(f'"{tzname}" is not a known time zone (e.g. UTC, Europe/Paris)') from None
    text = expression.strip()
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            raise CronError(f'"{text}" is not a known alias ({", ".join(ALIASES)})')
        text = ALIASES[text.lower()]
    parts = text.split()
    if len(parts) == 5:
        parts = ["0", *parts]
    elif len(parts) != 6:
        raise CronError(
            f'"{expression}" has {len(parts)} fields; expected 5 '
            "(minute hour day-of-month month day-of-week) or 6 with leading seconds")
    names = ["second", "minute", "hour", "day-of-month", "month", "day-of-week"]
    sets = {n: _parse_field(p, n) for n, p in zip(names, parts, strict=True)}
    dom_r, dow_r = not parts[3].startswith("*"), not parts[5].startswith("*")
    if dom_r and not dow_r and not any(
            d <= _DAYS_IN_MONTH[m] for m in sets["month"] for d in sets["day-of-month"]):
        raise CronError(f'"{expression}" never fires: no chosen month has those days')
    return CronSchedule(
        expression=expression, timezone=tzname,
        seconds=sets["second"], minutes=sets["minute"], hours=sets["hour"],
        days=sets["day-of-month"], months=sets["month"], weekdays=sets["day-of-week"],
        days_restricted=dom_r, weekdays_restricted=dow_r,
        hours_wildcard=parts[2].startswith("*"),
        _tz=tz, _sorted=(tuple(sorted(sets["minute"])), tuple(sorted(sets["second"]))),
    )
