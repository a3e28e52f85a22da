"""The one codec for stored values: compact UTF-8 JSON (encoded by msgspec, which is an
order of magnitude faster than the stdlib `json` for the small dicts stored here).

JSON keeps values readable in `zkCli.sh get`. Encoding happens before anything is sent, so
a value over the limit is refused here, with the path named, instead of failing inside
ZooKeeper (whose default `jute.maxbuffer` is 1 MiB for the whole request).
"""

from __future__ import annotations

from typing import Any

import msgspec

from helios.coordination.errors import CorruptValue, ValueTooLarge

#: Largest encoded value accepted. ZooKeeper's default jute.maxbuffer is 0xfffff bytes for
#: a whole packet; this leaves room for the path, the ACL and the request header.
MAX_VALUE_BYTES = 1_000_000

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def encode(path: str, value: Any, limit: int = MAX_VALUE_BYTES) -> bytes:
    """Encode `value` (dicts, lists, str, numbers, bool, None) for `path`.

    None encodes to empty bytes, which is also what bare parent znodes hold.
    """
    if value is None:
        return b""
    try:
        data = _encode(value)
    except (TypeError, msgspec.EncodeError) as e:
        raise TypeError(f"value for {path} is not JSON-serialisable: {e}") from None
    if len(data) > limit:
        raise ValueTooLarge(path, len(data), limit)
    return data


def decode(path: str, data: bytes | None) -> Any:
    """Decode stored bytes; anything that is not Helios JSON raises `CorruptValue`."""
    if not data:
        return None
    try:
        return _decode(data)
    except msgspec.DecodeError as e:
        raise CorruptValue(path, str(e)) from None
