"""The cluster's own CA, and certificates that name a role and a name (docs/security.md).

As in Nomad (`nomad tls ca create`, `nomad tls cert create -server|-client|-cli`): every
Helios process proves who it is with a certificate from the cluster's CA. The identity is
in the certificate's subject: the organizational unit is the role (`conductor`, `node`,
`cli`) and the common name is the name (`O=Helios, OU=node, CN=n1`), which is what
`actors.PeerInfo` reads on every connection. The subject alternative names hold the hosts
(`--host`, plus `localhost` and 127.0.0.1) for tools that check them; Helios itself never
trusts a host name, only the verified role and name.

Keys are ECDSA P-256 (fast handshakes); private keys are written 0600 and never
overwritten. A `cli` certificate may only be a TLS client (extended key usage
clientAuth), so it can never serve as a daemon.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CA_CERT", "CA_KEY", "ROLES", "Identity", "cert_paths", "create_ca",
           "create_cert", "read_identity"]

CA_CERT = "helios-ca.pem"
CA_KEY = "helios-ca-key.pem"
ROLES = ("conductor", "node", "cli")
ORGANIZATION = "Helios"
DEFAULT_CA_DAYS = 5 * 365
DEFAULT_CERT_DAYS = 365
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class TLSError(Exception):
    """A certificate cannot be made or read; the message is one line for the user."""


@dataclass(frozen=True)
class Identity:
    """Who a certificate says its holder is."""

    role: str
    name: str
    not_after: dt.datetime

    def __str__(self) -> str:
        return f"{self.role}:{self.name}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create `path` with `mode` (never replacing a file: a CA key overwritten by mistake
    would orphan every certificate of the cluster)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise TLSError(f"{path} exists already; remove it first or choose another "
                       "directory") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def create_ca(directory: str | os.PathLike[str] = ".", days: int = DEFAULT_CA_DAYS
              ) -> tuple[Path, Path]:
    """A new cluster CA: `D/helios-ca.pem` and `D/helios-ca-key.pem` (0600)."""
    if days <= 0:
        raise TLSError("--days must be positive")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = d / CA_CERT, d / CA_KEY
    for p in (cert_path, key_path):
        if p.exists():
            raise TLSError(f"{p} exists already; a cluster has one CA (remove it first "
                           "to start over)")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        x509.NameAttribute(NameOID.COMMON_NAME, f"Helios CA {os.urandom(4).hex()}"),
    ])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    _write_new(key_path, _key_pem(key), 0o600)
    _write_new(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path


def cert_paths(role: str, name: str, out_dir: str | os.PathLike[str] = ".") -> tuple[Path, Path]:
    """Where `helios tls cert create` writes: `O/<role>-<name>.pem`, `O/<role>-<name>-key.pem`."""
    d = Path(out_dir)
    return d / f"{role}-{name}.pem", d / f"{role}-{name}-key.pem"


def check_identity(role: str, name: str) -> None:
    if role not in ROLES:
        raise TLSError(f"--role must be one of {', '.join(ROLES)}, not {role!r}")
    if not _NAME.fullmatch(name):
        raise TLSError(f"--name {name!r}: use letters, digits, '.', '_' and '-' (at most 63, "
                       "starting with a letter or digit)")


def _load_ca(ca_dir: str | os.PathLike[str]) -> tuple[x509.Certificate,
                                                       ec.EllipticCurvePrivateKey]:
    d = Path(ca_dir)
    try:
        cert = x509.load_pem_x509_certificate((d / CA_CERT).read_bytes())
        key = serialization.load_pem_private_key((d / CA_KEY).read_bytes(), password=None)
    except FileNotFoundError as e:
        raise TLSError(f"no CA in {d} ({e.filename} missing): run `helios tls ca create "
                       f"--dir {d}` first") from None
    except ValueError as e:
        raise TLSError(f"the CA in {d} cannot be read: {e}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TLSError(f"the CA key in {d} is not an EC key made by `helios tls ca create`")
    return cert, key


def _san(hosts: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    seen: set[str] = set()
    for host in ["localhost", "127.0.0.1", *hosts]:
        if not host or host in seen:
            continue
        seen.add(host)
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            out.append(x509.DNSName(host))
    return out


def create_cert(role: str, name: str, *, ca_dir: str | os.PathLike[str] = ".",
                out_dir: str | os.PathLike[str] = ".", hosts: list[str] | None = None,
                days: int = DEFAULT_CERT_DAYS, not_before: dt.datetime | None = None
                ) -> tuple[Path, Path]:
    """A certificate for `role` `name` signed by the CA in `ca_dir`; returns the paths of
    the certificate and its key (0600). `not_before` (tests) backdates it: with a short
    `days`, an expired certificate."""
    check_identity(role, name)
    if days <= 0:
        raise TLSError("--days must be positive")
    ca_cert, ca_key = _load_ca(ca_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = cert_paths(role, name, out)
    for p in (cert_path, key_path):
        if p.exists():
            raise TLSError(f"{p} exists already; remove it first to issue a new one")
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or (_now() - dt.timedelta(minutes=5))
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if role != "cli":
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
        x509.NameAttribute(NameOID.COMMON_NAME, name),
    ])
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False,
                                         crl_sign=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=True, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectAlternativeName(_san(list(hosts or []))),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write_new(key_path, _key_pem(key), 0o600)
    _write_new(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path


def read_identity(cert_file: str | os.PathLike[str]) -> Identity:
    """The role and name a certificate file names (as its peers will read them)."""
    try:
        cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    except (OSError, ValueError) as e:
        raise TLSError(f"cannot read the certificate {cert_file}: {e}") from None
    ous = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not ous or not cns:
        raise TLSError(f"{cert_file} names no Helios role and name (subject OU and CN); "
                       "make one with `helios tls cert create`")
    return Identity(str(ous[0].value), str(cns[0].value), cert.not_valid_after_utc)
