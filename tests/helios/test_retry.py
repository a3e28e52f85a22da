"""`helios.retry.Backoff`: doubling, capped, reset by a success."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from helios.retry import Backoff


def test_delays_double_up_to_the_cap_and_reset() -> None:
    b = Backoff(0.25, 1.0)
    assert [b.next() for _ in range(5)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    b.reset()
    assert b.delay == 0.25 and b.next() == 0.25


def test_nonsense_is_refused() -> None:
    for first, cap in ((0, 1), (2, 1), (-1, 5)):
        with pytest.raises(ValueError):
            Backoff(first, cap)


async def test_sleep_waits_the_delay(autojump_clock: trio.testing.MockClock) -> None:
    b = Backoff(1.0, 4.0)
    start = trio.current_time()
    for _ in range(4):
        await b.sleep()
    assert trio.current_time() - start == pytest.approx(1 + 2 + 4 + 4)
