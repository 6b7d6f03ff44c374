"""Authorization: the called method's declared policy, applied before the request is validated.

The policy is looked up once per method, when the pipeline is composed; per call the wrapper
reads `workspace_id` from the deserialized request. The caller's standing (user active, sign-in
not revoked, system permissions, role in that workspace) is one query; the Principal it yields is
what servicers read. Server-streaming methods are checked the same way before their first message,
and then again every `reauthorize_seconds` while they stream: a stream ends with UNAUTHENTICATED or
PERMISSION_DENIED soon after its caller is deactivated, signs out, loses the role or permission, or
its access token expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog

from server.auth.exceptions import CredentialsRequiredException, MissingPermissionException
from server.auth.policies import AccessPolicy, PolicyKind, PolicyTable, is_public_infrastructure
from server.auth.principal import Principal, set_current_principal
from server.auth.resolver import PrincipalResolver
from server.exceptions import FieldViolation, InvalidRequestException
from server.interceptors.authentication import current_credentials
from server.interceptors.pipeline import Context, Method, Step, StreamBehavior, UnaryBehavior
from server.schema_types import CANONICAL_UUID


class Authorization(Step):
    def __init__(self, policies: PolicyTable, resolver: PrincipalResolver, *, reauthorize_seconds: float = 5.0) -> None:
        self._policies = policies
        self._resolver = resolver
        self._reauthorize_seconds = reauthorize_seconds

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
            principal = await self._authorize(policy, request)
            set_current_principal(principal)
            stream = behavior(request, context)
            if principal is not None:

                async def check() -> None:
                    await self._authorize(policy, request)

                stream = _checked_while_streaming(stream, every=self._reauthorize_seconds, check=check)
            async for response in stream:
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
    value = getattr(request, "workspace_id", None)
    if not isinstance(value, str) or not CANONICAL_UUID.fullmatch(value):
        return None
    return uuid.UUID(value)


async def _checked_while_streaming(
    stream: AsyncIterator[Any], *, every: float, check: Callable[[], Awaitable[None]]
) -> AsyncIterator[Any]:
    """What `stream` yields, with `check` run every `every` seconds meanwhile (it raises to end the
    stream). The stream runs in a task of its own, so a check is due even while it waits for its
    next message; the task starts with this context (the principal, the request id)."""
    handoff: asyncio.Queue[tuple[bool, Any]] = asyncio.Queue(maxsize=1)

    async def pump() -> None:
        try:
            async for message in stream:
                await handoff.put((True, message))
        except Exception as error:
            await handoff.put((False, error))
            return
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
        await handoff.put((False, None))

    loop = asyncio.get_running_loop()
    pumping = asyncio.create_task(pump())
    due = loop.time() + every
    try:
        while True:
            try:
                message, value = await asyncio.wait_for(handoff.get(), max(0.0, due - loop.time()))
            except TimeoutError:
                message, value = False, _CHECK_DUE
            if loop.time() >= due:
                await check()
                due = loop.time() + every
            if message:
                yield value
            elif value is None:
                return
            elif value is not _CHECK_DUE:
                raise value
    finally:
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pumping


_CHECK_DUE = object()
