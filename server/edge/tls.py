"""Envoy's TLS: HTTPS on the listener (ENVOY_TLS_CERT_FILE / ENVOY_TLS_KEY_FILE) and TLS to the server
(ENVOY_UPSTREAM_CA_FILE, with a client certificate for mTLS: ENVOY_UPSTREAM_CERT_FILE / _KEY_FILE).

The certificates reach Envoy through file-based SDS: one small YAML file per secret, written beside
the rendered config, that names the PEM files. Envoy watches each PEM file's directory
(`watched_directory`) and reads the files again when one is renamed into place there (what
Kubernetes does with a Secret volume's `..data` link, and what `mv` of a new file does): a rotated
certificate is served without a restart. A file rewritten in place (no rename) is not noticed.
"""

import ipaddress
import json
from pathlib import Path

from server.config import Settings

TLS_SOCKET = "envoy.transport_sockets.tls"
SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"  # noqa: S105 - a type URL
EDGE_CERTIFICATE = "edge_certificate"
UPSTREAM_CA = "upstream_ca"
UPSTREAM_CERTIFICATE = "upstream_client_certificate"


def sds_secrets(settings: Settings) -> dict[str, dict[str, object]]:
    """The secrets Envoy needs for the settings, by name (none without TLS)."""
    secrets: dict[str, dict[str, object]] = {}
    if settings.envoy_tls_cert_file is not None and settings.envoy_tls_key_file is not None:
        secrets[EDGE_CERTIFICATE] = {
            "tls_certificate": _certificate(settings.envoy_tls_cert_file, settings.envoy_tls_key_file)
        }
    if settings.envoy_upstream_ca_file is not None:
        ca = settings.envoy_upstream_ca_file.absolute()
        secrets[UPSTREAM_CA] = {
            "validation_context": {"trusted_ca": {"filename": str(ca)}, "watched_directory": {"path": str(ca.parent)}}
        }
    if settings.envoy_upstream_cert_file is not None and settings.envoy_upstream_key_file is not None:
        secrets[UPSTREAM_CERTIFICATE] = {
            "tls_certificate": _certificate(settings.envoy_upstream_cert_file, settings.envoy_upstream_key_file)
        }
    return secrets


def _certificate(cert: Path, key: Path) -> dict[str, object]:
    # absolute(), not resolve(): a Secret volume's files are links into a directory that a rotation
    # replaces; the link is what stays.
    cert, key = cert.absolute(), key.absolute()
    certificate: dict[str, object] = {
        "certificate_chain": {"filename": str(cert)},
        "private_key": {"filename": str(key)},
    }
    if cert.parent == key.parent:
        # Both files are read together on a change in their directory, and taken only if neither
        # changed meanwhile. Apart, Envoy watches each file's directory (its default).
        certificate["watched_directory"] = {"path": str(cert.parent)}
    return certificate


def sds_file(sds_dir: Path, name: str) -> Path:
    return sds_dir / f"{name}.yaml"


def write_sds_files(settings: Settings, sds_dir: Path) -> None:
    """One SDS file per secret (JSON, which is YAML), for `render_envoy_config` to point at."""
    sds_dir.mkdir(parents=True, exist_ok=True)
    for name, secret in sds_secrets(settings).items():
        sds_file(sds_dir, name).write_text(json.dumps({"resources": [{"@type": SECRET_TYPE, "name": name, **secret}]}))


def _sds(sds_dir: Path, name: str) -> dict[str, object]:
    return {
        "name": name,
        "sds_config": {"path_config_source": {"path": str(sds_file(sds_dir, name).absolute())}},
    }


def listener_transport_socket(settings: Settings, sds_dir: Path) -> dict[str, object] | None:
    """HTTPS on the edge listener: HTTP/2 (gRPC, and REST or gRPC-Web from clients that offer it) or
    HTTP/1.1 by ALPN. None: plaintext."""
    if EDGE_CERTIFICATE not in sds_secrets(settings):
        return None
    return {
        "name": TLS_SOCKET,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "common_tls_context": {
                "alpn_protocols": ["h2", "http/1.1"],
                "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
                "tls_certificate_sds_secret_configs": [_sds(sds_dir, EDGE_CERTIFICATE)],
            },
        },
    }


def upstream_transport_socket(settings: Settings, sds_dir: Path) -> dict[str, object] | None:
    """TLS to the server (its certificate checked against ENVOY_UPSTREAM_CA_FILE and for the name
    `Settings.upstream_server_name`), with Envoy's client certificate when one is set. None: plaintext."""
    secrets = sds_secrets(settings)
    if UPSTREAM_CA not in secrets:
        return None
    name = settings.upstream_server_name
    try:
        ipaddress.ip_address(name)
        san_type, sni = "IP_ADDRESS", None
    except ValueError:
        san_type, sni = "DNS", name
    common: dict[str, object] = {
        "alpn_protocols": ["h2"],
        # Envoy's upstream default stops at TLS 1.2; the server speaks 1.3.
        "tls_params": {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"},
        "combined_validation_context": {
            "default_validation_context": {
                "match_typed_subject_alt_names": [{"san_type": san_type, "matcher": {"exact": name}}]
            },
            "validation_context_sds_secret_config": _sds(sds_dir, UPSTREAM_CA),
        },
    }
    if UPSTREAM_CERTIFICATE in secrets:
        common["tls_certificate_sds_secret_configs"] = [_sds(sds_dir, UPSTREAM_CERTIFICATE)]
    context: dict[str, object] = {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "common_tls_context": common,
    }
    if sni is not None:
        context["sni"] = sni
    return {"name": TLS_SOCKET, "typed_config": context}
