"""The conductors' secret keys: a keyring of AES-256-GCM keys in one 0600 file.

File format (JSON, mode 0600, given to every conductor by `--secret-key-file` or
HELIOS_SECRET_KEY_FILE; `helios solo` makes its own in its state directory):

    {"active": "k2", "keys": {"k1": "<base64 32 bytes>", "k2": "<base64 32 bytes>"}}

The active key seals new values; every key in the file still opens what it sealed, so a
rotation (`helios secret keygen --rotate`) never makes an existing secret unreadable,
and `helios secret rewrap` then seals every secret again under the active key, after
which old keys may be dropped from the file. The file is never written to the store:
a copy of the store alone opens nothing, which is why it must be backed up on its own.

A sealed value is bound to its secret's name (the name is AES-GCM's associated data),
so a ciphertext copied under another name, or altered by one bit, is refused.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["ENV_KEY_FILE", "Keyring", "KeyringError", "Sealed", "SecretCorrupt"]

ENV_KEY_FILE = "HELIOS_SECRET_KEY_FILE"
KEY_BYTES = 32
NONCE_BYTES = 12
_AAD_PREFIX = b"helios-secret\x00"


class KeyringError(Exception):
    """The key file is missing, unreadable, or not a keyring: one line for the operator."""


class SecretCorrupt(KeyringError):
    """A sealed value does not open: altered, moved under another name, or sealed with
    a key this keyring does not hold."""


@dataclass(frozen=True)
class Sealed:
    """One value sealed under one key: what the store keeps (base64 in records)."""

    key: str
    nonce: bytes
    ciphertext: bytes

    def to_dict(self) -> dict[str, str]:
        return {"key": self.key, "nonce": base64.b64encode(self.nonce).decode(),
                "ciphertext": base64.b64encode(self.ciphertext).decode()}

    @classmethod
    def from_dict(cls, d: Any) -> Sealed:
        try:
            return cls(str(d["key"]), base64.b64decode(d["nonce"], validate=True),
                       base64.b64decode(d["ciphertext"], validate=True))
        except (KeyError, TypeError, ValueError, binascii.Error) as e:
            raise SecretCorrupt(f"a secret record is malformed ({e})") from None


def _aad(name: str) -> bytes:
    return _AAD_PREFIX + name.encode()


class Keyring:
    """Key id -> 32-byte key, and which one seals new values."""

    def __init__(self, keys: dict[str, bytes], active: str) -> None:
        if active not in keys:
            raise KeyringError(f"the active key {active!r} is not in the keyring")
        for kid, key in keys.items():
            if len(key) != KEY_BYTES:
                raise KeyringError(f"key {kid!r} is {len(key)} bytes, not {KEY_BYTES}")
        self.keys = dict(keys)
        self.active = active

    # -- sealing ---------------------------------------------------------------------
    def seal(self, name: str, value: bytes) -> Sealed:
        nonce = os.urandom(NONCE_BYTES)  # 96 random bits per value: GCM's safe use
        ct = AESGCM(self.keys[self.active]).encrypt(nonce, value, _aad(name))
        return Sealed(self.active, nonce, ct)

    def open(self, name: str, sealed: Sealed) -> bytes:
        key = self.keys.get(sealed.key)
        if key is None:
            raise SecretCorrupt(f"secret {name!r} is sealed with key {sealed.key!r}, which "
                                "this conductor's key file does not hold")
        try:
            return AESGCM(key).decrypt(sealed.nonce, sealed.ciphertext, _aad(name))
        except InvalidTag:
            raise SecretCorrupt(f"secret {name!r} does not decrypt: its record was altered "
                                "or belongs to another name; set it again") from None

    # -- the file --------------------------------------------------------------------
    @classmethod
    def generate(cls) -> Keyring:
        return cls({"k1": secrets.token_bytes(KEY_BYTES)}, "k1")

    def rotated(self) -> Keyring:
        """This keyring plus a new key that becomes the active one."""
        n = 1 + max((int(k[1:]) for k in self.keys if k[1:].isdigit()), default=0)
        kid = f"k{n}"
        return Keyring(self.keys | {kid: secrets.token_bytes(KEY_BYTES)}, kid)

    def to_json(self) -> str:
        return json.dumps({"active": self.active,
                           "keys": {k: base64.b64encode(v).decode()
                                    for k, v in sorted(self.keys.items())}}, indent=1)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Keyring:
        p = Path(path)
        try:
            st = p.stat()
            text = p.read_text()
        except OSError as e:
            raise KeyringError(f"cannot read the secret key file {p}: "
                               f"{e.strerror or e}") from None
        if st.st_mode & 0o077:
            raise KeyringError(f"the secret key file {p} is readable by others "
                               f"(mode {st.st_mode & 0o777:o}): chmod 600 it")
        try:
            data = json.loads(text)
            keys = {str(k): base64.b64decode(v, validate=True)
                    for k, v in data["keys"].items()}
            return cls(keys, str(data["active"]))
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as e:
            raise KeyringError(f"{p} is not a Helios secret key file ({e})") from None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically, 0600 from the first byte (never readable by others)."""
        p = Path(path)
        tmp = p.with_name(p.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, self.to_json().encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, p)

    @classmethod
    def create(cls, path: str | os.PathLike[str]) -> Keyring:
        """A new keyring in a new file; refuses to overwrite one (that would orphan
        every secret sealed under it)."""
        if Path(path).exists():
            raise KeyringError(f"{path} exists already; use --rotate to add a key to it")
        ring = cls.generate()
        ring.save(path)
        return ring

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str]) -> Keyring:
        """`helios solo`: its own key file, made on first start."""
        return cls.load(path) if Path(path).exists() else cls.create(path)
