"""The server's TLS files (server/tls.py): checked before it serves, and during a rotation a pair is taken
only once the certificate and the key go together. Handshakes are in tests/e2e/test_tls.py."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.certificates import make_authority, write_atomically, write_issued
from server.config import Settings
from server.tls import ReloadingCertificates

ADPLANE = str(Path(sys.executable).parent / "adplane")


def test_a_pair_is_taken_only_once_certificate_and_key_go_together(tmp_path: Path) -> None:
    ca = make_authority("test CA")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    write_issued(ca.issue("first", names=("localhost",)), cert, key)
    certificates = ReloadingCertificates(cert, key, None)
    assert certificates.fetch() is None  # nothing changed

    second = ca.issue("second", names=("localhost",))
    write_atomically(key, second.key_pem)  # half a rotation: the new key beside the old certificate
    assert certificates.fetch() is None  # the first pair is still served
    write_atomically(cert, second.cert_pem)
    assert certificates.fetch() is not None  # the second pair, from the next connection on
    assert certificates.fetch() is None


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "TLS_CERT_FILE: cannot read"),
        ("not a certificate", "TLS_CERT_FILE: not a PEM certificate"),
        ("another key", "TLS_KEY_FILE is not the key of the certificate in TLS_CERT_FILE"),
    ],
)
def test_serve_says_what_is_wrong_with_its_tls_files(tmp_path: Path, case: str, message: str) -> None:
    ca = make_authority("test CA")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    write_issued(ca.issue("server", names=("localhost",)), cert, key)
    if case == "missing":
        cert.unlink()
    elif case == "not a certificate":
        cert.write_text("hello\n")
    else:
        key.write_bytes(ca.issue("other").key_pem)
    env = {**os.environ, "DATA_DIR": str(tmp_path), "TLS_CERT_FILE": str(cert), "TLS_KEY_FILE": str(key)}
    result = subprocess.run([ADPLANE, "serve"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert f"adplane: {message}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"tls_cert_file": "c.pem"}, "TLS_CERT_FILE and TLS_KEY_FILE go together"),
        ({"envoy_tls_key_file": "k.pem"}, "ENVOY_TLS_CERT_FILE and ENVOY_TLS_KEY_FILE go together"),
        ({"tls_client_ca_file": "ca.pem"}, "TLS_CLIENT_CA_FILE (client certificates) needs TLS_CERT_FILE"),
        (
            {"envoy_upstream_cert_file": "c.pem", "envoy_upstream_key_file": "k.pem"},
            "ENVOY_UPSTREAM_CERT_FILE needs ENVOY_UPSTREAM_CA_FILE",
        ),
    ],
)
def test_tls_settings_that_cannot_work_are_refused(settings: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings(_env_file=None, **settings)  # type: ignore[arg-type]


def test_a_new_client_ca_bundle_is_taken_at_the_next_connection(tmp_path: Path) -> None:
    ca = make_authority("test CA")
    cert, key, client_ca = tmp_path / "tls.crt", tmp_path / "tls.key", tmp_path / "ca.crt"
    write_issued(ca.issue("server", names=("localhost",)), cert, key)
    write_atomically(client_ca, ca.cert_pem)
    certificates = ReloadingCertificates(cert, key, client_ca)
    assert certificates.fetch() is None
    # A second CA added beside the first (how a client CA is rotated: both, then the new one alone).
    write_atomically(client_ca, ca.cert_pem + make_authority("next CA").cert_pem)
    assert certificates.fetch() is not None
    write_atomically(client_ca, b"not a certificate\n")
    assert certificates.fetch() is None  # refused: the bundle before it stays
