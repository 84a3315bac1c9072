"""SeaweedFS's own locks, written to security.toml in the stack directory (weed reads it from
its working directory): without them every local user could write through the filer, master
and volume ports, and read back through the filer, bypassing S3's access key.

- HTTP: JWT signing keys for writes and reads on the volume server (`jwt.signing`) and the
  filer (`jwt.filer_signing`). The master's and the filer's HTTP APIs are switched off
  altogether (`weed mini -disableHttp`): only S3 and gRPC stay.
- gRPC: mutual TLS. A certificate authority made for this stack signs one certificate that
  every component presents and requires; a client without it cannot connect.

The keys and certificates are generated at each start (nothing needs them to persist) and
stay private (mode 600, in the stack's mode-700 directory).
"""

from __future__ import annotations

import datetime
import secrets
from pathlib import Path

from cifar10_mlops.team_stack.ports import HOST
from cifar10_mlops.team_stack.state import write_private

SECURITY_FILE = "security.toml"
TLS_DIR = "tls"
# The gRPC servers and clients `weed mini` runs (each reads its own section).
GRPC_SECTIONS = ("master", "volume", "filer", "s3", "admin", "client", "msg_broker", "msg_agent")
JWT_SECTIONS = ("jwt.signing", "jwt.signing.read", "jwt.filer_signing", "jwt.filer_signing.read")
CERT_DAYS = 3650  # a local stack; its CA is regenerated at every start anyway


def write_security_config(directory: Path) -> Path:
    """security.toml (and tls/ca.crt, tls/weed.crt, tls/weed.key) for a fresh start."""
    tls = directory / TLS_DIR
    tls.mkdir(mode=0o700, exist_ok=True)
    ca, cert, key = _certificates(tls)
    lines = ["# written by cifar10-mlops team-stack at each start; do not edit"]
    for section in JWT_SECTIONS:
        lines += [
            f"[{section}]",
            f'key = "{secrets.token_urlsafe(32)}"',
            "expires_after_seconds = 10",
        ]
    lines += ["[access]", "ui = false", "[grpc]", f'ca = "{ca}"']
    for section in GRPC_SECTIONS:
        lines += [f"[grpc.{section}]", f'cert = "{cert}"', f'key = "{key}"']
    path = directory / SECURITY_FILE
    write_private(path, "\n".join(lines) + "\n")
    return path


def _certificates(tls: Path) -> tuple[Path, Path, Path]:
    """A CA of this stack, and one certificate it signs for 127.0.0.1 / localhost."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    until = now + datetime.timedelta(days=CERT_DAYS)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cifar10-mlops team stack CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(until)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [x509.ExtendedKeyUsageOID.SERVER_AUTH, x509.ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = (tls / "ca.crt", tls / "weed.crt", tls / "weed.key")
    pem = serialization.Encoding.PEM
    write_private(paths[0], ca_cert.public_bytes(pem).decode())
    write_private(paths[1], cert.public_bytes(pem).decode())
    write_private(
        paths[2],
        key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
    )
    return paths
