"""Users and their system roles: staff create, update, deactivate users and set their roles; the
sign-in module asks this service to check a password. The users module owns `users`, `roles` (seeded
by migrations) and `users_roles`; ending a deactivated user's sign-ins is the sign-in module's, asked
through `ISessionRevoker`.
"""

import uuid
from collections.abc import Collection
from typing import Any, Protocol

from server.audit_logs.service import IAuditTrail
from server.auth.passwords import Passwords
from server.auth.principal import Principal
from server.etags import version_of
from server.idempotency.exceptions import RequestIdReusedException
from server.idempotency.service import IdempotencyService
from server.pagination import Page, PageTokenCodec
from server.users.exceptions import (
    CannotDeactivateSelfException,
    UnknownRoleException,
    UserEtagMismatchException,
    UserNotFoundException,
)
from server.users.models import User
from server.users.repository import IRoleRepository, IUserRepository
from server.users.schemas import (
    RoleResponseSchema,
    UserCreateRequestSchema,
    UserListRequestSchema,
    UserResponseSchema,
    UserUpdateRequestSchema,
)

# The audit entity type of this module; snapshots are UserResponseSchema, which has no password hash.
USER = "user"


class ISessionRevoker(Protocol):
    """Ends a user's sign-ins (the sign-in module owns them; wired in the composition root)."""

    async def revoke_user_sessions(self, user_id: uuid.UUID) -> None: ...


class IUserService(Protocol):
    async def create_user(
        self, data: UserCreateRequestSchema, *, actor: Principal | None = None, idempotency_key: str | None = None
    ) -> UserResponseSchema: ...
    async def get_user(self, user_id: uuid.UUID) -> UserResponseSchema: ...
    async def list_users(self, query: UserListRequestSchema) -> Page[UserResponseSchema]: ...
    async def update_user(self, user_id: uuid.UUID, data: UserUpdateRequestSchema) -> UserResponseSchema: ...
    async def deactivate_user(self, user_id: uuid.UUID, *, actor: Principal | None = None) -> UserResponseSchema: ...
    async def set_user_roles(self, user_id: uuid.UUID, role_names: Collection[str]) -> UserResponseSchema: ...
    async def list_roles(self) -> list[RoleResponseSchema]: ...
    async def ensure_superuser(
        self, data: UserCreateRequestSchema, *, keep_existing: bool = False
    ) -> UserResponseSchema: ...
    async def check_password(self, email: str, password: str) -> uuid.UUID | None: ...


class UserService:
    def __init__(
        self,
        *,
        repository: IUserRepository,
        roles: IRoleRepository,
        sessions: ISessionRevoker,
        audit: IAuditTrail,
        passwords: Passwords,
        idempotency: IdempotencyService,
        page_tokens: PageTokenCodec,
    ) -> None:
        self._audit = audit
        self._repository = repository
        self._roles = roles
        self._sessions = sessions
        self._passwords = passwords
        self._idempotency = idempotency
        self._page_tokens = page_tokens

    async def create_user(
        self, data: UserCreateRequestSchema, *, actor: Principal | None = None, idempotency_key: str | None = None
    ) -> UserResponseSchema:
        """Create a user who signs in with `data.password`.

        The idempotency fingerprint covers the email and the full name only: the schema keeps the
        password out of its dumps, since the fingerprint is stored as a fast unsalted hash that would
        otherwise let anyone holding the table test guesses at the password. A retry is instead
        checked against the stored argon2id hash, so the same idempotency key with another password is
        still REQUEST_ID_REUSED.
        """
        password = data.password.get_secret_value()
        # Hashed before the key is claimed: the CPU-heavy part then runs before this transaction
        # holds a connection or a lock that a concurrent retry would wait on.
        password_hash = await self._passwords.hash(password)

        # Audited inside `create`: a replayed retry changes nothing, so it records nothing.
        async def create() -> tuple[uuid.UUID, UserResponseSchema]:
            user = await self._repository.add(email=data.email, full_name=data.full_name, password_hash=password_hash)
            created = _to_schema(user)
            await self._record("create", after=created)
            return user.id, created

        async def replay(user_id: uuid.UUID) -> UserResponseSchema:
            user = await self._get(user_id)
            if not await self._passwords.verify(user.password_hash, password):
                raise RequestIdReusedException()
            return _to_schema(user)

        return await self._idempotency.run_once(
            scope="users.create",
            caller=actor.id if actor is not None else None,
            idempotency_key=idempotency_key,
            payload=data,
            create=create,
            replay=replay,
        )

    async def get_user(self, user_id: uuid.UUID) -> UserResponseSchema:
        return _to_schema(await self._get(user_id))

    async def list_users(self, query: UserListRequestSchema) -> Page[UserResponseSchema]:
        return await self._page_tokens.page(
            query,
            "users",
            fetch=lambda after, limit: self._repository.list(
                active_only=query.active_only,
                after=after,
                limit=limit,
            ),
            convert=_to_schema,
        )

    async def update_user(self, user_id: uuid.UUID, data: UserUpdateRequestSchema) -> UserResponseSchema:
        values: dict[str, Any] = {field: getattr(data, field) for field in data.update_mask}
        expected = _version_of(data.etag, user_id)
        before = _to_schema(await self._get(user_id))  # missing: NOT_FOUND
        updated = await self._repository.update(user_id, expected_version=expected, values=values)
        if updated is None:
            raise UserEtagMismatchException(user_id)
        after = _to_schema(updated)
        await self._record("update", before=before, after=after)
        return after

    async def deactivate_user(self, user_id: uuid.UUID, *, actor: Principal | None = None) -> UserResponseSchema:
        """Deactivate the user and revoke every refresh-token family they hold.

        A user `actor` may not deactivate themselves (FAILED_PRECONDITION): the call would end the
        very session making it and could leave nobody able to undo it.

        Revoking a family also stops its access tokens at once (the authentication check reads
        the family's state on every call, as well as `is_active`). An inactive user is returned
        unchanged; their tokens are revoked again all the same, which costs one UPDATE matching
        nothing and covers users deactivated by other paths (the CLI, the database).
        """
        if actor is not None and actor.user_id == user_id:
            raise CannotDeactivateSelfException(user_id)
        before = _to_schema(await self._get(user_id))
        deactivated = await self._repository.deactivate(user_id)
        if deactivated is not None:
            result = _to_schema(deactivated)
            await self._record("deactivate", before=before, after=result)
        elif before.is_active:
            # Deactivated by a concurrent call since we read it: what we read is stale, and the
            # session would keep serving it. Let the caller retry and see the user as it is.
            raise UserEtagMismatchException(user_id)
        else:
            result = before
        await self._sessions.revoke_user_sessions(user_id)
        return result

    async def set_user_roles(self, user_id: uuid.UUID, role_names: Collection[str]) -> UserResponseSchema:
        """Replace the user's system roles; every name must be a known role (duplicates collapse)."""
        wanted = set(role_names)
        roles = await self._roles.get_by_names(wanted)
        unknown = wanted - {role.name for role in roles}
        if unknown:
            raise UnknownRoleException(unknown)
        before = _to_schema(await self._get(user_id))
        user = await self._repository.set_roles(user_id, role_ids=[role.id for role in roles])
        if user is None:
            raise UserNotFoundException(user_id)
        after = _to_schema(user)
        await self._record("set_roles", before=before, after=after)
        return after

    async def check_password(self, email: str, password: str) -> uuid.UUID | None:
        """The id of the active user with this email and password; None otherwise. An unknown
        email, a wrong password and a deactivated user fail alike, in the same time (the hash is
        checked against a dummy when there is no user). A password hashed with older argon2
        parameters is hashed again now, while it is at hand."""
        user = await self._repository.get_by_email(email)
        password_ok = await self._passwords.verify(user.password_hash if user else None, password)
        if user is None or not password_ok or not user.is_active:
            return None
        if self._passwords.needs_rehash(user.password_hash):
            await self._repository.set_password_hash(user.id, await self._passwords.hash(password))
        return user.id

    async def list_roles(self) -> list[RoleResponseSchema]:
        return [RoleResponseSchema.model_validate(role) for role in await self._roles.list_all()]

    async def ensure_superuser(
        self, data: UserCreateRequestSchema, *, keep_existing: bool = False
    ) -> UserResponseSchema:
        """`adplane createsuperuser`: create an active superuser, or turn the user with this email
        into one with this password. With `keep_existing`, an existing user is left as it is."""
        existing = await self._repository.get_by_email(data.email)
        if existing is not None and keep_existing:
            return _to_schema(existing)
        values: dict[str, Any] = {"is_superuser": True, "is_active": True}
        password_hash = await self._passwords.hash(data.password.get_secret_value())
        before: UserResponseSchema | None = None
        if existing is None:
            # Not create_user: the new superuser is one mutation with one audit entry.
            user_id = (
                await self._repository.add(email=data.email, full_name=data.full_name, password_hash=password_hash)
            ).id
        else:
            before = _to_schema(existing)
            user_id = existing.id
            values["password_hash"] = password_hash
        updated = await self._repository.update(user_id, expected_version=None, values=values)
        if updated is None:
            raise UserNotFoundException(user_id)
        after = _to_schema(updated)
        await self._record("create" if before is None else "update", before=before, after=after)
        return after

    async def _record(
        self, action: str, *, after: UserResponseSchema, before: UserResponseSchema | None = None
    ) -> None:
        """Audit a change of a user (users belong to no workspace)."""
        await self._audit.record(
            entity_type=USER, entity_id=after.id, action=action, workspace_id=None, before=before, after=after
        )

    async def _get(self, user_id: uuid.UUID) -> User:
        user = await self._repository.get(user_id)
        if user is None:
            raise UserNotFoundException(user_id)
        return user


def _to_schema(user: User) -> UserResponseSchema:
    return UserResponseSchema.model_validate(user)


def _version_of(etag: str, user_id: uuid.UUID) -> int | None:
    return version_of(etag, mismatch=lambda: UserEtagMismatchException(user_id))
