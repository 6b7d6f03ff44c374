"""Certificates made with the `cryptography` package (no openssl): the local CA of `adplane dev --tls`
and the certificates the TLS tests hand out (good ones, expired ones, ones of a stranger's CA).

Files are written owner-only and renamed into place, the way a rotation should happen: a process
reading them (Envoy's file watch, the server's reload) never sees half a file.
"""

import datetime as dt
import ipaddress
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Long enough that `make run` never meets an expired development certificate in practice; each is
# made again (by `dev_certificates`) once it has less than RENEW_BEFORE left.
CA_LIFETIME = dt.timedelta(days=3650)
LEAF_LIFETIME = dt.timedelta(days=365)
RENEW_BEFORE = dt.timedelta(days=30)
# A certificate is valid from a little before it was made: clocks of two processes may differ.
BACKDATE = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, PEM."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)


@dataclass(frozen=True)
class Authority(Issued):
    """A certificate authority that can issue server and client certificates."""

    def issue(
        self,
        common_name: str,
        *,
        names: tuple[str, ...] = (),
        server: bool = True,
        client: bool = False,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> Issued:
        """A leaf certificate for `names` (DNS names or IP addresses, the subject alternative names)."""
        now = dt.datetime.now(dt.UTC)
        not_after = not_after or now + LEAF_LIFETIME
        # An expired certificate (a test's) was valid for a day before it expired.
        not_before = not_before or min(now - BACKDATE, not_after - dt.timedelta(days=1))
        key = ec.generate_private_key(ec.SECP256R1())
        ca_key = serialization.load_pem_private_key(self.key_pem, password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        usages = [ExtendedKeyUsageOID.SERVER_AUTH] * server + [ExtendedKeyUsageOID.CLIENT_AUTH] * client
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(name) for name in names]), critical=False
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        return Issued(cert_pem=cert.public_bytes(serialization.Encoding.PEM), key_pem=_key_pem(key))


def make_authority(common_name: str, *, lifetime: dt.timedelta = CA_LIFETIME) -> Authority:
    """A new self-signed CA."""
    now = dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(cert_pem=cert.public_bytes(serialization.Encoding.PEM), key_pem=_key_pem(key))


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_atomically(path: Path, data: bytes) -> None:
    """Write `path` owner-only through a temporary file in its directory renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_issued(issued: Issued, cert_path: Path, key_path: Path) -> None:
    """The key first: a reader that sees the new certificate finds its key already there."""
    write_atomically(key_path, issued.key_pem)
    write_atomically(cert_path, issued.cert_pem)


# ---- the local CA of `adplane dev --tls` ---------------------------------------------------------

DEV_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class DevCertificates:
    """Where `adplane dev --tls` keeps its CA and certificates (DATA_DIR/tls)."""

    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca-key.pem"

    @property
    def server(self) -> tuple[Path, Path]:
        """The certificate of the server and of Envoy's listener (both on this machine)."""
        return self.directory / "server.pem", self.directory / "server-key.pem"

    @property
    def envoy_client(self) -> tuple[Path, Path]:
        """The client certificate Envoy presents to the server (mTLS)."""
        return self.directory / "envoy-client.pem", self.directory / "envoy-client-key.pem"

    @property
    def client(self) -> tuple[Path, Path]:
        """A client certificate for a developer's own direct gRPC calls (grpcurl, the SDK examples)."""
        return self.directory / "client.pem", self.directory / "client-key.pem"

    def env(self) -> dict[str, str]:
        """The settings of a stack that uses them: the server serves TLS and requires client
        certificates; Envoy serves HTTPS and presents its client certificate to the server."""
        return {
            "TLS_CERT_FILE": str(self.server[0]),
            "TLS_KEY_FILE": str(self.server[1]),
            "TLS_CLIENT_CA_FILE": str(self.ca),
            "ENVOY_TLS_CERT_FILE": str(self.server[0]),
            "ENVOY_TLS_KEY_FILE": str(self.server[1]),
            "ENVOY_UPSTREAM_CA_FILE": str(self.ca),
            "ENVOY_UPSTREAM_CERT_FILE": str(self.envoy_client[0]),
            "ENVOY_UPSTREAM_KEY_FILE": str(self.envoy_client[1]),
        }


def dev_certificates(data_dir: Path) -> DevCertificates:
    """The local CA and its certificates under `data_dir`/tls, made on first use; a certificate close
    to its end is made again (the CA too, and with it everything it signed)."""
    found = DevCertificates(data_dir / "tls")
    authority = _load_authority(found)
    if authority is None:
        authority = make_authority("adplane development CA (this machine only)")
        write_issued(authority, found.ca, found.ca_key)
        for path in (*found.server, *found.envoy_client, *found.client):
            path.unlink(missing_ok=True)
    if not _fresh(found.server[0]):
        write_issued(authority.issue("localhost", names=DEV_NAMES), *found.server)
    if not _fresh(found.envoy_client[0]):
        write_issued(authority.issue("adplane-envoy", server=False, client=True), *found.envoy_client)
    if not _fresh(found.client[0]):
        write_issued(authority.issue("adplane-developer", server=False, client=True), *found.client)
    return found


def _load_authority(found: DevCertificates) -> Authority | None:
    if not (_fresh(found.ca) and found.ca_key.is_file()):
        return None
    return Authority(cert_pem=found.ca.read_bytes(), key_pem=found.ca_key.read_bytes())


def _fresh(path: Path) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return False
    return cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > RENEW_BEFORE
