"""From references to values, on both ends of an assignment.

Conductor (`ConductorSecrets`, the leader only):
- `stamp`: a submitted spec's references get their secret's current revision (a job
  naming an unknown secret is refused here, naming it);
- `attach`: the assignments pushed to a node get, for each task that is to run and
  refers to secrets, `"secrets": {name: value}`, read and opened at that moment. That
  key exists only in the pushed message: `Assignment.to_dict()` never writes it, so the
  store and the node's files keep the references alone.

Node (`environment`, `registry_credentials`): a task's environment and pull credentials
with references replaced by the values its assignment brought, in memory only. A task
whose values did not come (the node restarted without a conductor) fails to start with
`SecretNotDelivered`, naming the secret; the next push brings them.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from helios.coordination.errors import CoordinationError
from helios.coordination.store import Store
from helios.secrets.keyring import ENV_KEY_FILE, Keyring, KeyringError
from helios.secrets.refs import SecretRef
from helios.secrets.store import SecretError, read_revs, read_values

log = logging.getLogger(__name__)

__all__ = ["ConductorSecrets", "SecretNotDelivered", "environment", "registry_credentials",
           "uses", "uses_env"]


def uses_env(env: Mapping[str, Any]) -> list[str]:
    """The env keys whose values are secret references."""
    return [k for k, v in env.items() if isinstance(v, SecretRef)]


def uses(spec: Any) -> dict[str, SecretRef]:
    """Every secret a JobSpec refers to (env values, registry_auth), by name."""
    if spec is None:
        return {}
    out = {v.name: v for v in spec.env.values() if isinstance(v, SecretRef)}
    ra = spec.registry_auth
    if ra is not None and ra.secret is not None:
        out[ra.secret.name] = ra.secret
    return out


class ConductorSecrets:
    """A conductor's access to secrets: where its key file is, and the two steps above.
    Without a key file, secrets can be neither set nor delivered (said in one line)."""

    def __init__(self, key_file: str | None = None) -> None:
        self.key_file = key_file or os.environ.get(ENV_KEY_FILE) or None

    def keyring(self) -> Keyring:
        if not self.key_file:
            raise KeyringError(
                "this conductor has no secret key file: start it with --secret-key-file "
                f"FILE (or {ENV_KEY_FILE}); make one with `helios secret keygen FILE`")
        return Keyring.load(self.key_file)

    async def stamp(self, store: Store, spec: Any) -> Any:
        """`spec` with each reference at its secret's current revision (unchanged when
        it refers to none); SecretError naming every unknown secret."""
        refs = uses(spec)
        if not refs:
            return spec
        self.keyring()  # a job whose values could never be delivered is refused now
        revs = await read_revs(store, refs)

        def at(v: Any) -> Any:
            return SecretRef(v.name, revs[v.name]) if isinstance(v, SecretRef) else v

        from helios.spec import FrozenMap  # (helios.spec imports helios.secrets.refs)

        changes: dict[str, Any] = {"env": FrozenMap({k: at(v) for k, v in spec.env.items()})}
        ra = spec.registry_auth
        if ra is not None and ra.secret is not None:
            changes["registry_auth"] = type(ra)(server=ra.server, secret=at(ra.secret))
        return spec.replace(**changes)

    async def attach(self, store: Store, assignments: Sequence[Any],
                     tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`tasks` (the `to_dict()` of `assignments`, same order) with the values each
        running task needs. A secret that cannot be served is left out and logged by
        name (the node then says which one its task lacks)."""
        wanted = {a.id: uses(a.spec) for a in assignments if a.desired == "run"}
        names = {n for refs in wanted.values() for n in refs}
        if not names:
            return tasks
        values: dict[str, str] = {}
        try:
            ring = self.keyring()
        except KeyringError as e:
            log.warning("cannot deliver secrets %s: %s", ", ".join(sorted(names)), e)
            return tasks
        for name in sorted(names):
            try:
                values.update(await read_values(store, ring, [name]))
            except (SecretError, KeyringError, CoordinationError) as e:
                log.warning("cannot deliver secret %s: %s", name, e)
        out = []
        for a, d in zip(assignments, tasks, strict=True):
            refs = wanted.get(a.id)
            if refs:
                d = d | {"secrets": {n: values[n] for n in refs if n in values}}
            out.append(d)
        return out


class SecretNotDelivered(Exception):
    """A task refers to a secret whose value its assignment did not bring."""


def _value(values: Mapping[str, str], ref: SecretRef) -> str:
    if ref.name not in values:
        raise SecretNotDelivered(
            f"secret {ref.name!r} was not delivered with this assignment (values come "
            "only from the leading conductor, never from the store): waiting for a push")
    return values[ref.name]


def environment(env: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, str]:
    """`env` with every reference replaced by its value."""
    return {k: _value(values, v) if isinstance(v, SecretRef) else v for k, v in env.items()}


def registry_credentials(ra: Any, values: Mapping[str, str]) -> tuple[str, str]:
    """(username, password) of a spec's RegistryAuth: literal, or from its secret's
    {"username", "password"} JSON."""
    if ra.secret is None:
        return ra.username, ra.password
    try:
        doc = json.loads(_value(values, ra.secret))
        user, password = doc["username"], doc["password"]
        if isinstance(user, str) and isinstance(password, str):
            return user, password
    except (ValueError, TypeError, KeyError):
        pass
    raise SecretNotDelivered(f"secret {ra.secret.name!r} is not registry credentials: it "
                             'must hold {"username": ..., "password": ...} JSON')
