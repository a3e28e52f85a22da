"""`Supervisor`: restarts children by strategy, within a restart intensity, as OTP does.

Read it like OTP's supervisor.erl: child specs are validated when they come in; each
strategy is one small function saying which children to stop and restart; the restart
intensity is one sliding window; shutdown goes through children in reverse start order.

Restart types: `permanent` children are always restarted; `transient` ones only after an
abnormal exit (anything but `normal` or `shutdown`); `temporary` ones never, and they are
forgotten once they end. More than `max_restarts` restarts within `within` seconds and the
supervisor gives up: it stops its remaining children and ends abnormally, so that its own
supervisor (if any) applies its strategy to it.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import trio

from ._actor import NORMAL_REASONS, Actor, Cell, _Exit, handler

log = logging.getLogger("actors.supervisor")

STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")
RESTART_TYPES = ("permanent", "transient", "temporary")


@dataclass
class ChildSpec:
    """How to start one child and when to restart it (see `child`)."""

    cls: type[Actor]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    restart: str = "permanent"


def child(cls: type[Actor], *args: Any, name: str | None = None, restart: str = "permanent",
          **kwargs: Any) -> ChildSpec:
    """A child spec: `child(Counter, 0, name="c1", restart="transient")`."""
    return ChildSpec(cls, args, kwargs, name, restart)


@dataclass
class _Child:
    spec: ChildSpec
    name: str
    cell: Cell | None = None
    restarts: int = 0


class Supervisor(Actor):
    """An actor whose job is to keep its children running."""

    def __init__(self, strategy: str = "one_for_one", max_restarts: int = 3,
                 within: float = 5.0, children: list[ChildSpec] | None = None) -> None:
        problems = []
        if strategy not in STRATEGIES:
            problems.append(f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
        if not _whole_number(max_restarts):
            problems.append(f"max_restarts must be a whole number >= 0, not {max_restarts!r}")
        if not _positive_number(within):
            problems.append(f"within must be a positive number of seconds, not {within!r}")
        specs = list(children or [])
        names: set[str] = set()
        for i, spec in enumerate(specs):
            if not isinstance(spec, ChildSpec):
                problems.append(f"children[{i}] must be made with actors.child(...)")
                continue
            cls: object = spec.cls  # checked at run time: callers are not always typed
            if not (isinstance(cls, type) and issubclass(cls, Actor)):
                problems.append(f"children[{i}]: {spec.cls!r} is not an Actor subclass")
            if spec.restart not in RESTART_TYPES:
                problems.append(f"children[{i}]: restart must be one of "
                                f"{', '.join(RESTART_TYPES)}, not {spec.restart!r}")
            if spec.name is not None:
                if spec.name in names:
                    problems.append(f"children[{i}]: duplicate child name {spec.name!r}")
                names.add(spec.name)
        if problems:
            raise ValueError("invalid supervisor: " + "; ".join(problems))
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.within = float(within)
        self._specs = specs
        self._children: list[_Child] = []
        self._restart_times: deque[float] = deque()

    async def on_start(self) -> None:
        for i, spec in enumerate(self._specs):
            name = spec.name or f"{self.name}.{spec.cls.__name__.lower()}-{i}"
            entry = _Child(spec, name)
            self._children.append(entry)
            await self._start(entry)

    # -- introspection ---------------------------------------------------------------------
    @handler
    async def which_children(self) -> list[dict[str, Any]]:
        return [{"name": c.name, "restart": c.spec.restart,
                 "running": c.cell is not None and not c.cell.finished,
                 "restarts": c.restarts} for c in self._children]

    @handler
    async def count_children(self) -> dict[str, int]:
        running = sum(1 for c in self._children if c.cell is not None and not c.cell.finished)
        return {"specs": len(self._children), "active": running}

    # -- the restart machinery -------------------------------------------------------------
    async def _start(self, entry: _Child) -> None:
        spec = entry.spec
        await self.spawn(spec.cls, *spec.args, name=entry.name, **spec.kwargs)
        entry.cell = self._cell.system.cell(entry.name)

    async def _child_exited(self, cell: Cell, reason: str, detail: str) -> None:
        self._cell.children.pop(cell, None)
        entry = next((c for c in self._children if c.cell is cell), None)
        if entry is None:  # a child we stopped ourselves, or one already replaced
            return
        entry.cell = None
        restart = entry.spec.restart
        if restart == "temporary" or (restart == "transient" and reason in NORMAL_REASONS):
            if restart == "temporary":
                self._children.remove(entry)
            return
        log.info("supervisor %s: child %s exited (%s%s); %s", self.name, entry.name, reason,
                 f": {detail}" if detail else "", self.strategy)
        await self._restart(entry)

    def _note_restart(self) -> None:
        now = trio.current_time()
        times = self._restart_times
        times.append(now)
        while times and now - times[0] > self.within:
            times.popleft()
        if len(times) > self.max_restarts:
            raise _GiveUp(f"reached max restart intensity ({self.max_restarts} restarts "
                          f"within {self.within:g}s)")

    async def _restart(self, failed: _Child) -> None:
        try:
            while True:
                self._note_restart()
                to_restart = _STRATEGY[self.strategy](self._children, failed)
                for other in reversed(to_restart):
                    if other is not failed and other.cell is not None:
                        cell, other.cell = other.cell, None
                        self._cell.children.pop(cell, None)
                        await cell.shutdown("shutdown")
                try:
                    for entry in to_restart:
                        if entry.cell is None and entry in self._children:
                            entry.restarts += entry is failed or self.strategy != "one_for_one"
                            await self._start(entry)
                    return
                except Exception as e:  # a child failed in on_start: that is a restart too
                    log.warning("supervisor %s: restarting failed: %s", self.name, e)
        except _GiveUp as e:
            log.error("supervisor %s gives up: %s", self.name, e)
            for entry in reversed(self._children):
                if entry.cell is not None:
                    cell, entry.cell = entry.cell, None
                    self._cell.children.pop(cell, None)
                    await cell.shutdown("shutdown")
            raise _Exit("error", str(e)) from None


def _whole_number(value: object) -> bool:
    """An int >= 0, and not a bool (the arguments come from callers that may not be
    type-checked, such as a job file)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _positive_number(value: object) -> bool:
    return isinstance(value, (int, float)) and value > 0


class _GiveUp(Exception):
    pass


def _one_for_one(children: list[_Child], failed: _Child) -> list[_Child]:
    return [failed]


def _one_for_all(children: list[_Child], failed: _Child) -> list[_Child]:
    return list(children)


def _rest_for_one(children: list[_Child], failed: _Child) -> list[_Child]:
    return children[children.index(failed):]


_STRATEGY = {"one_for_one": _one_for_one, "one_for_all": _one_for_all,
             "rest_for_one": _rest_for_one}
