"""ACL tokens for people and scripts (docs/security.md), kept in the store.

Layout (under the cluster's root):

  /acl                  {"enabled": true, "since": time}: ACLs are on (`helios acl bootstrap`)
  /acl/tokens/<name>    {"name", "role", "hash", "created"}: one token; `hash` is the
                        SHA-256 of its secret (the secret itself is printed once and kept
                        nowhere; tokens are 256 random bits, so a fast hash is enough)

Every conductor follows both with watches (`TokenCache`): the authorization policy looks a
token up in memory, and removing a token's entry revokes it within the watch's delay
(milliseconds) on every conductor, for connections already open too (the token is looked
up for every request, never remembered per connection).

Writes go through the leader's term (`TokenAdmin`, fenced by its epoch), so a deposed
leader can neither create nor revoke a token.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import trio

from helios.coordination import paths
from helios.coordination.errors import (
    CoordinationError,
    CorruptValue,
    NodeExists,
    TransactionFailed,
)
from helios.coordination.store import Create, Delete, Store

log = logging.getLogger(__name__)

__all__ = ["ENV_TOKEN", "ROLES", "AclError", "TokenAdmin", "TokenCache", "hash_secret",
           "load_token"]

ROLES = ("management", "operator", "reader")
ENV_TOKEN = "HELIOS_TOKEN"
ENV_TOKEN_FILE = "HELIOS_TOKEN_FILE"
#: the token `helios acl bootstrap` makes
BOOTSTRAP_NAME = "bootstrap"


class AclError(Exception):
    """A token operation refused (already bootstrapped, unknown token...): one line."""


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def load_token(token_file: str | os.PathLike[str] | None = None,
               environ: dict[str, str] | None = None) -> str:
    """The token a client sends: `--token-file F`, else HELIOS_TOKEN, else the file named
    by HELIOS_TOKEN_FILE; "" if none. A file holds the secret on its first line."""
    env = os.environ if environ is None else environ
    file = token_file or (None if env.get(ENV_TOKEN) else env.get(ENV_TOKEN_FILE))
    if file:
        try:
            text = Path(file).read_text()
        except OSError as e:
            raise AclError(f"cannot read the token file {file}: {e.strerror or e}") from None
        token = text.strip().splitlines()[0].strip() if text.strip() else ""
        if not token:
            raise AclError(f"the token file {file} is empty")
        return token
    return env.get(ENV_TOKEN, "").strip()


class TokenCache:
    """What the store says about ACLs, kept current by watches (see module docstring).

    `enabled()` is None until the first read (the policy then refuses people rather than
    guess), True once bootstrapped. `resolve(secret)` -> (name, role) or None."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._enabled: bool | None = None
        self._by_hash: dict[str, tuple[str, str]] = {}
        self._records: dict[str, dict[str, Any]] = {}
        self.loaded = trio.Event()
        self.version = 0  # bumped by every change (tests wait on it)

    def enabled(self) -> bool | None:
        return self._enabled

    def resolve(self, secret: str) -> tuple[str, str] | None:
        return self._by_hash.get(hash_secret(secret))

    def records(self) -> list[dict[str, Any]]:
        return [dict(r) for _, r in sorted(self._records.items())]

    async def run(self) -> None:
        """Follow /acl and /acl/tokens until cancelled (survives outages)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow_switch)
            nursery.start_soon(self._follow_tokens)

    async def _follow_switch(self) -> None:
        while True:
            try:
                async with aclosing(self.store.watch_data(paths.ACL)) as entries:
                    async for entry in entries:
                        self._enabled = bool(entry is not None and isinstance(
                            entry.value, dict) and entry.value.get("enabled"))
                        self._changed()
            except CoordinationError as e:
                log.warning("following the ACL switch paused: %s", e)
                await trio.sleep(1.0)

    async def _follow_tokens(self) -> None:
        while True:
            try:
                async with aclosing(self.store.watch_children(paths.ACL_TOKENS)) as names_:
                    async for names in names_:
                        await self._sync(set(names))
            except CoordinationError as e:
                log.warning("following the ACL tokens paused: %s", e)
                await trio.sleep(1.0)

    async def _sync(self, names: set[str]) -> None:
        # Revocations first and at once: nothing to read for them.
        for gone in set(self._records) - names:
            del self._records[gone]
        for name in sorted(names - set(self._records)):
            try:
                entry = await self.store.get(paths.acl_token(name))
            except CorruptValue as e:
                log.warning("%s", e)
                continue
            if entry is None or not isinstance(entry.value, dict):
                continue
            rec = entry.value
            if rec.get("role") in ROLES and isinstance(rec.get("hash"), str):
                self._records[name] = rec
        self._by_hash = {r["hash"]: (name, r["role"]) for name, r in self._records.items()}
        self._changed()

    def _changed(self) -> None:
        self.version += 1
        if self._enabled is not None and not self.loaded.is_set():
            self.loaded.set()


def _record(name: str, role: str, secret: str) -> dict[str, Any]:
    return {"name": name, "role": role, "hash": hash_secret(secret), "created": time.time()}


def public(rec: dict[str, Any]) -> dict[str, Any]:
    """What `acl token ls` shows of a token: never its hash, let alone its secret."""
    return {"name": rec.get("name"), "role": rec.get("role"), "created": rec.get("created")}


class TokenAdmin:
    """Token operations, made by the leader through `transact` (its fenced transaction)."""

    def __init__(self, store: Store, transact: Callable[[list[Any]], Awaitable[Any]]) -> None:
        self.store = store
        self.transact = transact

    async def bootstrap(self) -> dict[str, Any]:
        if await self.store.exists(paths.ACL):
            raise AclError("ACLs are already bootstrapped; ask a management token holder "
                           "for a token (`helios acl token create`)")
        secret = new_secret()
        ops: list[Any] = [Create(paths.ACL, {"enabled": True, "since": time.time()})]
        if not await self.store.exists(paths.ACL_TOKENS):
            ops.append(Create(paths.ACL_TOKENS, None))
        ops.append(Create(paths.acl_token(BOOTSTRAP_NAME),
                          _record(BOOTSTRAP_NAME, "management", secret)))
        try:
            await self.transact(ops)
        except (NodeExists, TransactionFailed):
            if await self.store.exists(paths.ACL):  # another bootstrap won the race
                raise AclError("ACLs are already bootstrapped") from None
            raise
        return {"name": BOOTSTRAP_NAME, "role": "management", "secret": secret}

    async def create(self, name: str, role: str) -> dict[str, Any]:
        if role not in ROLES:
            raise AclError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        try:
            paths.check_name(name)
        except ValueError as e:
            raise AclError(str(e)) from None
        if not await self.store.exists(paths.ACL):
            raise AclError("ACLs are off: run `helios acl bootstrap` first")
        if await self.store.exists(paths.acl_token(name)):
            raise AclError(f"a token named {name!r} exists already; remove it first")
        secret = new_secret()
        await self.transact([Create(paths.acl_token(name), _record(name, role, secret))])
        return {"name": name, "role": role, "secret": secret}

    async def ls(self) -> list[dict[str, Any]]:
        out = []
        for name in await self.store.children(paths.ACL_TOKENS):
            try:
                entry = await self.store.get(paths.acl_token(name))
            except CorruptValue:
                continue
            if entry is not None and isinstance(entry.value, dict):
                out.append(public(entry.value))
        return out

    async def rm(self, name: str) -> dict[str, Any]:
        try:
            paths.check_name(name)
        except ValueError as e:
            raise AclError(str(e)) from None
        entry = await self.store.get(paths.acl_token(name))
        if entry is None:
            raise AclError(f"no token named {name!r}")
        if isinstance(entry.value, dict) and entry.value.get("role") == "management":
            others = [t for t in await self.ls()
                      if t["role"] == "management" and t["name"] != name]
            if not others:
                raise AclError(f"{name!r} is the last management token: create another "
                               "first, or no one could manage tokens again")
        await self.transact([Delete(paths.acl_token(name))])
        return {"name": name, "removed": True}
