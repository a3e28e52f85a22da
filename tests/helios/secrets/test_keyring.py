"""The keyring and the sealing of one value (pure logic over the `cryptography`
package, no service needed), and the `{secret: name}` references of a job file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from helios.secrets.keyring import Keyring, KeyringError, Sealed, SecretCorrupt
from helios.secrets.refs import SecretRef
from helios.secrets.resolve import (
    SecretNotDelivered,
    environment,
    registry_credentials,
    uses,
)
from helios.spec import JobSpec, SpecError, validate


def test_a_value_round_trips_and_its_ciphertext_does_not_contain_it() -> None:
    ring = Keyring.generate()
    sealed = ring.seal("db", b"hunter2-hunter2")
    assert b"hunter2" not in sealed.ciphertext
    assert b"hunter2" not in json.dumps(sealed.to_dict()).encode()
    assert ring.open("db", Sealed.from_dict(sealed.to_dict())) == b"hunter2-hunter2"


def test_a_ciphertext_moved_to_another_name_is_refused() -> None:
    ring = Keyring.generate()
    sealed = ring.seal("db", b"hunter2")
    with pytest.raises(SecretCorrupt, match="another name"):
        ring.open("other", sealed)


def test_a_tampered_ciphertext_is_refused() -> None:
    ring = Keyring.generate()
    sealed = ring.seal("db", b"hunter2")
    flipped = bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:]
    with pytest.raises(SecretCorrupt, match="altered"):
        ring.open("db", Sealed(sealed.key, sealed.nonce, flipped))
    with pytest.raises(SecretCorrupt, match="malformed"):
        Sealed.from_dict({"key": "k1", "nonce": "!!", "ciphertext": ""})


def test_rotation_keeps_old_values_readable_and_seals_new_ones_with_the_new_key(
        tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    old = Keyring.create(path)
    sealed_old = old.seal("db", b"v1")
    ring = Keyring.load(path).rotated()
    ring.save(path)
    ring = Keyring.load(path)
    assert ring.active == "k2" and set(ring.keys) == {"k1", "k2"}
    assert ring.open("db", sealed_old) == b"v1"
    assert ring.seal("db", b"v2").key == "k2"
    # a keyring that lost the old key says which key it lacks
    with pytest.raises(SecretCorrupt, match="k1"):
        Keyring({"k2": ring.keys["k2"]}, "k2").open("db", sealed_old)


def test_the_key_file_is_0600_never_overwritten_and_refused_when_others_can_read_it(
        tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    Keyring.create(path)
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(KeyringError, match="exists already"):
        Keyring.create(path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyringError, match="chmod 600"):
        Keyring.load(path)
    os.chmod(path, 0o600)
    path.write_text("{not json")
    with pytest.raises(KeyringError, match="not a Helios secret key file"):
        Keyring.load(path)
    with pytest.raises(KeyringError, match="cannot read"):
        Keyring.load(tmp_path / "missing")


def test_a_job_file_refers_to_secrets_and_the_spec_keeps_only_the_reference() -> None:
    spec = validate({"name": "web", "image": "busybox",
                     "env": {"PLAIN": "x", "DB_PASSWORD": {"secret": "db-password"}},
                     "registry_auth": {"secret": "regcred", "server": "r.example"}})
    assert spec.env["DB_PASSWORD"] == SecretRef("db-password")
    d = spec.to_dict()
    assert d["env"]["DB_PASSWORD"] == {"secret": "db-password"}
    assert d["registry_auth"] == {"secret": "regcred", "server": "r.example"}
    assert JobSpec.from_dict(d) == spec
    assert set(uses(spec)) == {"db-password", "regcred"}
    # a new revision is a new fingerprint: the job rolls
    stamped = spec.replace(env=spec.env.__class__(
        dict(spec.env) | {"DB_PASSWORD": SecretRef("db-password", "abc123")}))
    assert stamped.fingerprint() != spec.fingerprint()
    # a literal registry password keeps working
    lit = validate({"name": "w", "image": "b",
                    "registry_auth": {"username": "u", "password": "p"}})
    assert registry_credentials(lit.registry_auth, {}) == ("u", "p")


def test_every_problem_of_a_reference_is_named() -> None:
    with pytest.raises(SpecError) as e:
        validate({"name": "w", "image": "b",
                  "env": {"A": {"secret": "../etc"}, "B": {"secret": "ok", "x": 1},
                          "C": {"secret": "ok", "rev": 5}},
                  "registry_auth": {"secret": "r", "password": "p"}})
    text = str(e.value)
    for where in ("env.A.secret", "env.B.x", "env.C.rev", "registry_auth.password"):
        assert where in text, text


def test_the_node_replaces_references_only_with_delivered_values() -> None:
    spec = validate({"name": "w", "image": "b", "env": {"A": "1", "P": {"secret": "db"}},
                     "registry_auth": {"secret": "reg"}})
    assert environment(spec.env, {"db": "s3"}) == {"A": "1", "P": "s3"}
    with pytest.raises(SecretNotDelivered, match="'db' was not delivered"):
        environment(spec.env, {})
    creds = json.dumps({"username": "u", "password": "p"})
    assert registry_credentials(spec.registry_auth, {"reg": creds}) == ("u", "p")
    with pytest.raises(SecretNotDelivered, match="not registry credentials"):
        registry_credentials(spec.registry_auth, {"reg": "just-a-password"})
