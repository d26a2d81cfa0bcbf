"""TLS for the HTTPS ports (8443, 9443): the operator's certificate, or a local
CA made on first start, and a server certificate it signs.

With the local CA, `export CURL_CA_BUNDLE=<data dir>/tls/ca.pem` makes the
APIs' documented curl commands run unchanged; `curl -k` works too.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True, slots=True)
class ServerCertificate:
    cert: Path
    key: Path
    # None when the operator supplied the certificate.
    ca: Path | None


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """A private key, readable by its owner only from the moment it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )


def _name(common: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tasktrail"), x509.NameAttribute(NameOID.COMMON_NAME, common)]
    )


def local_certificate(directory: Path, hosts: list[str]) -> ServerCertificate:
    """The local CA and a server certificate for `hosts`, made once and kept."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = directory / "ca.pem", directory / "ca-key.pem"
    cert, key = directory / "server.pem", directory / "server-key.pem"
    now = datetime.datetime.now(datetime.UTC)
    if not ca_cert.exists() or not ca_key.exists():
        private = ec.generate_private_key(ec.SECP256R1())
        name = _name("tasktrail local CA")
        ca = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(private.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
            .sign(private, hashes.SHA256())
        )
        _write_key(ca_key, private)
        ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        cert.unlink(missing_ok=True)
    if not cert.exists() or not key.exists() or not _covers(cert, hosts):
        authority = x509.load_pem_x509_certificate(ca_cert.read_bytes())
        authority_key = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
        assert isinstance(authority_key, ec.EllipticCurvePrivateKey)
        private = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        leaf = (
            x509.CertificateBuilder()
            .subject_name(_name(hosts[0]))
            .issuer_name(authority.subject)
            .public_key(private.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(authority_key, hashes.SHA256())
        )
        _write_key(key, private)
        cert.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    return ServerCertificate(cert, key, ca_cert)


def _covers(cert: Path, hosts: list[str]) -> bool:
    try:
        names = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
    except (ValueError, x509.ExtensionNotFound):
        return False
    have = {str(n) for n in names.value.get_values_for_type(x509.IPAddress)} | set(
        names.value.get_values_for_type(x509.DNSName)
    )
    return set(hosts) <= have


def server_certificate(data_dir: Path, host: str, cert: Path | None, key: Path | None) -> ServerCertificate:
    if cert is not None or key is not None:
        if cert is None or key is None:
            raise ValueError("--tls-cert and --tls-key go together")
        return ServerCertificate(cert.resolve(), key.resolve(), None)
    hosts = ["localhost", "127.0.0.1", "::1"]
    if host not in hosts and host not in ("0.0.0.0", "::"):
        hosts.insert(0, host)
    return local_certificate(data_dir / "tls", hosts)


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    cert: Path
    key: Path


def client_certificate(directory: Path, name: str) -> ClientCertificate:
    """A client certificate for `name`, signed by the local CA in `directory`
    (`up --client-certs` asks for one on port 3000): kept in clients/."""
    if not name or not name.replace("-", "").replace(".", "").replace("_", "").isalnum():
        raise ValueError("a client name is letters, digits, '.', '-' and '_'")
    ca_cert, ca_key = directory / "ca.pem", directory / "ca-key.pem"
    if not ca_cert.exists() or not ca_key.exists():
        raise FileNotFoundError(f"no local CA in {directory}: `tasktrail up` makes it on its first start")
    authority = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    authority_key = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    assert isinstance(authority_key, ec.EllipticCurvePrivateKey)
    clients = directory / "clients"
    clients.mkdir(mode=0o700, exist_ok=True)
    cert, key = clients / f"{name}.pem", clients / f"{name}-key.pem"
    private = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(authority.subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(authority_key, hashes.SHA256())
    )
    _write_key(key, private)
    cert.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    return ClientCertificate(cert, key)
