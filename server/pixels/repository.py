"""Every statement over `pixels` and `pixels_accounts` (which ad accounts a pixel is shared with):
reads narrowed to a tenant scope, shares, and what the pixel sync reads and writes.
"""

import datetime as dt
import uuid
from collections.abc import Collection, Sequence
from typing import Any, Protocol

from sqlalchemy import DateTime, Integer, Select, Uuid, bindparam, column, delete, exists, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from server.db import utcnow
from server.pixels.models import Pixel, PixelAccount
from server.tenancy import TenantScope, narrowed


class IPixelRepository(Protocol):
    async def get(self, pixel_id: uuid.UUID, *, scope: TenantScope) -> Pixel | None: ...
    async def list_pixels(
        self,
        *,
        scope: TenantScope,
        business_manager_id: uuid.UUID | None,
        after: uuid.UUID | None,
        limit: int,
    ) -> list[Pixel]: ...
    async def remove_share(self, pixel: Pixel, account_id: uuid.UUID) -> bool: ...
    async def remove_account_shares(self, account_id: uuid.UUID) -> list[uuid.UUID]: ...


class PixelRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    def _readable(self, scope: TenantScope) -> Select[Pixel]:
        """Every query starts here: narrowed to what `scope` may see."""
        return narrowed(select(Pixel), Pixel.workspace_id, scope)

    async def get(self, pixel_id: uuid.UUID, *, scope: TenantScope) -> Pixel | None:
        """The pixel with its shares, or None when it does not exist or is outside `scope`."""
        return await self._session.scalar(self._readable(scope).where(Pixel.id == pixel_id))

    async def list_pixels(
        self,
        *,
        scope: TenantScope,
        business_manager_id: uuid.UUID | None,
        after: uuid.UUID | None,
        limit: int,
    ) -> list[Pixel]:
        """A page of `scope` in creation (id) order; the shares of the whole page come in one more query."""
        statement = self._readable(scope).order_by(Pixel.id).limit(limit)
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
        await self._shares_changed([pixel.id])
        await self._session.refresh(pixel, attribute_names=["version", "updated_at", "shares"])
        return True

    async def _shares_changed(self, pixel_ids: Sequence[uuid.UUID]) -> None:
        """A pixel's shares are part of what its etag stands for: its version and update time move on."""
        await self._session.execute(
            update(Pixel)
            .where(Pixel.id.in_(pixel_ids))
            .values(version=Pixel.version + 1, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )

    # The periodic sync with Meta (server/pixels/sync.py)

    async def syncable_business_manager_ids(self) -> list[uuid.UUID]:
        """The business managers holding pixels Meta created (they have a meta_pixel_id), in id order."""
        statement = (
            select(Pixel.business_manager_id)
            .where(Pixel.meta_pixel_id.is_not(None))
            .distinct()
            .order_by(Pixel.business_manager_id)
        )
        return list(await self._session.scalars(statement))

    async def list_for_sync(self, business_manager_id: uuid.UUID) -> list[Pixel]:
        """The business manager's pixels that Meta created, with their shares (one more statement)."""
        statement = (
            select(Pixel)
            .where(Pixel.business_manager_id == business_manager_id, Pixel.meta_pixel_id.is_not(None))
            .order_by(Pixel.id)
        )
        return list(await self._session.scalars(statement))

    async def set_last_fired(self, changes: Sequence[tuple[uuid.UUID, int, dt.datetime | None]]) -> list[Pixel]:
        """Set `last_fired_at` of many pixels, given as (pixel id, version read, value), in one
        statement; a pixel is written only at the version it was read at (one changed meanwhile is
        left to the next sync) and its version moves on. Returns the pixels written, as they are now."""
        if not changes:
            return []
        rows = (
            func.unnest(
                bindparam("ids", [pixel_id for pixel_id, _, _ in changes], type_=ARRAY(Uuid)),
                bindparam("versions", [version for _, version, _ in changes], type_=ARRAY(Integer)),
                bindparam("fired", [fired for _, _, fired in changes], type_=ARRAY(DateTime(timezone=True))),
            )
            .table_valued(column("id", Uuid), column("version", Integer), column("fired", DateTime(timezone=True)))
            .render_derived(name="meta")
        )
        statement = (
            update(Pixel)
            .where(Pixel.id == rows.c.id, Pixel.version == rows.c.version)
            .values(last_fired_at=rows.c.fired, version=Pixel.version + 1, updated_at=utcnow())
            .returning(Pixel)
            .execution_options(populate_existing=True, synchronize_session=False)
        )
        return list(await self._session.scalars(statement))

    async def known_meta_pixel_ids(self, meta_pixel_ids: Collection[str]) -> set[str]:
        """Those of the Meta pixel ids that a pixel row already has (in any workspace)."""
        if not meta_pixel_ids:
            return set()
        statement = select(Pixel.meta_pixel_id).where(Pixel.meta_pixel_id.in_(set(meta_pixel_ids)))
        return {meta_id for meta_id in await self._session.scalars(statement) if meta_id is not None}

    async def add_created(self, **values: Any) -> Pixel | None:
        """Insert a pixel (with its, empty, shares loaded); None when its `meta_pixel_id` is taken."""
        statement = (
            pg_insert(Pixel)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[Pixel.meta_pixel_id])
            .returning(Pixel)
            .execution_options(populate_existing=True)
        )
        pixel = (await self._session.scalars(statement)).one_or_none()
        if pixel is not None:
            await self._session.refresh(pixel, attribute_names=["shares"])
        return pixel

    async def add_shares(self, pixel: Pixel, account_ids: Collection[uuid.UUID]) -> list[uuid.UUID]:
        """Share `pixel` with the accounts it is not shared with yet; the ids of those newly shared.

        When any share is new, the pixel's version and update time move on (its shares are part of
        what its etag stands for) and `pixel` is refreshed.
        """
        if not account_ids:
            return []
        statement = (
            pg_insert(PixelAccount)
            .values([{"pixel_id": pixel.id, "account_id": account_id} for account_id in account_ids])
            .on_conflict_do_nothing()
            .returning(PixelAccount.account_id)
        )
        added = sorted(await self._session.scalars(statement))
        if added:
            await self._shares_changed([pixel.id])
            await self._session.refresh(pixel, attribute_names=["version", "updated_at", "shares"])
        return added

    async def holds_objects_in(self, business_manager_id: uuid.UUID) -> bool:
        """Whether any pixel (whatever its status) lives in the business manager."""
        return bool(
            await self._session.scalar(select(exists().where(Pixel.business_manager_id == business_manager_id)))
        )

    async def remove_account_shares(self, account_id: uuid.UUID) -> list[uuid.UUID]:
        """Unshare every pixel shared with the account; the ids of those pixels.

        Their versions are bumped: a pixel's shares are part of what its etag stands for.
        """
        statement = delete(PixelAccount).where(PixelAccount.account_id == account_id).returning(PixelAccount.pixel_id)
        pixel_ids: Sequence[uuid.UUID] = sorted(await self._session.scalars(statement))
        if pixel_ids:
            await self._shares_changed(pixel_ids)
        return list(pixel_ids)
