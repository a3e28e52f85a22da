"""The conductor's actors: `CoreActor` runs the contention loop (`Conductor.run`) and
`ConductorActor` (registered as `protocol.CONDUCTOR_ACTOR`) answers nodes and the CLI.

`ConductorActor` holds no state and its handlers only forward to `commands.Commands`:
error answers (`NotLeader`, `JobNotFound`, a bad spec) are `actors.Refusal`s that leave
it running, and if it ever crashes its supervisor restarts it at once while the core and
its term live on in `CoreActor`.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

import actors
from helios import protocol
from helios.conductor.commands import Commands
from helios.conductor.conductor import Conductor
from helios.conductor.errors import EXPECTED

__all__ = ["ConductorActor", "CoreActor", "conductor_tree"]

_T = TypeVar("_T")


class CoreActor(actors.Actor):
    """Runs the conductor's contention loop for as long as it lives."""

    def __init__(self, conductor: Conductor) -> None:
        self.conductor = conductor

    async def on_start(self) -> None:
        self.start_soon(self.conductor.run)


class ConductorActor(actors.Actor):
    """`protocol.CONDUCTOR_ACTOR`: the handlers of protocol.py, for nodes and the CLI."""

    def __init__(self, conductor: Conductor) -> None:
        self.conductor = conductor
        self.c = Commands(conductor)

    @actors.handler
    async def task_events(self, node: str, events: list[Any]) -> int:
        return await _answer(self.c.task_events(node, events))

    @actors.handler
    async def job_run(self, spec: dict[str, Any]) -> dict[str, Any]:
        return await _answer(self.c.job_run(spec))

    @actors.handler
    async def job_plan(self, spec: dict[str, Any]) -> dict[str, Any]:
        return await _answer(self.c.job_plan(spec))

    @actors.handler
    async def job_scale(self, name: str, count: Any) -> dict[str, Any]:
        return await _answer(self.c.job_scale(name, count))

    @actors.handler
    async def job_versions(self, name: str) -> list[dict[str, Any]]:
        return await _answer(self.c.job_versions(name))

    @actors.handler
    async def job_revert(self, name: str, version: Any) -> dict[str, Any]:
        return await _answer(self.c.job_revert(name, version))

    @actors.handler
    async def job_inspect(self, name: str) -> dict[str, Any]:
        return await _answer(self.c.job_inspect(name))

    @actors.handler
    async def job_ls(self) -> list[dict[str, Any]]:
        return await _answer(self.c.job_ls())

    @actors.handler
    async def job_status(self, name: str) -> dict[str, Any]:
        return await _answer(self.c.job_status(name))

    @actors.handler
    async def job_stop(self, name: str) -> dict[str, Any]:
        return await _answer(self.c.job_stop(name))

    @actors.handler
    async def job_rm(self, name: str) -> dict[str, Any]:
        return await _answer(self.c.job_rm(name))

    @actors.handler
    async def job_history(self, name: str) -> list[dict[str, Any]]:
        return await _answer(self.c.job_history(name))

    @actors.handler
    async def job_logs(self, name: str, task: str | None = None, since: Any = None,
                       tail: int | None = None) -> dict[str, Any]:
        return await _answer(self.c.job_logs(name, task=task, since=since, tail=tail))

    @actors.handler
    async def job_dispatch(self, name: str, payload: Any = None,
                           idempotency_key: str | None = None) -> dict[str, Any]:
        return await _answer(self.c.job_dispatch(name, payload=payload,
                                         idempotency_key=idempotency_key))

    @actors.handler
    async def nodes(self) -> list[dict[str, Any]]:
        return await _answer(self.c.nodes())

    @actors.handler
    async def node_rm(self, name: str, force: bool = False) -> dict[str, Any]:
        return await _answer(self.c.node_rm(name, force=force))

    @actors.handler
    async def node_drain(self, name: str, deadline: float | None = None,
                         draining: bool = True, eligible: bool | None = None
                         ) -> dict[str, Any]:
        return await _answer(self.c.node_drain(name, deadline, draining, eligible))

    @actors.handler
    async def rebalance(self, dry_run: bool = False) -> dict[str, Any]:
        return await _answer(self.c.rebalance(dry_run))

    @actors.handler
    async def node_drain_status(self, name: str) -> dict[str, Any]:
        return await _answer(self.c.node_drain_status(name))

    @actors.handler
    async def endpoints(self, name: str) -> list[dict[str, Any]]:
        return await _answer(self.c.endpoints(name))

    @actors.handler
    async def leader(self) -> dict[str, Any]:
        return self.conductor.leader()

    @actors.handler
    async def events(self, after: int = -1, job: str | None = None,
                     limit: int = 1000) -> dict[str, Any]:
        return await _answer(self.c.events(after, job, limit))

    @actors.handler
    async def acl_bootstrap(self) -> dict[str, Any]:
        return await _answer(self.c.acl_bootstrap())

    @actors.handler
    async def acl_token_create(self, name: str, role: str) -> dict[str, Any]:
        return await _answer(self.c.acl_token_create(name, role))

    @actors.handler
    async def acl_token_ls(self) -> list[dict[str, Any]]:
        return await _answer(self.c.acl_token_ls())

    @actors.handler
    async def acl_token_rm(self, name: str) -> dict[str, Any]:
        return await _answer(self.c.acl_token_rm(name))

    @actors.handler
    async def audit(self, since: float | None = None, limit: int = 10_000
                    ) -> list[dict[str, Any]]:
        return await _answer(self.c.audit(since, limit))


async def _answer(call: Awaitable[_T]) -> _T:
    """Run a handler's work; an expected error (NotLeader, JobNotFound, a bad spec...) is
    the answer, refused to the asker under its own type name, and leaves the actor as
    it was. Anything else is a fault: the actor crashes and its supervisor restarts it."""
    try:
        return await call
    except actors.Refusal:
        raise
    except Exception as e:
        if type(e).__name__ in EXPECTED:
            raise actors.Refusal(str(e), type_name=type(e).__name__) from e
        raise


def conductor_tree(conductor: Conductor) -> list[actors.ChildSpec]:
    """Children of the conductor's supervisor: the core (contention, term) and the front
    (client handlers). Either is restarted if it crashes; the core then contends again
    from the store. Error answers are refusals and end neither."""
    return [actors.child(CoreActor, conductor, name="conductor-core", restart="permanent"),
            actors.child(ConductorActor, conductor, name=protocol.CONDUCTOR_ACTOR,
                         restart="permanent")]
