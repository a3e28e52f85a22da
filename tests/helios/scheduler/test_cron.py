"""Cron: fields, aliases, Vixie day rule, seconds form, time zones and DST, errors."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helios.cron import CronError, parse_cron

NY = ZoneInfo("America/New_York")


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def test_every_five_minutes():
    s = parse_cron("*/5 * * * *")
    assert s.next_tick(utc(2026, 1, 1, 0, 3)) == utc(2026, 1, 1, 0, 5)
    assert s.next_tick(utc(2026, 1, 1, 0, 5)) == utc(2026, 1, 1, 0, 10)  # strictly after


def test_lists_ranges_steps_names():
    s = parse_cron("0,30 9-17/4 * JAN-MAR,DEC MON-FRI")
    ticks = list(s.ticks_between(utc(2026, 1, 1), utc(2026, 1, 3)))
    # Jan 1 2026 is a Thursday, Jan 2 a Friday, Jan 3 a Saturday
    hours = [(t.day, t.hour, t.minute) for t in ticks]
    assert hours == [(1, 9, 0), (1, 9, 30), (1, 13, 0), (1, 13, 30), (1, 17, 0), (1, 17, 30),
                     (2, 9, 0), (2, 9, 30), (2, 13, 0), (2, 13, 30), (2, 17, 0), (2, 17, 30)]
    assert parse_cron("0 0 * * 7").weekdays == parse_cron("0 0 * * SUN").weekdays == {0}
    assert parse_cron("5/20 * * * *").minutes == {5, 25, 45}


@pytest.mark.parametrize(("alias", "equiv"), [
    ("@hourly", "0 * * * *"), ("@daily", "0 0 * * *"), ("@midnight", "0 0 * * *"),
    ("@weekly", "0 0 * * 0"), ("@monthly", "0 0 1 * *"), ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
])
def test_aliases(alias, equiv):
    a, b = parse_cron(alias), parse_cron(equiv)
    t = utc(2026, 5, 17, 13, 45)
    assert a.next_tick(t) == b.next_tick(t)


def test_vixie_or_when_both_days_restricted():
    s = parse_cron("0 12 13 * FRI")  # the 13th OR any Friday
    days = [t.day for t in s.ticks_between(utc(2026, 2, 1), utc(2026, 2, 28, 23))]
    assert days == [6, 13, 20, 27]  # Feb 13 2026 is itself a Friday
    s2 = parse_cron("0 12 1 * MON")
    days2 = [t.day for t in s2.ticks_between(utc(2026, 6, 1), utc(2026, 6, 30, 23))]
    assert days2 == [1, 8, 15, 22, 29]  # June 1 2026 is a Monday: once, not twice
    s3 = parse_cron("0 12 */2 * *")  # a star-step day field is not "restricted"
    assert s3.next_tick(utc(2026, 6, 2, 13)).day == 3


def test_and_when_one_day_field_is_star():
    s = parse_cron("0 0 * * MON")
    t = s.next_tick(utc(2026, 6, 2))
    assert t.weekday() == 0


def test_seconds_field():
    s = parse_cron("*/2 * * * * *")
    assert s.next_tick(utc(2026, 1, 1, 0, 0, 1)) == utc(2026, 1, 1, 0, 0, 2)
    assert s.next_tick(datetime(2026, 1, 1, 0, 0, 2, 500)) == utc(2026, 1, 1, 0, 0, 4)
    assert len(list(s.ticks_between(utc(2026, 1, 1), utc(2026, 1, 1, 0, 1)))) == 30


def test_timezone_wall_clock():
    s = parse_cron("0 9 * * *", "Europe/Paris")
    t = s.next_tick(utc(2026, 1, 10, 12))
    assert t.astimezone(UTC) == utc(2026, 1, 11, 8)  # 09:00 CET
    t = s.next_tick(utc(2026, 7, 10, 12))
    assert t.astimezone(UTC) == utc(2026, 7, 11, 7)  # 09:00 CEST


def test_spring_forward_fixed_time_runs_once_at_the_jump():
    s = parse_cron("30 2 * * *", "America/New_York")  # 02:30 does not exist on Mar 8 2026
    t = s.next_tick(utc(2026, 3, 7, 12))
    assert t.astimezone(UTC) == utc(2026, 3, 8, 7)  # 03:00 EDT, the instant of the jump
    assert s.next_tick(t).astimezone(NY).replace(tzinfo=None) == datetime(2026, 3, 9, 2, 30)


def test_fall_back_fixed_time_runs_once():
    s = parse_cron("30 1 * * *", "America/New_York")  # 01:30 happens twice on Nov 1 2026
    ticks = list(s.ticks_between(utc(2026, 11, 1, 0), utc(2026, 11, 2, 0)))
    assert [t.astimezone(UTC) for t in ticks] == [utc(2026, 11, 1, 5, 30)]


def test_fall_back_wildcard_hour_runs_in_both_hours():
    s = parse_cron("0 * * * *", "America/New_York")
    ticks = list(s.ticks_between(utc(2026, 11, 1, 4, 30), utc(2026, 11, 1, 7, 30)))
    assert [t.astimezone(UTC).hour for t in ticks] == [5, 6, 7]  # 01:00 EDT, 01:00 EST, 02:00


def test_spring_forward_wildcard_hour_skips_missing_times():
    s = parse_cron("0 * * * *", "America/New_York")
    ticks = list(s.ticks_between(utc(2026, 3, 8, 5, 30), utc(2026, 3, 8, 8, 30)))
    assert [t.astimezone(NY).hour for t in ticks] == [1, 3, 4]


def test_leap_day():
    assert parse_cron("0 0 29 2 *").next_tick(utc(2026, 3, 1)) == utc(2028, 2, 29)


@pytest.mark.parametrize(("expr", "fragment"), [
    ("* * *", "has 3 fields"),
    ("61 * * * *", "minute field: 61 is out of range 0-59"),
    ("* 24 * * *", "hour field: 24 is out of range 0-23"),
    ("* * 0 * *", "day-of-month field: 0 is out of range 1-31"),
    ("* * * FOO *", 'month field: "FOO" is not a number'),
    ("* * * * MON-FOO", 'day-of-week field: "FOO"'),
    ("5-1 * * * *", "range start 5 is after its end 1"),
    ("*/0 * * * *", 'step "0" must be a number > 0'),
    ("1,,2 * * * *", "empty list item"),
    ("0 0 30 2 *", "never fires"),
    ("@reboot", "not a known alias"),
    ("", "has 0 fields"),
])
def test_errors_name_the_field(expr, fragment):
    with pytest.raises(CronError, match=None) as e:
        parse_cron(expr)
    assert fragment in str(e.value)


def test_bad_timezone():
    with pytest.raises(CronError, match="not a known time zone"):
        parse_cron("* * * * *", "Mars/Olympus")


def test_naive_means_utc():
    s = parse_cron("0 * * * *")
    assert s.next_tick(datetime(2026, 1, 1, 0, 30)) == utc(2026, 1, 1, 1)


fields = st.tuples(
    st.sets(st.integers(0, 59), min_size=1, max_size=4),
    st.sets(st.integers(0, 23), min_size=1, max_size=3),
    st.sampled_from(["*", "1", "15", "1-10", "*/7"]),
    st.sampled_from(["*", "2", "1-6", "*/3"]),
    st.sampled_from(["*", "0", "1-5", "SAT"]),
)


@settings(max_examples=60, deadline=None)
@given(f=fields, start=st.datetimes(min_value=datetime(2020, 1, 1),
                                    max_value=datetime(2030, 1, 1)),
       tz=st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"]))
def test_next_tick_matches_and_nothing_is_skipped(f, start, tz):
    """Every tick matches the expression in wall time, ticks increase, and a brute-force
    minute walk finds no matching minute in between (away from DST changes)."""
    mins, hours, dom, mon, dow = f
    expr = (f"{','.join(map(str, sorted(mins)))} {','.join(map(str, sorted(hours)))} "
            f"{dom} {mon} {dow}")
    s = parse_cron(expr, tz)
    zone = ZoneInfo(tz)
    a = start.replace(tzinfo=UTC)
    t = s.next_tick(a)
    assert t > a
    local = t.astimezone(zone)
    if local.utcoffset() == (t - timedelta(hours=3)).astimezone(zone).utcoffset():
        assert local.minute in mins and local.hour in hours and local.month in s.months
        gap = (t - a).total_seconds()
        if gap < 3 * 86400:
            m = a.replace(second=0, microsecond=0) + timedelta(minutes=1)
            while m < t:
                w = m.astimezone(zone)
                assert not (w.minute in mins and w.hour in hours and s._day_matches(w)), m
                m += timedelta(minutes=1)
