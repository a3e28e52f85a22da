"""Sizes and durations as people write them in job files and on the command line.

Sizes follow Docker's convention, because Helios hands memory limits to Docker: every
multiplier is binary, so ``64M``, ``64MB``, ``64Mi`` and ``64MiB`` all mean 64 x 2**20
bytes (``docker run -m 64m`` means the same). A bare integer is a number of bytes.

Durations are Go-style (``500ms``, ``2m``, ``1h30m``), as in Nomad job files; a bare number
is seconds. Both parsers raise :class:`UnitError` (a ``ValueError``) whose message names the
offending text, so a validator can prefix it with a field path.
"""

from __future__ import annotations

import math
import re

__all__ = ["UnitError", "format_duration", "format_size", "parse_duration", "parse_size"]


class UnitError(ValueError):
    """A size or duration that does not parse; the message quotes the input."""


_SIZE_UNITS: dict[str, int] = {"": 1, "b": 1}
for _i, _p in enumerate("kmgtp", start=1):
    for _suffix in (_p, _p + "b", _p + "i", _p + "ib"):
        _SIZE_UNITS[_suffix] = 1024**_i

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-zA-Z]*)\s*$")

_DURATION_UNITS: dict[str, float] = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
    "d": 86400.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ns|us|µs|ms|s|m|h|d)")


def parse_size(value: object) -> int:
    """Bytes from ``64M``, ``1Gi``, ``512MiB``, ``1.5G`` or an int (bytes).

    Fractions are allowed with a unit (``1.5G``) and rounded down to whole bytes.
    """
    if isinstance(value, bool):
        raise UnitError(f"{value!r} is not a size")
    if isinstance(value, int):
        if value < 0:
            raise UnitError(f"{value} is negative; a size is a number of bytes >= 0")
        return value
    if isinstance(value, float):
        if not math.isfinite(value) or value < 0 or value != int(value):
            raise UnitError(f"{value!r} is not a size (use whole bytes or a unit such as 64M)")
        return int(value)
    if not isinstance(value, str):
        raise UnitError(f"{value!r} is not a size")
    m = _SIZE_RE.match(value)
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise UnitError(f'"{value}" is not a size (examples: 512M, 1Gi, 2GB, 1048576)')
    number, unit = m.group(1), m.group(2).lower()
    if unit in ("", "b") and "." in number:
        raise UnitError(f'"{value}" is not a size (a byte count is a whole number)')
    return int(float(number) * _SIZE_UNITS[unit])


def parse_duration(value: object) -> float:
    """Seconds from ``500ms``, ``1s``, ``2m``, ``1h30m`` or a number (seconds)."""
    if isinstance(value, bool):
        raise UnitError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise UnitError(f"{value!r} is not a duration (a number of seconds >= 0)")
        return float(value)
    if not isinstance(value, str):
        raise UnitError(f"{value!r} is not a duration")
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds) or seconds < 0:
            raise UnitError(f'"{value}" is not a duration (a number of seconds >= 0)')
        return seconds
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise UnitError(f'"{value}" is not a duration (examples: 500ms, 10s, 2m, 1h30m)')
    return total


def format_size(n: int) -> str:
    """Human text for a byte count (``512 MiB``), for messages and listings."""
    for unit, mult in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= mult:
            q = n / mult
            return f"{q:.0f} {unit}" if q == int(q) else f"{q:.1f} {unit}"
    return f"{n} B"


def format_duration(seconds: float) -> str:
    """Short Go-style text for seconds (``1m30s``, ``500ms``), the inverse of parsing."""
    if seconds < 1 and seconds != 0:
        return f"{seconds * 1000:g}ms"
    whole = int(seconds)
    frac = seconds - whole
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    out = (f"{h}h" if h else "") + (f"{m}m" if m else "")
    if s or frac or not out:
        out += f"{s + frac:g}s"
    return out
