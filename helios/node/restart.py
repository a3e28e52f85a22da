"""What to do when a task's container exits: the restart policy as a pure state machine.

Kept apart from the job actor (no I/O, no clock of its own: callers pass `now`) so every
rule is tested on plain numbers: policies always / on-failure / never, the `max` number of
restarts, exponential backoff capped at `BACKOFF_CAP`, the backoff reset after a run that
lasted `stable_after` seconds, and flap detection (more than `flap_restarts` restarts within
`flap_window` seconds ends the task as failed, "flapping", whatever the policy: a container
that keeps dying after a short run would otherwise cycle for ever, each run looking healthy
for a moment and hiding the problem from the conductor).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TypedDict

from helios.spec import RestartPolicy

BACKOFF_CAP = 60.0
STABLE_AFTER = 30.0
FLAP_RESTARTS = 10
FLAP_WINDOW = 300.0


class RestartOptions(TypedDict, total=False):
    """A node's tuning of `RestartTracker` (tests make restarts fast with it)."""

    backoff_cap: float
    stable_after: float
    flap_restarts: int
    flap_window: float


@dataclass(frozen=True)
class Decision:
    """`restart` after `delay` seconds, or end in `state` ("exited"/"failed") for `reason`."""

    restart: bool
    delay: float = 0.0
    state: str = ""
    reason: str = ""


def describe_exit(code: int | None, oom: bool = False, error: str = "") -> str:
    """A sentence for an exit: 'exited with code 3', 'killed (out of memory)'..."""
    if oom:
        return f"killed: out of memory (exit code {code})"
    if code is None:
        return error or "the container disappeared"
    if code == 0:
        return "exited with code 0"
    if code > 128 and code - 128 in (9, 15):
        sig = {9: "SIGKILL", 15: "SIGTERM"}[code - 128]
        return f"killed by {sig} (exit code {code})"
    return f"exited with code {code}" + (f": {error}" if error else "")


class RestartTracker:
    """Counts restarts of one task and decides the next step after each exit."""

    def __init__(self, policy: RestartPolicy, *, restarts: int = 0,
                 backoff_cap: float = BACKOFF_CAP, stable_after: float = STABLE_AFTER,
                 flap_restarts: int = FLAP_RESTARTS, flap_window: float = FLAP_WINDOW) -> None:
        self.policy = policy
        self.restarts = restarts      # total, reported as TaskStatus.restarts
        self.consecutive = 0          # since the last stable run: drives the backoff
        self.backoff_cap = backoff_cap
        self.stable_after = stable_after
        self.flap_restarts = flap_restarts
        self.flap_window = flap_window
        self._recent: deque[float] = deque()

    def backoff(self) -> float:
        """Delay before the next restart: base x 2^consecutive, capped."""
        return min(self.backoff_cap, self.policy.backoff * (2 ** self.consecutive))

    def on_exit(self, code: int | None, *, ran_for: float, now: float,
                batch: bool = False, what: str = "") -> Decision:
        """The container exited with `code` (None: it vanished) after running `ran_for` s."""
        what = what or describe_exit(code)
        if ran_for >= self.stable_after:
            self.consecutive = 0
        p = self.policy
        success = code == 0
        wants = p.policy == "always" or (p.policy == "on-failure" and not success)
        if batch and success:
            wants = False  # a batch task that succeeded is done, whatever the policy
        if not wants:
            if success:
                return Decision(False, state="exited", reason=what)
            extra = "" if p.policy == "never" else f" after {self.restarts} restarts"
            return Decision(False, state="failed", reason=f"{what}{extra}")
        if p.max is not None and self.restarts >= p.max:
            return Decision(False, state="exited" if success else "failed",
                            reason=f"{what}; gave up after {self.restarts} restarts "
                                   f"(restart.max {p.max})")
        while self._recent and now - self._recent[0] > self.flap_window:
            self._recent.popleft()
        if len(self._recent) >= self.flap_restarts:
            return Decision(False, state="failed",
                            reason=f"flapping: {what}; restarted {len(self._recent)} times "
                                   f"within {self.flap_window:g}s")
        delay = self.backoff()
        self._recent.append(now)
        self.restarts += 1
        self.consecutive += 1
        return Decision(True, delay=delay, reason=what)
