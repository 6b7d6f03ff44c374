import uuid
from typing import Protocol

from sqlalchemy import Select, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.db import utcnow
from server.pixels.models import Pixel, PixelAccount


class IPixelRepository(Protocol):
    async def get(self, pixel_id: uuid.UUID, *, workspace_id: uuid.UUID | None = None) -> Pixel | None: ...
    async def list_pixels(
        self,
        *,
        workspace_id: uuid.UUID | None,
        business_manager_id: uuid.UUID | None,
        after: uuid.UUID | None,
        limit: int,
    ) -> list[Pixel]: ...
    async def remove_share(self, pixel: Pixel, account_id: uuid.UUID) -> bool: ...


class PixelRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    def _readable(self, workspace_id: uuid.UUID | None) -> Select[Pixel]:
        """Every query starts here: narrowed to one workspace when the caller is scoped to one."""
        statement = select(Pixel)
        return statement if workspace_id is None else statement.where(Pixel.workspace_id == workspace_id)

    async def get(self, pixel_id: uuid.UUID, *, workspace_id: uuid.UUID | None = None) -> Pixel | None:
        """The pixel with its shares, or None when it does not exist or belongs to another workspace
        than `workspace_id` (no workspace: any pixel, for staff and the workers)."""
        return await self._session.scalar(self._readable(workspace_id).where(Pixel.id == pixel_id))

    async def list_pixels(
        self,
        *,
        workspace_id: uuid.UUID | None,
        business_manager_id: uuid.UUID | None,
        after: uuid.UUID | None,
        limit: int,
    ) -> list[Pixel]:
        """A page in creation (id) order; the shares of the whole page come in one more query."""
        statement = self._readable(workspace_id).order_by(Pixel.id).limit(limit)
        if business_manager_id is not None:
            statement = statement.where(Pixel.business_manager_id == business_manager_id)
        if after is not None:
            statement = statement.where(Pixel.id > after)
        return list(await self._session.scalars(statement))

    async def remove_share(self, pixel: Pixel, account_id: uuid.UUID) -> bool:
        """Stop sharing `pixel` with the account; False when it was not shared (or a concurrent
        call removed it first: the DELETE decides, so exactly one of two such calls wins).

        On success the pixel's version and update time move on, and `pixel` is refreshed.
        """
        removed = await self._session.scalar(
            delete(PixelAccount)
            .where(PixelAccount.pixel_id == pixel.id, PixelAccount.account_id == account_id)
            .returning(PixelAccount.account_id)
        )
        if removed is None:
            return False
        await self._session.execute(
            update(Pixel)
            .where(Pixel.id == pixel.id)
            .values(version=Pixel.version + 1, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        await self._session.refresh(pixel, attribute_names=["version", "updated_at", "shares"])
        return True
