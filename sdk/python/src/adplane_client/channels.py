"""Channels to adplane: TLS (or local, for loopback targets) with the credentials as call credentials,
a service config that retries UNAVAILABLE, and failed calls raised as AdplaneError: unary calls, and
server streams (the Watch... methods) both when they open and when they fail while being read."""

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc

from adplane_client.credentials import Credentials, call_credentials
from adplane_client.errors import AdplaneError

# UNAVAILABLE means the server did not do the work (it is down, draining, or lost its database), so
# every method may be retried; creates and approvals also take a request_id that makes a retry safe.
SERVICE_CONFIG = {
    "methodConfig": [
        {
            "name": [{}],
            "retryPolicy": {
                "maxAttempts": 4,
                "initialBackoff": "0.2s",
                "maxBackoff": "3s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ]
}
OPTIONS = [("grpc.service_config", json.dumps(SERVICE_CONFIG)), ("grpc.enable_retries", 1)]


def channel_credentials(
    *,
    tls: bool,
    root_certificates: bytes | None = None,
    certificate_chain: bytes | None = None,
    private_key: bytes | None = None,
) -> grpc.ChannelCredentials:
    """TLS, or gRPC's local credentials (plaintext, loopback peers only) when `tls` is false and no
    certificate is given.

    TLS trusts the system's roots, or only the CAs of `root_certificates` (PEM: a private CA, the
    one `make run TLS=1` makes). `certificate_chain` and `private_key` (PEM) are a client certificate,
    for a server that requires one (mTLS, TLS_CLIENT_CA_FILE).
    """
    if (certificate_chain is None) != (private_key is None):
        raise ValueError("certificate_chain and private_key go together")
    if tls or root_certificates is not None or certificate_chain is not None:
        return grpc.ssl_channel_credentials(root_certificates, private_key, certificate_chain)
    return grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)


# `connect`'s keyword of the same name hides the function there.
_channel_credentials = channel_credentials


def _credentials(credentials: Credentials | None, base: grpc.ChannelCredentials) -> grpc.ChannelCredentials:
    return base if credentials is None else grpc.composite_channel_credentials(base, call_credentials(credentials))


class _Errors(grpc.UnaryUnaryClientInterceptor):
    def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        call = continuation(client_call_details, request)
        if call.exception() is not None:
            raise AdplaneError.from_rpc_error(call.exception())
        return call


class _AsyncErrors(grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        call = await continuation(client_call_details, request)
        try:
            await call
        except grpc.aio.AioRpcError as error:
            raise AdplaneError.from_rpc_error(error) from None
        return call


class _DecodedStream:
    """A sync server-streaming call whose failures, while it is read, are AdplaneErrors. Everything
    else (cancel, code, trailing_metadata, ...) is the call's own."""

    def __init__(self, call: Any) -> None:
        self._call = call

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._call)
        except grpc.RpcError as error:
            raise AdplaneError.from_rpc_error(error) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)


class _StreamErrors(grpc.UnaryStreamClientInterceptor):
    def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return _DecodedStream(continuation(client_call_details, request))


class _AsyncStreamErrors(grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        # grpc.aio wraps the iterator returned here in a call: read(), cancel() and the rest still work.
        return _decoded(await continuation(client_call_details, request))


async def _decoded(call: Any) -> AsyncIterator[Any]:
    try:
        async for message in call:
            yield message
    except grpc.aio.AioRpcError as error:
        raise AdplaneError.from_rpc_error(error) from None


def connect(
    target: str,
    credentials: Credentials | None = None,
    *,
    tls: bool = False,
    channel_credentials: grpc.ChannelCredentials | None = None,
) -> grpc.Channel:
    """A sync channel. Over TLS with the system's roots (`tls=True`), or with `channel_credentials`
    (made by `adplane_client.channel_credentials`: a private CA, a client certificate); else the target
    must be on this machine (local credentials)."""
    base = channel_credentials or _channel_credentials(tls=tls)
    secure = grpc.secure_channel(target, _credentials(credentials, base), options=OPTIONS)
    return grpc.intercept_channel(secure, _Errors(), _StreamErrors())


def connect_async(
    target: str,
    credentials: Credentials | None = None,
    *,
    tls: bool = False,
    channel_credentials: grpc.ChannelCredentials | None = None,
) -> grpc.aio.Channel:
    """An asyncio channel; same rules as `connect`."""
    base = channel_credentials or _channel_credentials(tls=tls)
    return grpc.aio.secure_channel(
        target, _credentials(credentials, base), options=OPTIONS, interceptors=[_AsyncErrors(), _AsyncStreamErrors()]
    )
