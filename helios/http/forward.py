"""`Forwarder`: how every HTTP route asks the conductor, the way the CLI does over the
network: this process's conductor actor, and when it is a standby (`NotLeader` naming the
leader) the leader instead, so reads and writes work on any conductor."""

from __future__ import annotations

import time
from typing import Any

import trio

import actors
from helios import protocol
from helios.http.messages import ApiError

__all__ = ["LEADER_WAIT", "STATUS", "Forwarder"]

#: how long a request waits for a leader during a failover before answering 503
LEADER_WAIT = 10.0
#: conductor error type -> HTTP status (anything else refused by the conductor: 400)
STATUS = {"JobNotFound": 404, "TaskNotFound": 404, "NodeNotFound": 404, "NodeUp": 409,
          "SpecError": 422, "DispatchError": 422, "PayloadTooLarge": 413,
          "NodeUnreachable": 502, "ValueError": 400}


def _one_line(text: str) -> str:
    parts = [p.strip() for p in str(text).splitlines() if p.strip()]
    return "; ".join(parts)


class Forwarder:
    """Asks this process's conductor actor, or the leader when it is a standby."""

    def __init__(self, system: actors.ActorSystem, local_url: str,
                 timeout: float = 30.0) -> None:
        self.system = system
        self.local_url = local_url
        self.timeout = timeout

    async def call(self, method: str, *args: Any, wait: float | None = None,
                   **kwargs: Any) -> Any:
        deadline = time.monotonic() + (LEADER_WAIT if wait is None else wait)
        url = self.local_url
        last = "no leader is known"
        while True:
            try:
                return await self.system.ref(url).ask(method, *args, timeout=self.timeout,
                                                      **kwargs)
            except actors.RemoteError as e:
                if e.type_name != "NotLeader":
                    raise ApiError(STATUS.get(e.type_name, 400),
                                   _one_line(e.message or e.type_name)) from None
                if e.message and url == self.local_url:
                    url = protocol.conductor_url(e.message)  # one hop to the leader
                    continue
                last = "no leader is known" if not e.message else \
                    f"the leader moved ({e.message})"
            except actors.AskTimeout:
                raise ApiError(504, f"the conductor did not answer {method} within "
                                    f"{self.timeout:g}s") from None
            except actors.ActorError as e:
                last = f"cannot reach the leader at {url}: {e}"
            url = self.local_url
            if time.monotonic() > deadline:
                raise ApiError(503, last)
            await trio.sleep(0.2)
