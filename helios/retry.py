"""`Backoff`: the one exponential retry delay of Helios's loops (a node waiting for its
store or its conductor, a leader pushing to an unreachable node, a loop restarted after
an unexpected error...).

Why a small object rather than a function that retries: each loop decides itself what a
failure is, what it logs and what else may wake it early; only the arithmetic (start at
`first`, double after each failure up to `cap`, start again after a success) was written
ten times over, and is here once.
"""

from __future__ import annotations

import trio

__all__ = ["Backoff"]


class Backoff:
    """Delays of `first`, `2*first`, ... up to `cap`; `reset()` after a success."""

    def __init__(self, first: float, cap: float) -> None:
        if not 0 < first <= cap:
            raise ValueError(f"a backoff needs 0 < first <= cap, not {first}, {cap}")
        self.first = float(first)
        self.cap = float(cap)
        #: the delay the next `next()` / `sleep()` waits
        self.delay = self.first

    def reset(self) -> None:
        """A success: the next failure waits `first` again."""
        self.delay = self.first

    def next(self) -> float:
        """The delay to wait after this failure; the following one doubles (capped)."""
        delay = self.delay
        self.delay = min(self.cap, self.delay * 2)
        return delay

    async def sleep(self) -> None:
        """Wait out this failure's delay."""
        await trio.sleep(self.next())
