"""Authentication: the caller's metadata -> verified credentials for the authorization step.

Signatures and expiry are checked here, without the database; whether the user, sign-in or key
is still valid is read together with the caller's permissions by the authorization step.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any

from server.auth.credentials import Credentials, read_credentials
from server.auth.tokens import TokenIssuer
from server.interceptors.pipeline import Context, Method, Step, StreamBehavior, UnaryBehavior, call_metadata

_credentials: ContextVar[Credentials | None] = ContextVar("adplane_credentials", default=None)


def current_credentials() -> Credentials | None:
    return _credentials.get()


class Authentication(Step):
    def __init__(self, tokens: TokenIssuer) -> None:
        self._tokens = tokens

    def _authenticate(self, context: Context) -> None:
        _credentials.set(read_credentials(call_metadata(context), tokens=self._tokens))

    def unary(self, method: Method, behavior: UnaryBehavior) -> UnaryBehavior:
        async def authenticated(request: Any, context: Context) -> Any:
            self._authenticate(context)
            return await behavior(request, context)

        return authenticated

    def server_stream(self, method: Method, behavior: StreamBehavior) -> StreamBehavior:
        async def authenticated(request: Any, context: Context) -> AsyncIterator[Any]:
            self._authenticate(context)
            async for response in behavior(request, context):
                yield response

        return authenticated
