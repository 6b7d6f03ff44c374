"""Credentials sent as gRPC call credentials: an access token refreshed before it expires, or an API key."""

import datetime as dt
import threading
from typing import Protocol

import grpc

from adplane.v1 import auth_service_pb2
from adplane.v1.auth_service_pb2_grpc import AuthServiceStub
from adplane_client.errors import AdplaneError

# Refresh this long before the access token expires, so a call never leaves with a stale one.
REFRESH_AHEAD = dt.timedelta(seconds=30)


class Credentials(Protocol):
    def metadata(self) -> tuple[tuple[str, str], ...]: ...


class ApiKeyCredentials:
    """An API key (ApiKeyService.CreateApiKey), sent as `x-api-key`."""

    def __init__(self, api_key: str) -> None:
        self._api_key = api_key

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-api-key", self._api_key),)


class TokenCredentials:
    """A signed-in user's tokens. The access token is renewed through RefreshToken (which spends the
    refresh token and returns a new pair) when it is about to expire; `on_refresh` sees every new pair,
    e.g. to store the refresh token."""

    def __init__(
        self,
        tokens: auth_service_pb2.TokenPair,
        *,
        target: str,
        channel_credentials: grpc.ChannelCredentials | None = None,
        on_refresh: "OnRefresh | None" = None,
    ) -> None:
        self._tokens = tokens
        self._target = target
        self._channel_credentials = channel_credentials
        self._on_refresh = on_refresh
        self._lock = threading.Lock()

    @classmethod
    def login(
        cls, target: str, email: str, password: str, *, channel_credentials: grpc.ChannelCredentials | None = None
    ) -> "TokenCredentials":
        """Sign in with AuthService.Login."""
        with _plain_channel(target, channel_credentials) as channel:
            try:
                reply = AuthServiceStub(channel).Login(auth_service_pb2.LoginRequest(email=email, password=password))
            except grpc.RpcError as error:
                raise AdplaneError.from_rpc_error(error) from None
        return cls(reply.tokens, target=target, channel_credentials=channel_credentials)

    @property
    def tokens(self) -> auth_service_pb2.TokenPair:
        return self._tokens

    def metadata(self) -> tuple[tuple[str, str], ...]:
        with self._lock:
            expires = self._tokens.access_token_expire_time.ToDatetime(tzinfo=dt.UTC)
            if expires - REFRESH_AHEAD <= dt.datetime.now(dt.UTC):
                self._refresh()
            return (("authorization", f"Bearer {self._tokens.access_token}"),)

    def _refresh(self) -> None:
        with _plain_channel(self._target, self._channel_credentials) as channel:
            try:
                reply = AuthServiceStub(channel).RefreshToken(
                    auth_service_pb2.RefreshTokenRequest(refresh_token=self._tokens.refresh_token)
                )
            except grpc.RpcError as error:
                raise AdplaneError.from_rpc_error(error) from None
        self._tokens = reply.tokens
        if self._on_refresh is not None:
            self._on_refresh(reply.tokens)


class OnRefresh(Protocol):
    def __call__(self, tokens: auth_service_pb2.TokenPair, /) -> None: ...


class _MetadataPlugin(grpc.AuthMetadataPlugin):
    """Runs on gRPC's own thread for every call, sync or asyncio."""

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials

    def __call__(self, context: grpc.AuthMetadataContext, callback: grpc.AuthMetadataPluginCallback) -> None:
        try:
            metadata = self._credentials.metadata()
        except Exception as error:  # handed to gRPC, which fails the call with it
            callback((), error)
        else:
            callback(metadata, None)


def call_credentials(credentials: Credentials) -> grpc.CallCredentials:
    return grpc.metadata_call_credentials(_MetadataPlugin(credentials), name=type(credentials).__name__)


def _plain_channel(target: str, channel_credentials: grpc.ChannelCredentials | None) -> grpc.Channel:
    if channel_credentials is None:
        return grpc.insecure_channel(target)
    return grpc.secure_channel(target, channel_credentials)
