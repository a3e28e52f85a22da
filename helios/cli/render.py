"""How the CLI shows things: rich tables for people, one JSON document with `--json`
(docs/json.md), and the formatting of sizes, ports, container ids and times.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any


def console(stderr: bool = False) -> Any:
    """A rich console on stdout (or stderr), without markup guessing or wrapping."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def print_json(doc: Any) -> None:
    """The one JSON document a `--json` command prints."""
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    """A borderless table, as `docker ps` prints."""
    from rich.table import Table

    out = Table(title=title, box=None, header_style="bold", pad_edge=False)
    for c in columns:
        out.add_column(c)
    for r in rows:
        out.add_row(*["" if v is None else str(v) for v in r])
    console().print(out)


def fmt_size(n: Any) -> str:
    from helios.units import format_size

    try:
        return format_size(int(n))
    except (TypeError, ValueError):
        return str(n)


def fmt_ports(ports: Any) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((ports or {}).items()))


def short_id(cid: Any) -> str:
    """Docker ids shortened as `docker ps` does; other names (process runtime) kept."""
    text = str(cid or "")
    return text[:12] if len(text) == 64 and all(c in "0123456789abcdef" for c in text) \
        else text


def fmt_when(t: Any) -> str:
    try:
        return datetime.fromtimestamp(float(t), tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    except (TypeError, ValueError, OverflowError):
        return ""



def fmt_date(t: Any) -> str:
    try:
        return datetime.fromtimestamp(float(t), tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError):
        return ""



def event_line(ev: dict[str, Any]) -> str:
    """One line of `helios events` for people."""
    parts = [str(ev.get("index")), str(ev.get("time", ""))[11:23], str(ev.get("topic")),
             str(ev.get("type")), *(f"{k}={ev[k]}" for k in ("job", "task", "node")
                                    if ev.get(k))]
    detail = f": {ev['detail']}" if ev.get("detail") else ""
    return " ".join(parts) + detail + "\n"
