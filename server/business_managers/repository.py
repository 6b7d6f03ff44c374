"""Every statement over `business_managers`: lookups (usable by a workspace, locked for a change),
pages for staff and for a workspace, and what the syncs read and mark.
"""

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

import sqlalchemy.exc
from sqlalchemy import ColumnElement, Select, Uuid, any_, bindparam, exists, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from server.business_managers.exceptions import BusinessManagerExistsException
from server.business_managers.models import BusinessManager, BusinessManagerOwnership, BusinessManagerStatus
from server.db import utcnow, violated_constraint
from server.read_pool import DirectTransaction, PreparedRead

_LIVE_META_BUSINESS_ID_INDEX = "uq_business_managers_live_meta_business_id"

# Platform business managers a workspace is offered: not archived (NEEDS_ATTENTION ones are listed
# so the workspace sees them, though work in them waits until staff set a new token).
_OFFERED_PLATFORM_STATUSES = (BusinessManagerStatus.ACTIVE, BusinessManagerStatus.NEEDS_ATTENTION)


def _usable(selected: Select[Any]) -> Select[Any]:
    """`selected` narrowed to the business manager usable by the workspace, locked FOR KEY SHARE
    (see `BusinessManagerRepository.get_usable`)."""
    return selected.where(
        BusinessManager.id == bindparam("business_manager_id"),
        BusinessManager.status == BusinessManagerStatus.ACTIVE,
        or_(
            BusinessManager.ownership == BusinessManagerOwnership.PLATFORM,
            (BusinessManager.ownership == BusinessManagerOwnership.CLIENT)
            & (BusinessManager.workspace_id == bindparam("workspace_id")),
        ),
    ).with_for_update(read=True, key_share=True)


_GET_USABLE = _usable(select(BusinessManager))
_IS_USABLE = _usable(select(BusinessManager.id))
_IS_USABLE_PREPARED = PreparedRead(_IS_USABLE)


class IBusinessManagerRepository(Protocol):
    async def get(self, business_manager_id: uuid.UUID) -> BusinessManager | None: ...
    async def get_usable(
        self, business_manager_id: uuid.UUID, *, workspace_id: uuid.UUID
    ) -> BusinessManager | None: ...
    async def is_usable(self, business_manager_id: uuid.UUID, *, workspace_id: uuid.UUID) -> bool: ...
    async def lock(self, business_manager_id: uuid.UUID) -> BusinessManager | None: ...
    async def add(self, **values: Any) -> BusinessManager: ...
    async def update(self, business_manager_id: uuid.UUID, *, values: dict[str, Any]) -> BusinessManager: ...
    async def live_meta_business_id_exists(self, meta_business_id: str) -> bool: ...
    async def list_business_managers(
        self,
        *,
        ownership: BusinessManagerOwnership | None,
        status: BusinessManagerStatus | None,
        workspace_id: uuid.UUID | None,
        after: uuid.UUID | None,
        limit: int,
    ) -> list[BusinessManager]: ...
    async def list_for_workspace(
        self, workspace_id: uuid.UUID, *, after: uuid.UUID | None, limit: int
    ) -> list[BusinessManager]: ...


class BusinessManagerRepository:
    def __init__(self, session: AsyncSession, *, direct: DirectTransaction | None = None) -> None:
        self._session = session
        # A unit of work on asyncpg directly: the statements that have a direct form run there.
        self._direct = direct

    async def get(self, business_manager_id: uuid.UUID) -> BusinessManager | None:
        """The business manager with this id, whatever its status or owner."""
        return await self._session.scalar(select(BusinessManager).where(BusinessManager.id == business_manager_id))

    async def get_usable(self, business_manager_id: uuid.UUID, *, workspace_id: uuid.UUID) -> BusinessManager | None:
        """An ACTIVE platform business manager, or an ACTIVE client one of this workspace; None otherwise.

        Takes a FOR KEY SHARE lock on the row until the transaction ends: a concurrent
        DeleteBusinessManager (which locks FOR UPDATE) then waits for the caller's account or pixel
        to commit and sees it, or, when it won the lock, makes this return None. So nothing new
        lands in a business manager while it is being archived. Ordinary updates (name, token,
        sync) do not conflict with this lock.
        """
        parameters = {"business_manager_id": business_manager_id, "workspace_id": workspace_id}
        usable: BusinessManager | None = await self._session.scalar(_GET_USABLE, parameters)
        return usable

    async def is_usable(self, business_manager_id: uuid.UUID, *, workspace_id: uuid.UUID) -> bool:
        """Whether `get_usable` would find it (the same row lock), without loading the row."""
        parameters = {"business_manager_id": business_manager_id, "workspace_id": workspace_id}
        if self._direct is not None:
            return await self._direct.one(_IS_USABLE_PREPARED, parameters) is not None
        return await self._session.scalar(_IS_USABLE, parameters) is not None

    async def lock(self, business_manager_id: uuid.UUID) -> BusinessManager | None:
        """The business manager, locked FOR UPDATE (fresh from the database) until the transaction ends."""
        statement = (
            select(BusinessManager)
            .where(BusinessManager.id == business_manager_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return await self._session.scalar(statement)

    async def add(self, **values: Any) -> BusinessManager:
        business_manager = BusinessManager(**values)
        self._session.add(business_manager)
        try:
            await self._session.flush()
        except sqlalchemy.exc.IntegrityError as error:
            if violated_constraint(error) == _LIVE_META_BUSINESS_ID_INDEX:
                raise BusinessManagerExistsException(business_manager.meta_business_id) from None
            raise
        return business_manager

    async def update(self, business_manager_id: uuid.UUID, *, values: dict[str, Any]) -> BusinessManager:
        """Apply `values` to a business manager the caller has locked, bumping its version."""
        statement = (
            update(BusinessManager)
            .where(BusinessManager.id == business_manager_id)
            .values(**values, version=BusinessManager.version + 1, updated_at=utcnow())
            .returning(BusinessManager)
            .execution_options(populate_existing=True, synchronize_session=False)
        )
        return (await self._session.scalars(statement)).one()

    async def live_meta_business_id_exists(self, meta_business_id: str) -> bool:
        statement = select(
            exists().where(
                BusinessManager.meta_business_id == meta_business_id,
                BusinessManager.status != BusinessManagerStatus.ARCHIVED,
            )
        )
        return bool(await self._session.scalar(statement))

    async def list_business_managers(
        self,
        *,
        ownership: BusinessManagerOwnership | None,
        status: BusinessManagerStatus | None,
        workspace_id: uuid.UUID | None,
        after: uuid.UUID | None,
        limit: int,
    ) -> list[BusinessManager]:
        """`limit` rows after `after` in id (= creation) order; ids are UUIDv7."""
        conditions: list[ColumnElement[bool]] = []
        if ownership is not None:
            conditions.append(BusinessManager.ownership == ownership)
        if status is not None:
            conditions.append(BusinessManager.status == status)
        if workspace_id is not None:
            conditions.append(BusinessManager.workspace_id == workspace_id)
        return await self._page(select(BusinessManager).where(*conditions), after=after, limit=limit)

    async def list_for_workspace(
        self, workspace_id: uuid.UUID, *, after: uuid.UUID | None, limit: int
    ) -> list[BusinessManager]:
        """What the workspace may use: its own live client business managers and the offered platform
        ones (the caller checks that the workspace exists)."""
        return await self._page(self._offered_to(workspace_id), after=after, limit=limit)

    def _offered_to(self, workspace_id: uuid.UUID) -> Select[BusinessManager]:
        """Every query of a workspace's business managers starts here."""
        return select(BusinessManager).where(
            or_(
                (BusinessManager.ownership == BusinessManagerOwnership.CLIENT)
                & (BusinessManager.workspace_id == workspace_id)
                & (BusinessManager.status != BusinessManagerStatus.ARCHIVED),
                (BusinessManager.ownership == BusinessManagerOwnership.PLATFORM)
                & BusinessManager.status.in_(_OFFERED_PLATFORM_STATUSES),
            ),
        )

    async def _page(
        self, statement: Select[BusinessManager], *, after: uuid.UUID | None, limit: int
    ) -> list[BusinessManager]:
        statement = statement.order_by(BusinessManager.id).limit(limit)
        if after is not None:
            statement = statement.where(BusinessManager.id > after)
        return list(await self._session.scalars(statement))

    # The periodic syncs with Meta (server/*/sync.py)

    async def list_for_sync(self) -> list[BusinessManager]:
        """Every business manager the business manager sync reads from Meta: not archived, with a token."""
        statement = (
            select(BusinessManager)
            .where(
                BusinessManager.status != BusinessManagerStatus.ARCHIVED,
                BusinessManager.encrypted_token.is_not(None),
            )
            .order_by(BusinessManager.id)
        )
        return list(await self._session.scalars(statement))

    async def list_syncable(self, business_manager_ids: Sequence[uuid.UUID]) -> list[BusinessManager]:
        """Those of the business managers whose objects the account and pixel syncs read: ACTIVE,
        with a token; in id order."""
        if not business_manager_ids:
            return []
        statement = (
            select(BusinessManager)
            .where(
                BusinessManager.id == any_(bindparam("ids", list(business_manager_ids), type_=ARRAY(Uuid))),
                BusinessManager.status == BusinessManagerStatus.ACTIVE,
                BusinessManager.encrypted_token.is_not(None),
            )
            .order_by(BusinessManager.id)
        )
        return list(await self._session.scalars(statement))

    async def mark_synced(self, business_manager_ids: Sequence[uuid.UUID], *, synced_at: dt.datetime) -> None:
        """Record that Meta was read for business managers it reported unchanged: only `synced_at`
        moves (not the version nor `updated_at`)."""
        if not business_manager_ids:
            return
        await self._session.execute(
            update(BusinessManager)
            .where(BusinessManager.id == any_(bindparam("ids", list(business_manager_ids), type_=ARRAY(Uuid))))
            .values(synced_at=synced_at, updated_at=BusinessManager.updated_at)
            .execution_options(synchronize_session=False)
        )
