"""The conductor's secret commands (`helios secret set/ls/rm/rewrap`), forwarded by the
`ConductorActor` (front.py).

The leader seals and writes in its term (fenced by its epoch, `helios.secrets.store`);
who may ask is the authorization table's business, never this module's. A changed
secret is a changed job for every job that uses it: each is submitted again with the
secret's new revision in its fingerprint, so it rolls like any other change.
"""

from __future__ import annotations

from typing import Any

from helios.conductor.commands import Commands
from helios.conductor.errors import NotLeader
from helios.conductor.term import Leadership
from helios.coordination.errors import StaleEpoch
from helios.secrets.resolve import uses
from helios.secrets.store import SecretAdmin

__all__ = ["SecretCommands"]


class SecretCommands:
    """The secret commands of one conductor; see the module docstring."""

    def __init__(self, commands: Commands) -> None:
        self.commands = commands
        self.c = commands.c

    async def _secret(self, op: str, *args: Any) -> Any:
        """A secret operation by the leader in its term (helios.secrets.store)."""
        T = await self.c.leading()
        L = T.lead
        async with L.lock:
            admin = SecretAdmin(self.c.store, L.term.transaction, self.c.secrets.keyring)
            try:
                return await getattr(admin, op)(*args)
            except StaleEpoch:
                L.term.lost.set()
                raise NotLeader(self.c.leader_url()) from None

    @staticmethod
    def _users(L: Leadership, name: str) -> list[str]:
        return sorted(r.name for r in L.state.jobs.values() if name in uses(r.spec))

    async def secret_set(self, name: str, value: Any) -> dict[str, Any]:
        """Seal and store; every job using the secret is submitted again at its new
        revision, so it rolls like any other change."""
        out = await self._secret("set", name, value)
        L = (await self.c.leading()).lead
        rolled = []
        for job in self._users(L, name):
            rec = L.state.jobs.get(job)
            if rec is not None and rec.parent is None and not rec.stopped and \
                    (await self.commands._submit(rec.spec)).get("changed"):
                rolled.append(job)
        return dict(out) | {"rolled": rolled}

    async def secret_ls(self) -> list[dict[str, Any]]:
        return list(await self._secret("ls"))

    async def secret_rm(self, name: str) -> dict[str, Any]:
        L = (await self.c.leading()).lead
        return dict(await self._secret("rm", name, self._users(L, name)))

    async def secret_rewrap(self) -> dict[str, Any]:
        return dict(await self._secret("rewrap"))
