"""TLS of the gRPC server: TLS_CERT_FILE and TLS_KEY_FILE, and with TLS_CLIENT_CA_FILE client
certificates required (mTLS). The files are looked at again at every new connection (gRPC asks the
fetcher at each handshake; a `stat` of each file when nothing changed), and read again when one changed:
a rotated certificate is served without a restart. A certificate that does not go with its key (half
of a rotation written) is not taken; the last good pair keeps being served until it does.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import grpc
import structlog
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from server.config import Settings

logger = structlog.get_logger(__name__)


@dataclass(frozen=True)
class _Files:
    cert: Path
    key: Path
    client_ca: Path | None


_Stamp = tuple[tuple[int, int, int], ...]


class ReloadingCertificates:
    """The server's certificate configuration, made again from the files when they change."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None) -> None:
        self._files = _Files(cert, key, client_ca)
        self._stamp = self._stamps()
        self.initial = self._load()

    @property
    def requires_client_certificates(self) -> bool:
        return self._files.client_ca is not None

    def _paths(self) -> list[Path]:
        return [p for p in (self._files.cert, self._files.key, self._files.client_ca) if p is not None]

    def _stamps(self) -> _Stamp:
        # Follows symbolic links: a Kubernetes Secret volume swaps a link to a new directory.
        stamps = []
        for path in self._paths():
            try:
                status = path.stat()
            except OSError:
                stamps.append((0, 0, 0))
            else:
                stamps.append((status.st_ino, status.st_mtime_ns, status.st_size))
        return tuple(stamps)

    def _load(self) -> grpc.ServerCertificateConfiguration:
        files = self._files
        cert, key = _read(files.cert, "TLS_CERT_FILE"), _read(files.key, "TLS_KEY_FILE")
        _check_pair(cert, key)
        client_ca = _read(files.client_ca, "TLS_CLIENT_CA_FILE") if files.client_ca is not None else None
        if client_ca is not None:
            _check_certificates(client_ca, "TLS_CLIENT_CA_FILE")
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=client_ca)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's certificate configuration fetcher: a new configuration when a file changed, else None."""
        stamp = self._stamps()
        if stamp == self._stamp:
            return None
        try:
            configuration = self._load()
        except ValueError as error:
            # Looked at again at the next connection; meanwhile the last good pair is served.
            logger.warning("TLS files changed but cannot be used yet; serving the previous ones", error=str(error))
            return None
        self._stamp = stamp
        logger.info("TLS certificate reloaded", cert=str(self._files.cert), pid=os.getpid())
        return configuration


def _read(path: Path, setting: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ValueError(f"{setting}: cannot read {path} ({error.strerror})") from None


def _check_certificates(pem: bytes, setting: str) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise ValueError(f"{setting}: not a PEM certificate") from None
    return certificates


def _check_pair(cert_pem: bytes, key_pem: bytes) -> None:
    leaf = _check_certificates(cert_pem, "TLS_CERT_FILE")[0]
    try:
        key = load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise ValueError("TLS_KEY_FILE: not an unencrypted PEM private key") from None
    if key.public_key() != leaf.public_key():
        raise ValueError("TLS_KEY_FILE is not the key of the certificate in TLS_CERT_FILE")


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """The server's TLS credentials, reloaded when the files change; None: plaintext (no TLS_CERT_FILE).

    Raises ValueError saying which file is missing or wrong.
    """
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    certificates = ReloadingCertificates(settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file)
    return grpc.dynamic_ssl_server_credentials(
        certificates.initial,
        # gRPC's documented contract is "a new configuration, or None to keep the current one"; the
        # type stubs leave None out.
        cast(Callable[[], grpc.ServerCertificateConfiguration], certificates.fetch),
        require_client_authentication=certificates.requires_client_certificates,
    )
