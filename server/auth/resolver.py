"""Credentials + the workspace an RPC names -> the caller's Principal, in one database round trip."""

import hmac
import uuid

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from server.api_keys.secrets import split_key
from server.auth.credentials import ApiKeyCredentials, Credentials, InvalidCredentials, UserCredentials
from server.auth.exceptions import CallerRevokedException
from server.auth.principal import Principal, PrincipalKind
from server.auth.repository import StandingRepository
from server.auth.tokens import InvalidTokenException, hash_secret


class PrincipalResolver:
    def __init__(self, database: AsyncEngine | async_sessionmaker[AsyncSession]) -> None:
        """`database`: an autocommit engine (the server's: one connection, no ORM session, per
        standing) or a session factory."""
        self._database = database

    async def resolve(self, credentials: Credentials, *, workspace_id: uuid.UUID | None) -> Principal:
        """The principal behind valid credentials; UNAUTHENTICATED for anything else."""
        if isinstance(credentials, InvalidCredentials):
            raise credentials.error
        if isinstance(self._database, AsyncEngine):
            async with self._database.connect() as connection:
                return await self._resolve(StandingRepository(connection), credentials, workspace_id)
        async with self._database() as session:
            return await self._resolve(StandingRepository(session), credentials, workspace_id)

    async def _resolve(
        self,
        repository: StandingRepository,
        credentials: UserCredentials | ApiKeyCredentials,
        workspace_id: uuid.UUID | None,
    ) -> Principal:
        if isinstance(credentials, UserCredentials):
            return await self._user(repository, credentials, workspace_id)
        return await self._api_key(repository, credentials)

    async def _user(
        self, repository: StandingRepository, credentials: UserCredentials, workspace_id: uuid.UUID | None
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

    async def _api_key(self, repository: StandingRepository, credentials: ApiKeyCredentials) -> Principal:
        prefix = split_key(credentials.key)
        if prefix is None:
            raise InvalidTokenException("the API key is malformed")
        standing = await repository.api_key_standing(prefix=prefix)
        if standing is None or not hmac.compare_digest(standing.secret_hash, hash_secret(credentials.key)):
            raise InvalidTokenException("the API key is invalid")
        if standing.revoked:
            raise CallerRevokedException()
        return Principal(kind=PrincipalKind.API_KEY, id=standing.id, system_permissions=standing.permissions)
