"""Signing in: email and password to a token pair, refreshing it, signing out, the current caller.

The sign-in module owns the refresh tokens (`server.signin.repository`: one family per sign-in).
Passwords are the users module's: it checks them (`IUserService.check_password`); failed attempts
are throttled here (`server.auth.throttle`).
"""

import uuid
from dataclasses import dataclass
from typing import Protocol

from server.auth.exceptions import InvalidCredentialsException, InvalidRefreshTokenException
from server.auth.permissions import SYSTEM_PERMISSIONS
from server.auth.principal import Principal, PrincipalKind
from server.auth.throttle import LoginThrottle
from server.auth.tokens import TokenIssuer, hash_secret
from server.db import new_id, utcnow
from server.pagination import MAX_PAGE_SIZE
from server.signin.repository import IRefreshTokenRepository
from server.signin.schemas import (
    CurrentUserSchema,
    LoginRequestSchema,
    RefreshTokenRequestSchema,
    TokenPairSchema,
)
from server.users.service import IUserService
from server.workspaces.schemas import MyWorkspacesRequestSchema
from server.workspaces.service import IWorkspaceService


@dataclass(frozen=True)
class RefreshTokenReplayed:
    """A spent refresh token came back: its whole family is revoked, which must be committed
    before the caller is told UNAUTHENTICATED (so it is returned, not raised)."""


class ISigninService(Protocol):
    async def login(self, data: LoginRequestSchema, *, address: str) -> TokenPairSchema: ...
    async def refresh(self, data: RefreshTokenRequestSchema) -> TokenPairSchema | RefreshTokenReplayed: ...
    async def logout(self, data: RefreshTokenRequestSchema) -> None: ...
    async def current_user(self, principal: Principal) -> CurrentUserSchema: ...
    async def revoke_user_sessions(self, user_id: uuid.UUID) -> None: ...


class SigninService:
    def __init__(
        self,
        *,
        repository: IRefreshTokenRepository,
        tokens: TokenIssuer,
        throttle: LoginThrottle,
        users: IUserService,
        workspaces: IWorkspaceService,
    ) -> None:
        self._repository = repository
        self._tokens = tokens
        self._throttle = throttle
        self._users = users
        self._workspaces = workspaces

    async def login(self, data: LoginRequestSchema, *, address: str) -> TokenPairSchema:
        """Email and password -> a new sign-in (refresh-token family) and its first token pair.

        Unknown email, wrong password and deactivated user all fail alike, in the same time.
        """
        await self._throttle.before_attempt(email=data.email, address=address)
        user_id = await self._users.check_password(data.email, data.password.get_secret_value())
        if user_id is None:
            # Counted as a failure already (before_attempt), so concurrent guesses cannot slip in.
            raise InvalidCredentialsException()
        await self._throttle.record_success(email=data.email, address=address)
        return await self._issue(user_id=user_id, family_id=new_id())

    async def refresh(self, data: RefreshTokenRequestSchema) -> TokenPairSchema | RefreshTokenReplayed:
        now = utcnow()
        token_hash = hash_secret(data.refresh_token)
        spent = await self._repository.spend(token_hash=token_hash, now=now)
        if spent is not None:
            return await self._issue(user_id=spent.user_id, family_id=spent.family_id)
        known = await self._repository.find(token_hash=token_hash)
        if known is not None and known.used_at is not None and known.revoked_at is None:
            # Someone holds a copy of a token that was already exchanged: end the whole sign-in.
            await self._repository.revoke_family(family_id=known.family_id, now=now)
            return RefreshTokenReplayed()
        raise InvalidRefreshTokenException()

    async def logout(self, data: RefreshTokenRequestSchema) -> None:
        known = await self._repository.find(token_hash=hash_secret(data.refresh_token))
        if known is not None:
            await self._repository.revoke_family(family_id=known.family_id, now=utcnow())

    async def current_user(self, principal: Principal) -> CurrentUserSchema:
        permissions = SYSTEM_PERMISSIONS if principal.superuser else principal.system_permissions
        if principal.kind is PrincipalKind.API_KEY:
            return CurrentUserSchema(user=None, api_key_id=principal.id, system_permissions=permissions, workspaces=[])
        memberships = await self._workspaces.list_my_workspaces(
            principal.id, MyWorkspacesRequestSchema(page_size=MAX_PAGE_SIZE)
        )
        return CurrentUserSchema(
            user=await self._users.get_user(principal.id),
            api_key_id=None,
            system_permissions=permissions,
            workspaces=memberships.items,
        )

    async def revoke_user_sessions(self, user_id: uuid.UUID) -> None:
        """End every sign-in of the user (deactivation): their refresh tokens and, through the
        standing check, their access tokens stop working at once."""
        await self._repository.revoke_user_families(user_id=user_id, now=utcnow())

    async def _issue(self, *, user_id: uuid.UUID, family_id: uuid.UUID) -> TokenPairSchema:
        now = utcnow()
        access = self._tokens.issue_access(user_id=user_id, family_id=family_id, now=now)
        refresh = self._tokens.issue_refresh(now=now)
        await self._repository.add(
            user_id=user_id, family_id=family_id, token_hash=hash_secret(refresh.token), expires_at=refresh.expires_at
        )
        return TokenPairSchema(
            access_token=access.token,
            access_token_expires_at=access.expires_at,
            refresh_token=refresh.token,
            refresh_token_expires_at=refresh.expires_at,
        )
