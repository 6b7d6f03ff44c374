"""Credentials + the workspace an RPC names -> the caller's Principal, in one database round trip."""

import hmac
import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.api_keys.secrets import split_key
from server.auth.credentials import ApiKeyCredentials, Credentials, InvalidCredentials, UserCredentials
from server.auth.exceptions import CallerRevokedException
from server.auth.principal import Principal, PrincipalKind
from server.auth.repository import AuthRepository
from server.auth.tokens import InvalidTokenException, hash_secret


class PrincipalResolver:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def resolve(self, credentials: Credentials, *, workspace_id: uuid.UUID | None) -> Principal:
        """The principal behind valid credentials; UNAUTHENTICATED for anything else."""
        if isinstance(credentials, InvalidCredentials):
            raise credentials.error
        async with self._sessions() as session:  # autocommit sessions: the standing is one round trip
            repository = AuthRepository(session)
            if isinstance(credentials, UserCredentials):
                return await self._user(repository, credentials, workspace_id)
            return await self._api_key(repository, credentials)

    async def _user(
        self, repository: AuthRepository, credentials: UserCredentials, workspace_id: uuid.UUID | None
    ) -> Principal:
        claims = credentials.claims
        standing = await repository.user_standing(
            user_id=claims.user_id, family_id=claims.family_id, workspace_id=workspace_id
        )
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

    async def _api_key(self, repository: AuthRepository, credentials: ApiKeyCredentials) -> Principal:
        prefix = split_key(credentials.key)
        if prefix is None:
            raise InvalidTokenException("the API key is malformed")
        standing = await repository.api_key_standing(prefix=prefix)
        if standing is None or not hmac.compare_digest(standing.secret_hash, hash_secret(credentials.key)):
            raise InvalidTokenException("the API key is invalid")
        if standing.revoked:
            raise CallerRevokedException()
        return Principal(kind=PrincipalKind.API_KEY, id=standing.id, system_permissions=standing.permissions)
