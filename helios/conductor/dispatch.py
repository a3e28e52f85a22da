"""Dispatching a parameterized job: one run per request, one per idempotency key.

A parameterized job is a template that runs only when dispatched (`helios job dispatch
NAME --payload JSON --idempotency-key K`, or the conductor actor's `job_dispatch`). Each
dispatch creates a batch run, a JobRecord named `<job>-<10 hex>` with `parent` set, which
the reconciler places like any batch job.

**The payload** reaches the task twice (`PAYLOAD_ENV`, `PAYLOAD_FILE_ENV`):

- `HELIOS_PAYLOAD` in its environment: the text as given, or the JSON encoding of a
  non-string value. It is written into the run's spec here;
- `HELIOS_PAYLOAD_FILE`: the path of a file holding the same bytes, for payloads that are
  awkward in a variable. The *node* materialises it, because only it knows where files
  live (`helios.node.payload`): for a task whose spec env has `HELIOS_PAYLOAD` it writes
  `<task dir>/payload` (in a 0700 directory) and sets `HELIOS_PAYLOAD_FILE` to that path
  for the process runtime, or bind-mounts it read-only at `/run/helios/payload` and sets that
  path for the docker runtime.

The rule of the template's `payload:` applies: `required` refuses a missing or empty
payload, `forbidden` refuses any, `optional` takes either. A payload over
`MAX_PAYLOAD_BYTES` (64 KiB) is refused: it travels in the run's record in ZooKeeper
(1 MB per znode), in every assignment of the run, and in one environment variable (Linux
caps one at 128 KiB).

**Idempotency.** With a key, the key is recorded at `/dispatch/<job>/<sha256 of the
key>` (naming the run) in the SAME transaction that creates the run. A repeated key, also
one racing the first on another connection or reaching a new leader after a failover,
fails that transaction and gets the first run back with `created: False`. The key record
outlives the run's record: the conductor collects it only once it is older than its TTL
(`helios conductor --gc-key-ttl`, 24 h by default) AND its run no longer exists (see
`gc.py`); until then a retry does not start the run again, after that a retry starts a
new run. Every run gets a name of its own (`<job>-<10 random hex>`), so a run started
after its key was collected never reuses the name, task ids or history of the first.
Without a key every dispatch is a new run.

Use, from the leading conductor:

    out = await dispatch(term, template, payload, idempotency_key, now=clock())
    out.to_dict()   # {"job", "run", "created"} -- the `job_dispatch` answer
    out.record      # the new run's JobRecord when created: add it to the cache as written
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from helios.coordination import paths
from helios.coordination.election import Term
from helios.coordination.errors import NodeExists, TransactionFailed
from helios.coordination.store import Create, Store
from helios.model import JobRecord
from helios.spec import PAYLOAD_ENV, run_spec

__all__ = [
    "DISPATCH",
    "MAX_KEY_CHARS",
    "MAX_PAYLOAD_BYTES",
    "PAYLOAD_ENV",
    "DispatchError",
    "Dispatched",
    "PayloadTooLarge",
    "dispatch",
    "key_path",
    "normalise_payload",
]

#: where idempotency keys are recorded (not in `paths` yet: /dispatch/<job>/<hash>)
DISPATCH = "/dispatch"
#: largest payload accepted, in UTF-8 bytes
MAX_PAYLOAD_BYTES = 64 * 1024
#: longest idempotency key accepted
MAX_KEY_CHARS = 1024


class DispatchError(ValueError):
    """A dispatch refused before anything was written; the message says why."""


class PayloadTooLarge(DispatchError):
    """The payload is over `MAX_PAYLOAD_BYTES`."""

    def __init__(self, job: str, size: int, limit: int) -> None:
        super().__init__(f"payload for {job} is {size} bytes, over the limit of {limit} "
                         "bytes; pass a reference (a URL, an object key) instead")
        self.size = size
        self.limit = limit


@dataclass(frozen=True)
class Dispatched:
    """The answer to a dispatch: which run, and whether this call created it."""

    job: str
    run: str
    created: bool
    record: JobRecord | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.job, "run": self.run, "created": self.created}


def normalise_payload(job: str, rule: str | None, payload: Any,
                      limit: int = MAX_PAYLOAD_BYTES) -> str | None:
    """The payload as the text the task receives (None: no payload), checked against the
    template's rule (`required`, `optional`, `forbidden`) and the size limit.

    Text is kept as given; bytes must be UTF-8; other values (dicts, lists, numbers,
    booleans) are encoded as compact JSON. An empty string counts as no payload."""
    if isinstance(payload, bytes | bytearray):
        try:
            payload = bytes(payload).decode("utf-8")
        except UnicodeDecodeError:
            raise DispatchError(f"payload for {job} is bytes that are not UTF-8 text; "
                                "encode binary data (e.g. base64) first") from None
    if payload is not None and not isinstance(payload, str):
        try:
            payload = json.dumps(payload, separators=(",", ":"), ensure_ascii=False,
                                 allow_nan=False)
        except (TypeError, ValueError) as e:
            raise DispatchError(f"payload for {job} is not text or JSON data: {e}") from None
    if payload == "":
        payload = None
    rule = rule or "optional"
    if rule == "required" and payload is None:
        raise DispatchError(f"job {job} requires a payload (payload: required); "
                            "pass one with --payload")
    if rule == "forbidden" and payload is not None:
        raise DispatchError(f"job {job} takes no payload (payload: forbidden)")
    if payload is not None and "\x00" in payload:
        raise DispatchError(f"payload for {job} contains a NUL character, which an "
                            "environment variable cannot hold")
    if payload is not None and (size := len(payload.encode("utf-8"))) > limit:
        raise PayloadTooLarge(job, size, limit)
    return payload


def _digest(job: str, key: str) -> str:
    return hashlib.sha256(f"{job}\x00{key}".encode()).hexdigest()


def key_path(job: str, key: str) -> str:
    """Where the idempotency key `key` of `job` is recorded."""
    return f"{DISPATCH}/{paths.check_name(job)}/{_digest(job, key)[:40]}"


async def dispatch(target: Term | Store, template: JobRecord, payload: Any = None,
                   idempotency_key: str | None = None, *, now: float,
                   max_payload: int = MAX_PAYLOAD_BYTES) -> Dispatched:
    """Create one run of the parameterized job `template` (or return the run its
    idempotency key already made). `target` is the leader's `Term` (fenced writes: a
    deposed leader gets `StaleEpoch` and writes nothing) or a bare `Store` (tools, tests).

    Raises `DispatchError` (a `ValueError`) for a template that is not parameterized, a
    payload against its rule or over the limit, or an unusable key; nothing is written
    then."""
    job = template.name
    if template.spec.kind != "parameterized" or template.parent is not None:
        raise DispatchError(f"job {job} is a {template.spec.kind} job; only parameterized "
                            "jobs are dispatched")
    if template.stopped:
        raise DispatchError(f"job {job} is stopped; run it again before dispatching")
    text = normalise_payload(job, template.spec.payload, payload, max_payload)
    key = idempotency_key if idempotency_key not in (None, "") else None
    if key is not None:
        if not isinstance(key, str):
            raise DispatchError(f"idempotency key must be text, not {type(key).__name__}")
        if len(key) > MAX_KEY_CHARS:
            raise DispatchError(f"idempotency key is {len(key)} characters, over "
                                f"{MAX_KEY_CHARS}")
    run = f"{job}-{secrets.token_hex(5)}"
    paths.check_name(run)
    spec = run_spec(template.spec, run[len(job) + 1:], text)
    record = JobRecord(spec=spec, version=1, parent=job, created=now)

    store = target.store if isinstance(target, Term) else target
    await store.ensure(paths.JOBS)
    ops = [Create(paths.job(run), record.to_dict())]
    if key is not None:
        kp = key_path(job, key)
        await store.ensure(paths.parent(kp))
        ops.insert(0, Create(kp, {"key": key[:200], "run": run, "created": now,
                                  "payload_sha256": hashlib.sha256(
                                      (text or "").encode()).hexdigest()}))
    try:
        await target.transaction(ops)
    except TransactionFailed as e:
        if not isinstance(e.cause, NodeExists):
            raise
        if key is None or e.index == 1:
            # the random run name collided: astronomically rare, try another
            return await dispatch(target, template, payload, idempotency_key, now=now,
                                  max_payload=max_payload)
        first = await store.get(key_path(job, key))
        first_run = (first.value or {}).get("run") if first is not None and isinstance(
            first.value, dict) else None
        return Dispatched(job, str(first_run or run), False)
    return Dispatched(job, run, True, record)
