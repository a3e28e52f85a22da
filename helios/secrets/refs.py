"""A job file's reference to a secret: `{secret: NAME}` where a value would be.

The spec keeps the reference, never the value. `rev` is the secret's revision (a digest
of its sealed record, see `helios.secrets.store`), stamped by the leader when the job is
submitted and again whenever the secret changes: it is part of the job's fingerprint,
so changing a secret rolls the jobs that use it like any other change, while nothing
derived from the value itself is ever stored.

No dependencies beyond the standard library: `helios.spec` imports this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["SecretRef", "check_ref", "is_ref", "plain"]

#: a secret's name: what a store path allows, kept short and shell-friendly
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
NAME_RULE = "1-128 characters of letters, digits, '.', '_' and '-', starting with a " \
            "letter or digit"
_REV_RE = re.compile(r"^[0-9a-f]{1,64}$")


@dataclass(frozen=True)
class SecretRef:
    """Where a value comes from: secret `name`, at revision `rev` ("" until stamped)."""

    name: str
    rev: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"secret": self.name} | ({"rev": self.rev} if self.rev else {})

    def __str__(self) -> str:
        return f"<secret {self.name}>"


class _Checker(Protocol):
    def err(self, path: str, reason: str) -> None: ...


def is_ref(v: Any) -> bool:
    """Raw job-file data that means a reference (a mapping naming `secret`)."""
    return isinstance(v, dict) and "secret" in v


def check_ref(c: _Checker, v: Any, path: str, extra: tuple[str, ...] = ()) -> SecretRef | None:
    """The reference `v` (a mapping with `secret` and, stored, `rev`), or None after
    telling `c` every problem. `extra` names other keys the caller reads itself."""
    if not isinstance(v, dict):
        c.err(path, "must be a string or {secret: NAME}")
        return None
    ok = True
    for k in v:
        if k not in ("secret", "rev", *extra):
            c.err(f"{path}.{k}", "unknown field (a secret reference has secret"
                                 + "".join(f", {e}" for e in extra) + ")")
            ok = False
    name = v.get("secret")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        c.err(f"{path}.secret", f"must be a secret name: {NAME_RULE}")
        ok = False
    rev = v.get("rev", "")
    if not isinstance(rev, str) or (rev and not _REV_RE.fullmatch(rev)):
        c.err(f"{path}.rev", "must be a revision (hex digits; set by the conductor)")
        ok = False
    return SecretRef(name, rev) if ok and isinstance(name, str) else None


def plain(v: Any) -> Any:
    """A spec value as stored data: a reference becomes its mapping, anything else
    stays."""
    return v.to_dict() if isinstance(v, SecretRef) else v
