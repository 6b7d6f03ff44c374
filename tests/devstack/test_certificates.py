"""The local CA of `adplane dev --tls`: made on first use with `cryptography`, kept, and renewed near its end."""

import datetime as dt
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from devstack.certificates import DEV_NAMES, dev_certificates, make_authority, write_issued
from server.config import Settings
from server.tls import ReloadingCertificates


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_made_on_first_use_then_kept(tmp_path: Path) -> None:
    first = dev_certificates(tmp_path)
    made = {path: path.read_bytes() for path in first.directory.iterdir()}
    again = dev_certificates(tmp_path)

    assert {path: path.read_bytes() for path in again.directory.iterdir()} == made
    ca, server = _load(first.ca), _load(first.server[0])
    assert server.issuer == ca.subject
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(n.value) for n in names} == set(DEV_NAMES)
    for client in (first.envoy_client[0], first.client[0]):
        usage = _load(client).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert all(oct(path.stat().st_mode & 0o777) == "0o600" for path in first.directory.iterdir())
    # The settings of a stack that uses them are valid, and the server takes its pair.
    overrides: dict[str, Any] = {name.lower(): value for name, value in first.env().items()}
    settings = Settings(_env_file=None, **overrides)
    assert ReloadingCertificates(first.server[0], first.server[1], first.ca).requires_client_certificates
    assert settings.tls_client_ca_file == first.ca


def test_a_certificate_near_its_end_is_made_again_and_a_new_ca_reissues_everything(tmp_path: Path) -> None:
    found = dev_certificates(tmp_path)
    ca = _load(found.ca)
    authority = make_authority("placeholder")  # any CA: only the dates of the leaf matter here
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    write_issued(authority.issue("localhost", names=DEV_NAMES, not_after=soon), *found.server)

    dev_certificates(tmp_path)
    assert _load(found.server[0]).issuer == ca.subject  # renewed by the kept CA
    assert _load(found.server[0]).not_valid_after_utc > soon

    write_issued(make_authority("old", lifetime=dt.timedelta(days=1)), found.ca, found.ca_key)
    dev_certificates(tmp_path)
    renewed_ca = _load(found.ca)
    assert renewed_ca.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=3000)
    for leaf in (found.server[0], found.envoy_client[0], found.client[0]):
        assert _load(leaf).issuer == renewed_ca.subject
