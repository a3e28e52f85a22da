"""Sealed secrets in both store backends (real ZooKeeper, the embedded SQLite file):
only ciphertext is stored, a record altered or moved under another name is refused,
and a key rotation keeps every secret readable."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
import trio

from helios.coordination import Store
from helios.coordination.paths import secret as secret_path
from helios.coordination.store import Set
from helios.secrets.keyring import Keyring, SecretCorrupt
from helios.secrets.store import SecretAdmin, SecretError, read_revs, read_values
from tests.fixtures.zookeeper import znode_data

from .conftest import Backend


async def stored_bytes(backend: Backend) -> list[tuple[str, bytes]]:
    """Everything the backend holds: every znode under the test's root, or the whole
    SQLite file (with its WAL)."""
    if backend.kind == "zookeeper":
        return await trio.to_thread.run_sync(znode_data, backend.hosts, backend.root)
    assert backend.file is not None
    files = [p for p in backend.file.parent.iterdir() if p.name.startswith(backend.file.name)]
    return [(str(p), p.read_bytes()) for p in files]


def admin(store: Store, ring: list[Keyring]) -> SecretAdmin:
    return SecretAdmin(store, store.transaction, lambda: ring[0])


async def test_only_ciphertext_is_stored(store: Store, backend: Backend) -> None:
    value = "hunter2-" + secrets.token_hex(8)
    ring = [Keyring.generate()]
    await admin(store, ring).set("db-password", value)
    held = await stored_bytes(backend)
    assert any(b"db-password" in data for _, data in held)  # the scan sees the record
    assert not [p for p, data in held if value.encode() in data]
    assert await read_values(store, ring[0], ["db-password"]) == {"db-password": value}
    listed = await admin(store, ring).ls()
    assert [s["name"] for s in listed] == ["db-password"]
    assert value not in repr(listed) and "ciphertext" not in repr(listed)


async def test_a_moved_or_altered_record_is_refused(store: Store) -> None:
    ring = [Keyring.generate()]
    a = admin(store, ring)
    await a.set("alpha", "alpha-value")
    await a.set("beta", "beta-value")
    alpha = (await store.get(secret_path("alpha"))).value  # type: ignore[union-attr]
    # the attack without the defence: the same sealed bytes open under their own name
    assert ring[0].open("alpha", _sealed(alpha)) == b"alpha-value"
    # moved: alpha's record (renamed to look like beta's) under beta's path
    await store.transaction([Set(secret_path("beta"), alpha | {"name": "beta"})])
    with pytest.raises(SecretCorrupt, match="another name"):
        await read_values(store, ring[0], ["beta"])
    # moved as is: the record says it is alpha's
    await store.transaction([Set(secret_path("beta"), alpha)])
    with pytest.raises(SecretCorrupt, match="belongs to another name"):
        await read_values(store, ring[0], ["beta"])
    # altered: one bit of the ciphertext
    sealed = dict(alpha["sealed"])
    ct = bytearray(_sealed(alpha).ciphertext)
    ct[0] ^= 1
    import base64

    sealed["ciphertext"] = base64.b64encode(bytes(ct)).decode()
    await store.transaction([Set(secret_path("alpha"), alpha | {"sealed": sealed})])
    with pytest.raises(SecretCorrupt, match="altered"):
        await read_values(store, ring[0], ["alpha"])


def _sealed(rec: dict[str, Any]) -> Any:
    from helios.secrets.keyring import Sealed

    return Sealed.from_dict(rec["sealed"])


async def test_rotation_then_rewrap(store: Store, tmp_path: Path) -> None:
    ring = [Keyring.generate()]
    a = admin(store, ring)
    await a.set("old", "old-value")
    rev = (await read_revs(store, ["old"]))["old"]
    ring[0] = ring[0].rotated()
    await a.set("new", "new-value")
    assert {s["name"]: s["key"] for s in await a.ls()} == {"old": "k1", "new": "k2"}
    assert await read_values(store, ring[0], ["old", "new"]) == {
        "old": "old-value", "new": "new-value"}
    out = await a.rewrap()
    assert out == {"key": "k2", "rewrapped": ["old"]}
    assert (await read_revs(store, ["old"]))["old"] == rev  # same value: no job rolls
    only_new = Keyring({"k2": ring[0].keys["k2"]}, "k2")
    assert await read_values(store, only_new, ["old", "new"]) == {
        "old": "old-value", "new": "new-value"}


async def test_unknown_names_and_removal(store: Store) -> None:
    ring = [Keyring.generate()]
    a = admin(store, ring)
    with pytest.raises(SecretError, match=r"'nope', 'other'"):
        await read_revs(store, ["other", "nope"])
    await a.set("used", "v")
    with pytest.raises(SecretError, match="used by job"):
        await a.rm("used", ["web"])
    assert await a.rm("used", []) == {"name": "used", "removed": True}
    with pytest.raises(SecretError, match="invalid secret name"):
        await a.set("../x", "v")


async def test_a_conductor_without_a_key_file_refuses_jobs_naming_secrets(
        store: Store, tmp_path: Path) -> None:
    from helios.secrets.keyring import KeyringError
    from helios.secrets.resolve import ConductorSecrets
    from helios.spec import validate

    spec = validate({"name": "w", "image": "b", "env": {"P": {"secret": "db"}}})
    plain = validate({"name": "w", "image": "b"})
    none = ConductorSecrets(None)
    none.key_file = None  # whatever HELIOS_SECRET_KEY_FILE says in this environment
    assert await none.stamp(store, plain) is plain  # no secrets: nothing needed
    with pytest.raises(KeyringError, match="--secret-key-file"):
        await none.stamp(store, spec)
    key = tmp_path / "k"
    ring = Keyring.create(key)
    await SecretAdmin(store, store.transaction, lambda: ring).set("db", "v")
    stamped = await ConductorSecrets(str(key)).stamp(store, spec)
    assert stamped.env["P"].rev == (await read_revs(store, ["db"]))["db"]
    assert stamped.fingerprint() != spec.fingerprint()
