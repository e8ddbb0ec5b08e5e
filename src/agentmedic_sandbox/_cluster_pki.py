"""The certificates and keys of one local control plane, generated for one run.

One CA signs the API server's serving certificate and an admin client certificate in
``system:masters``; an RSA key signs service-account tokens. Everything is valid for two
days from five minutes ago and written to the cluster's work folder.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Pki"]


def _key_pem(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


class _Ca:
    """A self-signed CA and what it needs to sign leaves."""

    def __init__(self, now: dt.datetime, until: dt.datetime) -> None:
        self.now, self.until = now, until
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agentmedic-local-ca")])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )

    def leaf(
        self, cn: str, org: str | None, usage: Any, sans: list[x509.GeneralName] | None
    ) -> tuple[bytes, bytes]:
        """A certificate (PEM) and its key (PEM) for ``cn`` in ``org``."""
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if org:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now)
            .not_valid_after(self.until)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _serving_sans(service_cidr: str) -> list[x509.GeneralName]:
    service_ip = next(ipaddress.IPv4Network(service_cidr).hosts())
    return [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(service_ip),
        x509.DNSName("localhost"),
        x509.DNSName("kubernetes.default.svc"),
        x509.DNSName("kubernetes.default.svc.cluster.local"),
    ]


class Pki:
    """One CA for serving and clients, the apiserver's serving cert, an admin client cert
    in ``system:masters`` and the service-account signing key, written to ``folder``."""

    def __init__(self, folder: Path, service_cidr: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._folder = folder
        now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        ca = _Ca(now, now + dt.timedelta(days=2))
        serving_cert, serving_key = ca.leaf(
            "kube-apiserver", None, ExtendedKeyUsageOID.SERVER_AUTH, _serving_sans(service_cidr)
        )
        admin_cert, admin_key = ca.leaf(
            "agentmedic-admin", "system:masters", ExtendedKeyUsageOID.CLIENT_AUTH, None
        )
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

        self.ca_pem = ca.cert.public_bytes(serialization.Encoding.PEM)
        self.ca = self._write("ca.crt", self.ca_pem)
        self.serving_cert = self._write("apiserver.crt", serving_cert)
        self.serving_key = self._write("apiserver.key", serving_key, private=True)
        self.admin_cert_pem = admin_cert
        self.admin_key_pem = admin_key
        self.admin_cert = self._write("admin.crt", admin_cert)
        self.admin_key = self._write("admin.key", admin_key, private=True)
        self.sa_key = self._write("sa.key", _key_pem(sa_key), private=True)
        self.sa_pub = self._write(
            "sa.pub",
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        )

    def _write(self, name: str, data: bytes, private: bool = False) -> Path:
        path = self._folder / name
        path.write_bytes(data)
        if private:
            path.chmod(0o600)
        return path
