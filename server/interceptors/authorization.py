"""Authorization: the called method's declared policy, applied before the request is validated.

Interceptors never see the request, so the handler is wrapped to read `workspace_id` from the
deserialized message. The caller's standing (user active, sign-in not revoked, system
permissions, role in that workspace) is one query; the Principal it yields is what servicers read.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import structlog

from server.auth.exceptions import CredentialsRequiredException, MissingPermissionException
from server.auth.policies import AccessPolicy, PolicyKind, PolicyTable, is_public_infrastructure
from server.auth.principal import Principal, set_current_principal
from server.auth.resolver import PrincipalResolver
from server.exceptions import FieldViolation, InvalidRequestException
from server.interceptors.authentication import current_credentials
from server.interceptors.handlers import UnaryBehavior, wrap_unary_unary


class AuthorizationInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, policies: PolicyTable, resolver: PrincipalResolver) -> None:
        self._policies = policies
        self._resolver = resolver

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        handler = await continuation(handler_call_details)
        if is_public_infrastructure(method):
            return handler
        # No declared policy (a method registered without one) means nobody may call it.
        policy = self._policies.get(method) or AccessPolicy(PolicyKind.SYSTEM_PERMISSION, f"undeclared:{method}")

        def wrap(behavior: UnaryBehavior) -> UnaryBehavior:
            async def authorized(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                set_current_principal(await self._authorize(policy, request))
                return await behavior(request, context)

            return authorized

        return wrap_unary_unary(handler, wrap)

    async def _authorize(self, policy: AccessPolicy, request: Any) -> Principal | None:
        if policy.kind is PolicyKind.PUBLIC:
            return None
        credentials = current_credentials()
        if credentials is None:
            raise CredentialsRequiredException()
        workspace_id = _workspace_id(request) if policy.kind is PolicyKind.WORKSPACE_PERMISSION else None
        principal = await self._resolver.resolve(credentials, workspace_id=workspace_id)
        if policy.kind is PolicyKind.WORKSPACE_PERMISSION and workspace_id is None:
            # Known caller, malformed workspace id: say so (it reveals nothing about any workspace).
            raise InvalidRequestException(
                [FieldViolation(field="workspace_id", description="must be a UUID", reason="INVALID_ID")]
            )
        structlog.contextvars.bind_contextvars(caller=f"{principal.kind}:{principal.id}")
        if policy.kind is PolicyKind.AUTHENTICATED:
            allowed = True
        elif policy.kind is PolicyKind.SYSTEM_PERMISSION or workspace_id is None:  # None only for the type checker
            allowed = principal.has_system_permission(policy.permission)
        else:
            allowed = principal.has_workspace_permission(policy.permission, workspace_id)
        if not allowed:
            raise MissingPermissionException(policy.permission)
        return principal


def _workspace_id(request: Any) -> uuid.UUID | None:
    """The workspace the request names; None when it is not a UUID."""
    try:
        return uuid.UUID(request.workspace_id)
    except (AttributeError, ValueError):
        return None
