"""Trial TLS certificates for a cluster file (`robolake certs`): one CA, one certificate per host.

Writes `<tls dir>/ca.crt` and `ca.key`, and for each host `<tls dir>/<name>/public.crt` and
`private.key` (the names MinIO's --certs-dir expects), valid for the host's address, its name
and 127.0.0.1. Keys are ECDSA P-256, written 0600. An existing CA is reused (so a host added
later joins the same trust), an existing host certificate is kept unless `renew`.
For production, put certificates from your own CA in the same places instead.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from robolake.errors import ConfigError
from robolake.stack.hosts import Cluster, Host

VALID_DAYS = 365


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(common: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "robolake"), x509.NameAttribute(NameOID.COMMON_NAME, common)]
    )


def _ca(cluster: Cluster) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, bool]:
    cert_path, key_path = cluster.ca, cluster.tls_dir / "ca.key"
    if cert_path.is_file() and key_path.is_file():
        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except ValueError as exc:
            raise ConfigError(
                f"cannot read the CA in {cluster.tls_dir}: {exc}; move it away to make a new one"
            ) from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError(f"{key_path} is not an ECDSA key; move the CA away to make a new one")
        return cert, key, False
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("robolake trial CA"))
        .issuer_name(_name("robolake trial CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS * 5))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    return cert, key, True


def _host_cert(
    host: Host, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    names: list[x509.GeneralName] = [x509.DNSName(host.name), x509.DNSName("localhost")]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in dict.fromkeys((host.address, "127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(host.name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def make_certs(cluster: Cluster, *, renew: bool = False) -> list[str]:
    """Make what is missing (or, with `renew`, every host certificate); returns what was written."""
    ca, ca_key, new_ca = _ca(cluster)
    written = [str(cluster.ca)] if new_ca else []
    for host in cluster.hosts:
        if cluster.cert(host).is_file() and cluster.key(host).is_file() and not renew and not new_ca:
            continue
        cert, key = _host_cert(host, ca, ca_key)
        _write_key(cluster.key(host), key)
        _write_cert(cluster.cert(host), cert)
        written.append(str(cluster.cert(host)))
    return written
