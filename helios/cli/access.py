"""Identity and access in the CLI (docs/security.md): `helios tls ca|cert create` make
the cluster's certificates locally; `helios acl bootstrap` and `helios acl token ...` ask
the conductor. Parsing and rendering only.
"""

from __future__ import annotations

from pathlib import Path

import typer

from helios.cli.common import CLIError, ConductorOpt, JsonOpt, ZkOpt, app, call
from helios.cli.render import console, fmt_date, print_json, table

tls_app = typer.Typer(no_args_is_help=True, help="The cluster's CA and certificates.")
tls_ca_app = typer.Typer(no_args_is_help=True, help="The cluster's certificate authority.")
tls_cert_app = typer.Typer(no_args_is_help=True, help="Certificates for daemons and people.")
tls_app.add_typer(tls_ca_app, name="ca")
tls_app.add_typer(tls_cert_app, name="cert")
app.add_typer(tls_app, name="tls")
acl_app = typer.Typer(no_args_is_help=True, help="ACL tokens for people and scripts.")
acl_token_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke tokens.")
acl_app.add_typer(acl_token_app, name="token")
app.add_typer(acl_app, name="acl")


@tls_ca_app.command("create")
def tls_ca_create(directory: Path = typer.Option(Path("."), "--dir", metavar="D",
                                                 help="Where to write the CA."),
                  days: int = typer.Option(5 * 365, "--days", metavar="N",
                                           help="Validity in days.")) -> None:
    """A cluster CA: D/helios-ca.pem and D/helios-ca-key.pem (0600)."""
    from helios.security.tls import TLSError, create_ca

    try:
        cert, key = create_ca(directory, days)
    except (TLSError, OSError) as e:
        raise CLIError(str(e)) from None
    print(f"==> CA certificate: {cert}\n==> CA key: {key} (0600; keep it offline: it "
          "makes every identity of the cluster)")


@tls_cert_app.command("create")
def tls_cert_create(role: str = typer.Option(..., "--role",
                                             help="conductor | node | cli"),
                    name: str = typer.Option(..., "--name", metavar="N",
                                             help="The name it proves (a node's --name)."),
                    ca_dir: Path = typer.Option(Path("."), "--ca-dir", metavar="D"),
                    out_dir: Path = typer.Option(Path("."), "--out-dir", metavar="O"),
                    host: list[str] | None = typer.Option(
                        None, "--host", metavar="H",
                        help="A host name or address it is reached at (repeatable)."),
                    days: int = typer.Option(365, "--days", metavar="N")) -> None:
    """O/<role>-<N>.pem and O/<role>-<N>-key.pem, signed by the CA in --ca-dir."""
    from helios.security.tls import TLSError, create_cert

    try:
        cert, key = create_cert(role, name, ca_dir=ca_dir, out_dir=out_dir,
                                hosts=list(host or []), days=days)
    except (TLSError, OSError) as e:
        raise CLIError(str(e)) from None
    print(f"==> {role} {name}: certificate {cert}, key {key}")


@acl_app.command("bootstrap")
def acl_bootstrap(as_json: bool = JsonOpt, zk: str | None = ZkOpt,
                  conductor: str | None = ConductorOpt) -> None:
    """Turn ACLs on (once per cluster) and print the first management token's secret."""
    out = call(zk, conductor, "acl_bootstrap")
    if as_json:
        print_json(out)
        return
    print(f"ACLs are on. Management token {out['name']!r}:\nsecret: {out['secret']}\n"
          "It is shown once: keep it in a file only you can read, and pass --token-file "
          "FILE (or set HELIOS_TOKEN).")


@acl_token_app.command("create")
def acl_token_create(name: str = typer.Option(..., "--name", metavar="N"),
                     role: str = typer.Option(..., "--role",
                                              help="management | operator | reader"),
                     as_json: bool = JsonOpt, zk: str | None = ZkOpt,
                     conductor: str | None = ConductorOpt) -> None:
    """A token; its secret is printed once, only its hash is stored."""
    out = call(zk, conductor, "acl_token_create", name, role)
    if as_json:
        print_json(out)
        return
    print(f"token {out['name']!r} ({out['role']}):\nsecret: {out['secret']}\n"
          "It is shown once.")


@acl_token_app.command("ls")
def acl_token_ls(as_json: bool = JsonOpt, zk: str | None = ZkOpt,
                 conductor: str | None = ConductorOpt) -> None:
    """Tokens: name, role, creation time (never their secrets)."""
    rows = call(zk, conductor, "acl_token_ls")
    if as_json:
        print_json(rows)
        return
    table(None, ["NAME", "ROLE", "CREATED"],
           [[t["name"], t["role"], fmt_date(t.get("created"))] for t in rows])


@acl_token_app.command("rm")
def acl_token_rm(name: str = typer.Argument(..., help="The token to revoke."),
                 as_json: bool = JsonOpt, zk: str | None = ZkOpt,
                 conductor: str | None = ConductorOpt) -> None:
    """Revoke a token at once."""
    out = call(zk, conductor, "acl_token_rm", name)
    print_json(out) if as_json else console().print(f"token {name} revoked")
