"""The one codec for stored values: compact UTF-8 JSON.

JSON keeps values readable in `zkCli.sh get`. Encoding happens before anything is sent, so
a value over the limit is refused here, with the path named, instead of failing inside
ZooKeeper (whose default `jute.maxbuffer` is 1 MiB for the whole request).
"""

from __future__ import annotations

import json
from typing import Any

from helios.coordination.errors import CorruptValue, ValueTooLarge

#: Largest encoded value accepted. ZooKeeper's default jute.maxbuffer is 0xfffff bytes for
#: a whole packet; this leaves room for the path, the ACL and the request header.
MAX_VALUE_BYTES = 1_000_000


def encode(path: str, value: Any, limit: int = MAX_VALUE_BYTES) -> bytes:
    """Encode `value` (dicts, lists, str, numbers, bool, None) for `path`.

    None encodes to empty bytes, which is also what bare parent znodes hold.
    """
    if value is None:
        return b""
    try:
        data = json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode()
    except (TypeError, ValueError) as e:
        raise TypeError(f"value for {path} is not JSON-serialisable: {e}") from None
    if len(data) > limit:
        raise ValueTooLarge(path, len(data), limit)
    return data


def decode(path: str, data: bytes | None) -> Any:
    """Decode stored bytes; anything that is not Helios JSON raises `CorruptValue`."""
    if not data:
        return None
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise CorruptValue(path, str(e)) from None
