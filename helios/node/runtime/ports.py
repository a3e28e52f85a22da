"""Host port allocation for one node.

Docker publishes each named container port on 127.0.0.1 at a host port the node picks
from its range (the job file: a host port is picked by the node unless `host:` is given). The
allocator is the single owner of that choice on a node, so two tasks never get the same
port; it also probes the OS, so a port held by something outside Helios is skipped (for
picked ports) or refused with a clear reason (for fixed ones).

It is plain synchronous code: a job actor calls it between awaits, and the bind probe is
a non-blocking syscall.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping

from helios.node.runtime.base import PortConflict, PortsExhausted


class PortAllocator:
    """Hands out host ports from `[start, end]` and remembers who holds each one.

    `owner` is any stable key (the container name). Allocation for one owner is
    all-or-nothing: on a conflict nothing stays reserved. A released port is not handed
    out again until the cursor comes round, which keeps a just-stopped container's port
    from being reused while clients may still talk to it.
    """

    def __init__(self, start: int = 21000, end: int = 21999, host: str = "127.0.0.1",
                 probe: bool = True) -> None:
        if not 0 < start <= end < 65536:
            raise ValueError(f"bad port range {start}-{end}")
        self.start, self.end, self.host, self.probe = start, end, host, probe
        self._holder: dict[int, str] = {}
        self._cursor = start

    def holder(self, port: int) -> str | None:
        """Who holds `port`, if anyone."""
        return self._holder.get(port)

    def held_by(self, owner: str) -> list[int]:
        """The ports `owner` holds."""
        return sorted(p for p, o in self._holder.items() if o == owner)

    def allocate(self, owner: str, wanted: Mapping[str, int | None]) -> dict[str, int]:
        """Reserve a host port for every name in `wanted` (None = pick one).

        Fixed ports are honoured even outside the range. Raises `PortConflict` when a
        fixed port is taken and `PortsExhausted` when the range is full.
        """
        taken: list[int] = []
        result: dict[str, int] = {}
        try:
            for name, fixed in wanted.items():
                if fixed is not None:
                    self._take_fixed(owner, name, fixed)
                    taken.append(fixed)
                    result[name] = fixed
            for name, fixed in wanted.items():
                if fixed is None:
                    port = self._pick(owner)
                    taken.append(port)
                    result[name] = port
        except PortConflict:
            for port in taken:
                if self._holder.get(port) == owner:
                    del self._holder[port]
            raise
        return result

    def reserve(self, owner: str, port: int) -> None:
        """Mark `port` as held by `owner` without probing (adoption of a running task)."""
        current = self._holder.get(port)
        if current is not None and current != owner:
            raise PortConflict(f"host port {port} is already used by {current}")
        self._holder[port] = owner

    def release(self, owner: str) -> None:
        """Free every port `owner` holds."""
        for port in self.held_by(owner):
            del self._holder[port]

    def _take_fixed(self, owner: str, name: str, port: int) -> None:
        current = self._holder.get(port)
        if current is not None and current != owner:
            raise PortConflict(f"port {name}: host port {port} is already used by {current}")
        if current is None and self.probe and not self._os_free(port):
            raise PortConflict(
                f"port {name}: host port {port} is in use by another process on this node")
        self._holder[port] = owner

    def _pick(self, owner: str) -> int:
        size = self.end - self.start + 1
        for _ in range(size):
            port = self._cursor
            self._cursor = self.start if port >= self.end else port + 1
            if port in self._holder:
                continue
            if self.probe and not self._os_free(port):
                continue
            self._holder[port] = owner
            return port
        raise PortsExhausted(
            f"no free host port left in the node's range {self.start}-{self.end}")

    def _os_free(self, port: int) -> bool:
        """True when nothing listens on host:port (TIME_WAIT leftovers do not count)."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((self.host, port))
            except OSError:
                return False
        return True
