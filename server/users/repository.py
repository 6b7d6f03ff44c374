"""Every statement over `users`, `roles` and `users_roles`, and the light contact lookup
(`contacts`: id, email, name) other modules compose their responses with.
"""

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy.exc
from sqlalchemy import Select, Update, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.db import utcnow, violated_constraint
from server.users.exceptions import EmailTakenException
from server.users.models import Role, User, users_roles

_EMAIL_INDEX = "uq_users_email"


@dataclass(frozen=True)
class UserContact:
    id: uuid.UUID
    email: str
    full_name: str
    is_active: bool


class IRoleRepository(Protocol):
    async def list_all(self) -> list[Role]: ...
    async def get_by_names(self, names: Collection[str]) -> list[Role]: ...
    async def get_by_ids(self, role_ids: Collection[uuid.UUID]) -> list[Role]: ...


class RoleRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def list_all(self) -> list[Role]:
        return list(await self._session.scalars(select(Role).order_by(Role.name)))

    async def get_by_names(self, names: Collection[str]) -> list[Role]:
        """The roles of these names, by name; names that match no role are simply absent."""
        if not names:
            return []
        return list(await self._session.scalars(select(Role).where(Role.name.in_(names)).order_by(Role.name)))

    async def get_by_ids(self, role_ids: Collection[uuid.UUID]) -> list[Role]:
        """The roles with these ids, by name; ids that match no role are simply absent."""
        if not role_ids:
            return []
        return list(await self._session.scalars(select(Role).where(Role.id.in_(role_ids)).order_by(Role.name)))


class IUserRepository(Protocol):
    async def add(self, *, email: str, full_name: str, password_hash: str) -> User: ...
    async def get(self, user_id: uuid.UUID) -> User | None: ...
    async def contacts(self, user_ids: Collection[uuid.UUID]) -> list[UserContact]: ...
    async def get_by_email(self, email: str) -> User | None: ...
    async def list(self, *, active_only: bool, after: uuid.UUID | None, limit: int) -> list[User]: ...
    async def update(
        self, user_id: uuid.UUID, *, expected_version: int | None, values: dict[str, Any]
    ) -> User | None: ...
    async def set_roles(self, user_id: uuid.UUID, *, role_ids: Collection[uuid.UUID]) -> User | None: ...
    async def deactivate(self, user_id: uuid.UUID) -> User | None: ...
    async def set_password_hash(self, user_id: uuid.UUID, password_hash: str) -> None: ...


class UserRepository:
    """Users come back with `roles` loaded (selectin: one query per statement, never one per row)."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, *, email: str, full_name: str, password_hash: str) -> User:
        # `roles=[]` marks the collection loaded, so reading it never triggers a lazy load.
        user = User(email=email.lower(), full_name=full_name, password_hash=password_hash, roles=[])
        self._session.add(user)
        try:
            await self._session.flush()
        except sqlalchemy.exc.IntegrityError as error:
            if violated_constraint(error) == _EMAIL_INDEX:
                raise EmailTakenException(email) from None
            raise
        return user

    async def get(self, user_id: uuid.UUID) -> User | None:
        return await self._session.get(User, user_id)

    async def contacts(self, user_ids: Collection[uuid.UUID]) -> list[UserContact]:
        """Who these users are (id, email, full name, active), for other modules' responses; users
        that do not exist are absent. One light statement: no roles are loaded."""
        if not user_ids:
            return []
        statement = select(User.id, User.email, User.full_name, User.is_active).where(User.id.in_(set(user_ids)))
        return [UserContact(*row) for row in await self._session.execute(statement)]

    async def get_by_email(self, email: str) -> User | None:
        # Served by the unique index on lower(email).
        return await self._session.scalar(select(User).where(func.lower(User.email) == email.lower()))

    async def list(self, *, active_only: bool, after: uuid.UUID | None, limit: int) -> list[User]:
        """`limit` users after `after` in id (= creation) order; ids are UUIDv7."""
        statement: Select[User] = select(User).order_by(User.id).limit(limit)
        if active_only:
            statement = statement.where(User.is_active)
        if after is not None:
            statement = statement.where(User.id > after)
        return list(await self._session.scalars(statement))

    async def update(self, user_id: uuid.UUID, *, expected_version: int | None, values: dict[str, Any]) -> User | None:
        """Apply `values` to the user at `expected_version` (any when None).

        None when no row matched: the user is missing or at another version.
        """
        if "email" in values:
            values = {**values, "email": str(values["email"]).lower()}
        statement = update(User).where(User.id == user_id)
        if expected_version is not None:
            statement = statement.where(User.version == expected_version)
        try:
            return await self._bump(statement, values)
        except sqlalchemy.exc.IntegrityError as error:
            if violated_constraint(error) == _EMAIL_INDEX:
                raise EmailTakenException(str(values.get("email"))) from None
            raise

    async def set_roles(self, user_id: uuid.UUID, *, role_ids: Collection[uuid.UUID]) -> User | None:
        """Replace the user's roles; None when the user does not exist.

        The version bump comes first: it locks the user's row, so concurrent replacements of the
        same user's roles run one after the other instead of colliding on the association rows.
        """
        user = await self._bump(update(User).where(User.id == user_id), {})
        if user is None:
            return None
        await self._session.execute(delete(users_roles).where(users_roles.c.user_id == user_id))
        if role_ids:
            await self._session.execute(
                insert(users_roles), [{"user_id": user_id, "role_id": role_id} for role_id in role_ids]
            )
        await self._session.refresh(user, ["roles"])
        return user

    async def deactivate(self, user_id: uuid.UUID) -> User | None:
        """Mark an active user inactive; None when no active user has this id."""
        return await self._bump(update(User).where(User.id == user_id, User.is_active), {"is_active": False})

    async def _bump(self, statement: Update, values: dict[str, Any]) -> User | None:
        """Run a conditional UPDATE of one user that also bumps its version, returning the user."""
        statement = (
            statement.values(**values, version=User.version + 1, updated_at=utcnow())
            .returning(User)
            .execution_options(populate_existing=True, synchronize_session=False)
        )
        user: User | None = (await self._session.scalars(statement)).one_or_none()
        return user

    async def set_password_hash(self, user_id: uuid.UUID, password_hash: str) -> None:
        await self._session.execute(update(User).where(User.id == user_id).values(password_hash=password_hash))
