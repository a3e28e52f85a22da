"""Secrets in the cluster's store, sealed: `/secrets/<name>`.

    {"name", "sealed": {"key", "nonce", "ciphertext"}, "rev", "created", "updated"}

Only ciphertext is ever written (both store backends hold the same record); the
keyring that opens it lives in the conductors' key file (`helios.secrets.keyring`).
`rev` is a digest of the sealed record made by `secret set`, new on every set (the
nonce is random), so it changes with the value without saying anything about it
(`secret rewrap` seals the same value again and keeps it): jobs carry it
in their references (`helios.secrets.refs`) and roll when it changes.

`SecretAdmin` writes through the leader's fenced transaction, like `TokenAdmin`: a
deposed leader can change no secret.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from helios.coordination import paths
from helios.coordination.errors import CorruptValue
from helios.coordination.store import Create, Delete, Set, Store
from helios.secrets.keyring import Keyring, Sealed, SecretCorrupt
from helios.secrets.refs import NAME_RE, NAME_RULE

__all__ = ["MAX_VALUE", "SecretAdmin", "SecretError", "public", "read_revs", "read_values"]

#: largest value accepted (a certificate bundle fits; a store record stays small)
MAX_VALUE = 64 * 1024


class SecretError(Exception):
    """A secret operation or reference refused (unknown name, no key file...): one line."""


def check_secret_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise SecretError(f"invalid secret name {str(name)[:64]!r}: {NAME_RULE}")
    return name


def _rev(sealed: Sealed) -> str:
    return hashlib.sha256(sealed.key.encode() + b"\0" + sealed.nonce
                          + sealed.ciphertext).hexdigest()[:16]


def public(rec: dict[str, Any]) -> dict[str, Any]:
    """What `secret ls` shows: never the value, nor its ciphertext."""
    raw = rec.get("sealed")
    sealed: dict[str, Any] = raw if isinstance(raw, dict) else {}
    return {"name": rec.get("name"), "rev": rec.get("rev"), "key": sealed.get("key"),
            "created": rec.get("created"), "updated": rec.get("updated")}


async def _record(store: Store, name: str) -> dict[str, Any] | None:
    try:
        entry = await store.get(paths.secret(name))
    except CorruptValue as e:
        raise SecretError(f"secret {name!r}: its record is unreadable ({e})") from None
    if entry is None:
        return None
    if not isinstance(entry.value, dict) or entry.value.get("name") != name:
        # a record copied under another path keeps its own name: never served as this one
        raise SecretCorrupt(f"secret {name!r}: its record belongs to another name; "
                            "set it again")
    return entry.value


async def read_revs(store: Store, names: Iterable[str]) -> dict[str, str]:
    """name -> current revision; SecretError naming every secret that does not exist."""
    out: dict[str, str] = {}
    missing: list[str] = []
    for name in sorted(set(names)):
        rec = await _record(store, name)
        if rec is None:
            missing.append(name)
        else:
            out[name] = str(rec.get("rev") or "")
    if missing:
        raise SecretError("no secret named " + ", ".join(repr(m) for m in missing)
                          + " (create it with `helios secret set`)")
    return out


async def read_values(store: Store, keyring: Keyring, names: Iterable[str]
                      ) -> dict[str, str]:
    """name -> value in clear, for the leader to push; raises SecretError /
    SecretCorrupt (a KeyringError) naming the first secret it cannot serve."""
    out: dict[str, str] = {}
    for name in sorted(set(names)):
        rec = await _record(store, name)
        if rec is None:
            raise SecretError(f"no secret named {name!r}")
        sealed = Sealed.from_dict(rec.get("sealed"))
        out[name] = keyring.open(name, sealed).decode()
    return out


class SecretAdmin:
    """Secret operations, made by the leader through `transact` (its fenced
    transaction); `keyring()` reads the key file (on every use: a rotated file is seen
    without a restart)."""

    def __init__(self, store: Store, transact: Callable[[list[Any]], Awaitable[Any]],
                 keyring: Callable[[], Keyring]) -> None:
        self.store = store
        self.transact = transact
        self.keyring = keyring

    async def set(self, name: str, value: Any) -> dict[str, Any]:
        check_secret_name(name)
        if not isinstance(value, str):
            raise SecretError("a secret's value must be text")
        if len(value.encode()) > MAX_VALUE:
            raise SecretError(f"secret {name!r} is {len(value.encode())} bytes; the most "
                              f"is {MAX_VALUE}")
        sealed = self.keyring().seal(name, value.encode())
        now = time.time()
        old = await _record(self.store, name) if await self.store.exists(
            paths.secret(name)) else None
        rec = {"name": name, "sealed": sealed.to_dict(), "rev": _rev(sealed),
               "created": (old or {}).get("created", now), "updated": now}
        ops: list[Any] = []
        if old is not None:
            ops.append(Set(paths.secret(name), rec))
        else:
            await self.store.ensure(paths.SECRETS)  # an empty directory: no fence needed
            ops.append(Create(paths.secret(name), rec))
        await self.transact(ops)
        return public(rec) | {"changed": old is not None}

    async def ls(self) -> list[dict[str, Any]]:
        out = []
        for name in sorted(await self.store.children(paths.SECRETS)):
            try:
                rec = await _record(self.store, name)
            except SecretError:
                continue
            if rec is not None:
                out.append(public(rec))
        return out

    async def rm(self, name: str, used_by: list[str]) -> dict[str, Any]:
        check_secret_name(name)
        if not await self.store.exists(paths.secret(name)):
            raise SecretError(f"no secret named {name!r}")
        if used_by:
            raise SecretError(f"secret {name!r} is used by job(s) {', '.join(used_by)}: "
                              "change or remove them first")
        await self.transact([Delete(paths.secret(name))])
        return {"name": name, "removed": True}

    async def rewrap(self) -> dict[str, Any]:
        """Seal every secret again under the key file's active key (after a rotation),
        so older keys can leave the file. Values do not change, so revisions do not
        either: no job rolls."""
        ring = self.keyring()
        done: list[str] = []
        for name in sorted(await self.store.children(paths.SECRETS)):
            rec = await _record(self.store, name)
            if rec is None:
                continue
            sealed = Sealed.from_dict(rec.get("sealed"))
            if sealed.key == ring.active:
                continue
            new = ring.seal(name, ring.open(name, sealed))
            await self.transact([Set(paths.secret(name), rec | {
                "sealed": new.to_dict(), "updated": time.time()})])
            done.append(name)
        return {"key": ring.active, "rewrapped": done}
