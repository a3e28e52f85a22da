"""The one codec for stored values: compact UTF-8 JSON (encoded by msgspec, which is an
order of magnitude faster than the stdlib `json` for the small dicts stored here).

JSON keeps values readable in `zkCli.sh get`. Encoding happens before anything is sent, so
a value over the limit is refused here, with the path named, instead of failing inside
ZooKeeper (whose default `jute.maxbuffer` is 1 MiB for the whole request).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import msgspec

from helios.coordination.errors import CorruptValue, ValueTooLarge

#: Largest encoded value accepted. ZooKeeper's default jute.maxbuffer is 0xfffff bytes for
#: a whole packet; this leaves room for the path, the ACL and the request header.
MAX_VALUE_BYTES = 1_000_000

T = TypeVar("T")

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


def pack(items: Iterable[T], size: Callable[[T], int], max_bytes: int, max_items: int
         ) -> list[list[T]]:
    """`items` in order, cut into lists of at most `max_items` whose `size`s add up to at
    most `max_bytes` (an item that alone is larger gets a list of its own): a batch of
    values per stored value, of operations per transaction."""
    out: list[list[T]] = []
    cur: list[T] = []
    total = 0
    for item in items:
        n = size(item)
        if cur and (total + n > max_bytes or len(cur) >= max_items):
            out.append(cur)
            cur, total = [], 0
        cur.append(item)
        total += n
    if cur:
        out.append(cur)
    return out


def split_by_size(items: list[Any], max_bytes: int, max_items: int
                  ) -> tuple[list[list[Any]], int]:
    """`items` in order, cut into lists of at most `max_items` whose encoded size stays
    under `max_bytes`, so each can be one stored value. An item that alone is larger is
    left out. Returns the lists and how many items were left out."""
    sized = [(item, len(_encode(item)) + 1) for item in items]
    kept = [(item, n) for item, n in sized if n <= max_bytes]
    out = pack(kept, lambda pair: pair[1], max_bytes, max_items)
    return [[item for item, _ in part] for part in out], len(sized) - len(kept)
