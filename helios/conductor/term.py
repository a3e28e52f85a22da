"""`Leadership`: everything one leadership term owns (the cache, the fenced writer, the
history buffer, the wake-up event, what the nodes were last told...). Made when a term is
won, dropped whole when it ends: nothing here is trusted across terms.

State only: the term's workers (`node_sync.NodeSync`, `reconcile_loop.ReconcileLoop`,
`collector.Collector`) each hold the one `Leadership` of their term.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import trio

from helios.conductor.cron_runner import CronRunner
from helios.conductor.gc import KeyRecord
from helios.conductor.history import History
from helios.conductor.plan import ClusterState, Pending, RolloutStep
from helios.conductor.store_writer import Writer
from helios.coordination.election import Term
from helios.coordination.errors import StaleEpoch

__all__ = ["Leadership"]


@dataclass
class Leadership:
    """Everything one leadership term owns; dropped whole when the term ends."""

    term: Term
    state: ClusterState
    writer: Writer
    history: History
    lock: trio.Lock = field(default_factory=trio.Lock)
    wake: trio.Event = field(default_factory=trio.Event)
    ready: trio.Event = field(default_factory=trio.Event)
    pending: list[Pending] = field(default_factory=list)
    steps: list[RolloutStep] = field(default_factory=list)  # last plan's rollout slots
    generation: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    push_flags: dict[str, trio.Event] = field(default_factory=dict)
    want_statuses: set[str] = field(default_factory=set)
    unpushed: set[str] = field(default_factory=set)
    records: dict[str, Any] = field(default_factory=dict)
    presence: dict[str, Any] = field(default_factory=dict)
    nursery: trio.Nursery | None = None
    cron: CronRunner | None = None  # the cron runner of this term
    #: service job -> tasks with a registered endpoint, for jobs being rolled out
    registered: dict[str, set[str]] = field(default_factory=dict)
    #: garbage collection (gc.py): when the next pass may run, idempotency keys read so
    #: far (path -> record; keys never change), and collected runs whose history is
    #: still to be deleted
    gc_next: float = 0.0
    keys: dict[str, KeyRecord] = field(default_factory=dict)
    drop_history: set[str] = field(default_factory=set)
    #: histories without a job: name -> when this term first saw them so (gc.py)
    history_absent: dict[str, float] = field(default_factory=dict)

    @property
    def epoch(self) -> int:
        return self.term.epoch

    def poke(self) -> None:
        """Wake the reconcile loop (level-triggered: it looks at the whole state)."""
        self.wake.set()

    def check_term(self) -> None:
        """Raise `StaleEpoch` once the term is known lost: nothing more is written."""
        if self.term.lost.is_set():
            raise StaleEpoch(self.epoch)
