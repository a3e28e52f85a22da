"""Identity and authorization (docs/security.md).

- `tls`: the cluster CA and certificates naming a role and a name;
- `authz`: the authorization table and the `actors.Policy` every Helios process runs;
- `tokens`: ACL tokens for people and scripts, kept hashed in the store;
- `audit`: the record of operator actions and refusals.

`ConductorSecurity` is what a conductor process runs of it: the token cache and the audit
log, both over the cluster's store.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from helios.coordination.store import Store
from helios.security.audit import AuditLog
from helios.security.tokens import TokenCache

__all__ = ["ConductorSecurity"]


@dataclass
class ConductorSecurity:
    """A conductor's token cache and audit log (run them with `run`)."""

    tokens: TokenCache
    audit: AuditLog

    @classmethod
    def over(cls, store: Store, name: str) -> ConductorSecurity:
        return cls(TokenCache(store), AuditLog(store, origin=name))

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.tokens.run)
            nursery.start_soon(self.audit.run)
