"""The secret commands of the CLI (docs/cli.md, docs/security.md "Secrets"):
`helios secret set/ls/rm` (asked of the leading conductor), `helios secret keygen`
(a local key file) and `helios secret rewrap` (after a key rotation).

A value is never printed, and never taken from anywhere `ps` shows unless the operator
chose `--value` (a file or stdin is the way for real secrets).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from helios.cli.common import CLIError, ConductorOpt, JsonOpt, ZkOpt, app, call
from helios.cli.render import console, fmt_date, print_json, table


def read_value(value: str | None, from_file: Path | None, error: Any) -> str:
    """The value from exactly one of --value / --from-file (`-`: stdin); one trailing
    newline of a file is dropped (what `echo x > f` adds)."""
    if (value is None) == (from_file is None):
        raise error("give exactly one of --value V or --from-file F (F may be - for stdin)")
    if value is not None:
        return value
    assert from_file is not None
    try:
        text = sys.stdin.read() if str(from_file) == "-" else from_file.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"cannot read {from_file}: {getattr(e, 'strerror', None) or e}") from None
    return text[:-1] if text.endswith("\n") else text


secret_app = typer.Typer(no_args_is_help=True,
                         help="Secrets jobs refer to, encrypted at rest.")
app.add_typer(secret_app, name="secret")


def answer(out: Any, as_json: bool, line: str) -> None:
    print_json(out) if as_json else console().print(line)


def listing(names: list[str], sep: str) -> str:
    return f"{sep}{', '.join(names)}" if names else ""


@secret_app.command("set")

def secret_set(name: str = typer.Argument(..., help="The secret's name."),
               value: str | None = typer.Option(
                   None, "--value", metavar="V",
                   help="The value (visible to `ps` on this machine: prefer "
                        "--from-file)."),
               from_file: Path | None = typer.Option(
                   None, "--from-file", metavar="F",
                   help="Read the value from F (- for stdin)."),
               as_json: bool = JsonOpt, zk: str | None = ZkOpt,
               conductor: str | None = ConductorOpt) -> None:
    """Store a secret, encrypted at rest; the jobs that use it roll."""
    text = read_value(value, from_file, CLIError)
    out = call(zk, conductor, "secret_set", name, text)
    answer(out, as_json, f"secret {name} {'updated' if out.get('changed') else 'created'}"
           + listing(out.get("rolled") or [], "; rolling "))


@secret_app.command("ls")

def secret_ls(as_json: bool = JsonOpt, zk: str | None = ZkOpt,
              conductor: str | None = ConductorOpt) -> None:
    """Secrets: names, revisions and update times (never values)."""
    rows = call(zk, conductor, "secret_ls")
    if as_json:
        print_json(rows)
        return
    table(None, ["NAME", "REVISION", "KEY", "UPDATED"],
           [[s["name"], s.get("rev") or "", s.get("key") or "", fmt_date(s.get("updated"))]
            for s in rows])


@secret_app.command("rm")

def secret_rm(name: str = typer.Argument(..., help="The secret to delete."),
              as_json: bool = JsonOpt, zk: str | None = ZkOpt,
              conductor: str | None = ConductorOpt) -> None:
    """Delete a secret (refused while a job refers to it)."""
    answer(call(zk, conductor, "secret_rm", name), as_json, f"secret {name} removed")


@secret_app.command("rewrap")

def secret_rewrap(as_json: bool = JsonOpt, zk: str | None = ZkOpt,
                  conductor: str | None = ConductorOpt) -> None:
    """Encrypt every secret again under the key file's active key (after
    `keygen --rotate` reached every conductor); values and jobs do not change."""
    out = call(zk, conductor, "secret_rewrap")
    done = out.get("rewrapped") or []
    answer(out, as_json, f"{len(done)} secret(s) now under key {out.get('key')}"
           + listing(done, ": "))


@secret_app.command("keygen")

def secret_keygen(file: Path = typer.Argument(..., help="The key file to write."),
                  rotate: bool = typer.Option(
                      False, "--rotate", help="Add a new active key to an existing "
                                              "file (old keys still decrypt).")
                  ) -> None:
    """Make the conductors' secret key file (0600), or rotate it. Copy it to every
    conductor (--secret-key-file) and back it up apart from the store."""
    from helios.secrets.keyring import Keyring, KeyringError

    try:
        if rotate:
            ring = Keyring.load(file).rotated()
            ring.save(file)
        else:
            ring = Keyring.create(file)
    except KeyringError as e:
        raise CLIError(str(e)) from None
    console().print(f"{file}: active key {ring.active} ({len(ring.keys)} key(s))")
