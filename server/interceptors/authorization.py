"""Authorization: the called method's declared policy, applied before the request is validated.

The policy is looked up once per method, when the pipeline is composed; per call the wrapper
reads `workspace_id` from the deserialized request. The caller's standing (user active, sign-in
not revoked, system permissions, role in that workspace) is one query; the Principal it yields is
what servicers read. Server-streaming methods are checked the same way before their first message.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import structlog

from server.auth.exceptions import CredentialsRequiredException, MissingPermissionException
from server.auth.policies import AccessPolicy, PolicyKind, PolicyTable, is_public_infrastructure
from server.auth.principal import Principal, set_current_principal
from server.auth.resolver import PrincipalResolver
from server.exceptions import FieldViolation, InvalidRequestException
from server.interceptors.authentication import current_credentials
from server.interceptors.pipeline import Context, Method, Step, StreamBehavior, UnaryBehavior


class Authorization(Step):
    def __init__(self, policies: PolicyTable, resolver: PrincipalResolver) -> None:
        self._policies = policies
        self._resolver = resolver

    def _policy(self, method: Method) -> AccessPolicy:
        # No declared policy (a method registered without one) means nobody may call it.
        return self._policies.get(method.name) or AccessPolicy(
            PolicyKind.SYSTEM_PERMISSION, f"undeclared:{method.name}"
        )

    def unary(self, method: Method, behavior: UnaryBehavior) -> UnaryBehavior:
        if is_public_infrastructure(method.name):
            return behavior
        policy = self._policy(method)

        async def authorized(request: Any, context: Context) -> Any:
            set_current_principal(await self._authorize(policy, request))
            return await behavior(request, context)

        return authorized

    def server_stream(self, method: Method, behavior: StreamBehavior) -> StreamBehavior:
        if is_public_infrastructure(method.name):
            return behavior
        policy = self._policy(method)

        async def authorized(request: Any, context: Context) -> AsyncIterator[Any]:
            set_current_principal(await self._authorize(policy, request))
            async for response in behavior(request, context):
                yield response

        return authorized

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
