"""API keys for internal services: created with system roles (shown once, stored hashed), listed and
revoked by staff. The api_keys module owns `api_keys` and `api_keys_roles`; the roles themselves are
the users module's, asked for by name and id through `IRoleLookup`.
"""

import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

from server.api_keys.exceptions import ApiKeyNotFoundException, UnknownRoleException
from server.api_keys.models import ApiKey
from server.api_keys.repository import IApiKeyRepository
from server.api_keys.schemas import (
    ApiKeyCreatedSchema,
    ApiKeyCreateRequestSchema,
    ApiKeyListRequestSchema,
    ApiKeyResponseSchema,
)
from server.audit_logs.service import IAuditTrail
from server.auth.api_key_format import new_key
from server.auth.principal import Principal
from server.db import utcnow
from server.idempotency.service import IdempotencyService
from server.pagination import Page, PageTokenCodec

# A prefix is 48 random bits: a collision is astronomically unlikely, two in a row is a bug.
_KEY_ATTEMPTS = 3
# The audit entity type of this module. Snapshots are ApiKeyResponseSchema: never the key or its hash.
API_KEY = "api_key"


class RoleState(Protocol):
    @property
    def id(self) -> uuid.UUID: ...
    @property
    def name(self) -> str: ...


class IRoleLookup(Protocol):
    """The system roles an API key may hold (the users module's role repository)."""

    async def get_by_names(self, names: Collection[str]) -> Sequence[RoleState]: ...
    async def get_by_ids(self, role_ids: Collection[uuid.UUID]) -> Sequence[RoleState]: ...


class IApiKeyService(Protocol):
    async def create_api_key(
        self, data: ApiKeyCreateRequestSchema, *, actor: Principal, idempotency_key: str | None = None
    ) -> ApiKeyCreatedSchema: ...
    async def list_api_keys(self, query: ApiKeyListRequestSchema) -> Page[ApiKeyResponseSchema]: ...
    async def revoke_api_key(self, api_key_id: uuid.UUID) -> ApiKeyResponseSchema: ...


class ApiKeyService:
    def __init__(
        self,
        *,
        repository: IApiKeyRepository,
        roles: IRoleLookup,
        audit: IAuditTrail,
        idempotency: IdempotencyService,
        page_tokens: PageTokenCodec,
    ) -> None:
        self._audit = audit
        self._repository = repository
        self._roles = roles
        self._idempotency = idempotency
        self._page_tokens = page_tokens

    async def create_api_key(
        self, data: ApiKeyCreateRequestSchema, *, actor: Principal, idempotency_key: str | None = None
    ) -> ApiKeyCreatedSchema:
        """Create a key; the result carries its secret, which a replayed retry does not."""

        # Audited inside `create`: a replayed retry changes nothing, so it records nothing.
        async def create() -> tuple[uuid.UUID, ApiKeyCreatedSchema]:
            roles = await self._roles_named(data.role_names)
            for _ in range(_KEY_ATTEMPTS):
                key, prefix, secret_hash = new_key()
                api_key = await self._repository.add(
                    name=data.name,
                    prefix=prefix,
                    secret_hash=secret_hash,
                    role_ids=[role.id for role in roles],
                    created_by_user_id=actor.user_id,
                )
                if api_key is not None:
                    created = _to_schema(api_key, {role.id: role.name for role in roles})
                    await self._audit.record(
                        entity_type=API_KEY, entity_id=api_key.id, action="create", workspace_id=None, after=created
                    )
                    return api_key.id, ApiKeyCreatedSchema(api_key=created, secret=key)
            raise RuntimeError(f"no free API key prefix after {_KEY_ATTEMPTS} attempts")

        async def replay(api_key_id: uuid.UUID) -> ApiKeyCreatedSchema:
            return ApiKeyCreatedSchema(api_key=await self._schema(await self._get(api_key_id)), secret=None)

        return await self._idempotency.run_once(
            scope="api_keys.create",
            caller=actor.id,
            idempotency_key=idempotency_key,
            payload=data,
            create=create,
            replay=replay,
        )

    async def list_api_keys(self, query: ApiKeyListRequestSchema) -> Page[ApiKeyResponseSchema]:
        page = await self._page_tokens.page(
            query,
            "api_keys",
            fetch=lambda after, limit: self._repository.list(
                include_revoked=query.include_revoked,
                after=after,
                limit=limit,
            ),
            convert=lambda api_key: api_key,
        )
        return Page(items=await self._schemas(page.items), next_page_token=page.next_page_token)

    async def revoke_api_key(self, api_key_id: uuid.UUID) -> ApiKeyResponseSchema:
        """Revoke a key; revoking a revoked key returns it unchanged."""
        revoked = await self._repository.revoke(api_key_id, now=utcnow())
        if revoked is None:
            return await self._schema(await self._get(api_key_id))
        after = await self._schema(revoked)
        # Exact without reading first: the revoke matched a working key, and nothing else of a key changes.
        before = after.model_copy(update={"revoked_at": None})
        await self._audit.record(
            entity_type=API_KEY, entity_id=api_key_id, action="revoke", workspace_id=None, before=before, after=after
        )
        return after

    async def _schema(self, api_key: ApiKey) -> ApiKeyResponseSchema:
        return (await self._schemas([api_key]))[0]

    async def _schemas(self, api_keys: Sequence[ApiKey]) -> list[ApiKeyResponseSchema]:
        """The keys as responses, their roles named (one lookup for all of them)."""
        roles = await self._roles.get_by_ids({role_id for api_key in api_keys for role_id in api_key.role_ids})
        names = {role.id: role.name for role in roles}
        return [_to_schema(api_key, names) for api_key in api_keys]

    async def _roles_named(self, names: list[str]) -> Sequence[RoleState]:
        if not names:
            return []
        roles = await self._roles.get_by_names(names)
        unknown = set(names) - {role.name for role in roles}
        if unknown:
            raise UnknownRoleException(unknown)
        return roles

    async def _get(self, api_key_id: uuid.UUID) -> ApiKey:
        api_key = await self._repository.get(api_key_id)
        if api_key is None:
            raise ApiKeyNotFoundException(api_key_id)
        return api_key


def _to_schema(api_key: ApiKey, role_names: Mapping[uuid.UUID, str]) -> ApiKeyResponseSchema:
    return ApiKeyResponseSchema(
        id=api_key.id,
        name=api_key.name,
        prefix=api_key.prefix,
        role_names=sorted(role_names[role_id] for role_id in api_key.role_ids),
        created_at=api_key.created_at,
        revoked_at=api_key.revoked_at,
        created_by_user_id=api_key.created_by_user_id,
    )
