"""Opening the store while ZooKeeper may be down: say so once, then retry quietly.

A conductor or node may boot before its ensemble, so opening waits as long as it takes.
What an operator needs is one line naming the address ("ZooKeeper unreachable at
zk1:2181: ..."), not a retry warning per attempt from us and kazoo; and a daemon asked to
stop while it waits must stop at once, so each attempt is short (the connect runs in a
thread that cancellation cannot interrupt).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from helios.coordination.errors import Unavailable
from helios.coordination.store import Store
from helios.retry import Backoff

log = logging.getLogger(__name__)

__all__ = ["ATTEMPT_TIMEOUT", "FIRST_ATTEMPT_TIMEOUT", "open_when_reachable", "zk_hosts"]

#: connect timeout of one attempt: also the longest a stop request waits for one. The
#: first is shorter, so "unreachable" is said within 2 s of the start.
ATTEMPT_TIMEOUT = 1.5
FIRST_ATTEMPT_TIMEOUT = 1.0


def zk_hosts(url: str) -> str:
    """`zk://h1:2181,h2:2181/root` -> `h1:2181,h2:2181/root` (what the user typed)."""
    return url.removeprefix("zk://")


async def open_when_reachable(opener: Callable[[float], Awaitable[Store]], where: str,
                              who: str, max_delay: float = 5.0, said: bool = False) -> Store:
    """Call ``opener(connect_timeout)`` until it returns a store; log the first failure
    once as a warning
    naming ``where`` (unless ``said``: the caller did already), later ones at debug
    level, and the recovery."""
    backoff = Backoff(0.25, max_delay)
    failures = 1 if said else 0
    while True:
        try:
            store = await opener(FIRST_ATTEMPT_TIMEOUT if failures == 0 else ATTEMPT_TIMEOUT)
        except Unavailable as e:
            failures += 1
            if failures == 1:
                reason = str(e).split(": ", 1)[-1] if str(e).startswith("cannot") else str(e)
                if "KazooTimeoutError" in reason:
                    reason = "no answer"
                log.warning("%s: ZooKeeper unreachable at %s (%s); retrying quietly until "
                            "it answers", who, where, reason)
            else:
                log.debug("%s: ZooKeeper still unreachable at %s (%s)", who, where, e)
            await backoff.sleep()
            continue
        if failures:
            log.warning("%s: ZooKeeper reachable at %s after %d failed attempts", who, where,
                        failures)
        return store
