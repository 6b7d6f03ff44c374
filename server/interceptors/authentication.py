"""Authentication: the caller's metadata -> verified credentials for the authorization step.

Signatures and expiry are checked here, without the database; whether the user, sign-in or key
is still valid is read together with the caller's permissions by the authorization step.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import grpc

from server.auth.credentials import Credentials, read_credentials
from server.auth.tokens import TokenIssuer
from server.interceptors.handlers import UnaryBehavior, wrap_unary_unary

_credentials: ContextVar[Credentials | None] = ContextVar("adplane_credentials", default=None)


def current_credentials() -> Credentials | None:
    return _credentials.get()


class AuthenticationInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, tokens: TokenIssuer) -> None:
        self._tokens = tokens

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        credentials = read_credentials(handler_call_details.invocation_metadata, tokens=self._tokens)
        handler = await continuation(handler_call_details)

        def wrap(behavior: UnaryBehavior) -> UnaryBehavior:
            async def authenticated(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                _credentials.set(credentials)
                return await behavior(request, context)

            return authenticated

        return wrap_unary_unary(handler, wrap)
