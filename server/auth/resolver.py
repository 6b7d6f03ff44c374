"""Credentials + the workspace an RPC names -> the caller's Principal, in one database round trip
(none when the standing is cached: see `server.auth.standing_cache`)."""

import hmac
import time
import uuid

from server.auth.api_key_format import split_key
from server.auth.credentials import ApiKeyCredentials, Credentials, InvalidCredentials, UserCredentials
from server.auth.exceptions import CallerRevokedException
from server.auth.principal import Principal, PrincipalKind
from server.auth.repository import IStandingRepository
from server.auth.standing_cache import StandingCache
from server.auth.tokens import InvalidTokenException, hash_secret


class PrincipalResolver:
    def __init__(self, standings: IStandingRepository, *, cache: StandingCache | None = None) -> None:
        """`cache`: standings kept until the database says otherwise."""
        self._standings = standings
        self._cache = cache

    async def resolve(self, credentials: Credentials, *, workspace_id: uuid.UUID | None) -> Principal:
        """The principal behind valid credentials; UNAUTHENTICATED for anything else."""
        if isinstance(credentials, InvalidCredentials):
            raise credentials.error
        if isinstance(credentials, UserCredentials):
            return await self._user(credentials, workspace_id)
        return await self._api_key(credentials)

    async def _user(self, credentials: UserCredentials, workspace_id: uuid.UUID | None) -> Principal:
        claims = credentials.claims
        if claims.expires_at and claims.expires_at <= time.time():  # a stream outliving its token
            raise InvalidTokenException("the access token has expired; refresh it", reason="TOKEN_EXPIRED")
        key = (claims.user_id, claims.family_id, workspace_id)
        found, standing = self._cache.user(key) if self._cache is not None else (False, None)
        if not found:
            generation = self._cache.generation if self._cache is not None else 0
            standing = await self._standings.user_standing(
                user_id=claims.user_id, family_id=claims.family_id, workspace_id=workspace_id
            )
            if self._cache is not None:
                self._cache.put_user(key, standing, generation=generation)
        if standing is None or not standing.active or standing.session_revoked:
            raise CallerRevokedException()
        return Principal(
            kind=PrincipalKind.USER,
            id=claims.user_id,
            superuser=standing.superuser,
            system_permissions=standing.permissions,
            workspace_id=workspace_id,
            workspace_role=standing.workspace_role,
        )

    async def _api_key(self, credentials: ApiKeyCredentials) -> Principal:
        prefix = split_key(credentials.key)
        if prefix is None:
            raise InvalidTokenException("the API key is malformed")
        found, standing = self._cache.api_key(prefix) if self._cache is not None else (False, None)
        if not found:
            generation = self._cache.generation if self._cache is not None else 0
            standing = await self._standings.api_key_standing(prefix=prefix)
            if self._cache is not None:
                self._cache.put_api_key(prefix, standing, generation=generation)
        if standing is None or not hmac.compare_digest(standing.secret_hash, hash_secret(credentials.key)):
            raise InvalidTokenException("the API key is invalid")
        if standing.revoked:
            raise CallerRevokedException()
        return Principal(kind=PrincipalKind.API_KEY, id=standing.id, system_permissions=standing.permissions)
