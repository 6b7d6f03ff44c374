"""Pixels (Meta datasets): workspaces request them and request to share them with their ad accounts;
unsharing needs no approval (the share goes at once here, and on Meta through background work). The
pixels module owns `pixels` and `pixels_accounts`; accounts and business managers are asked of
their owners through the Protocols below.
"""

import uuid
from collections.abc import Collection, Sequence
from typing import Protocol

from server.accounts.exceptions import BusinessManagerNotUsableException
from server.accounts.models import AccountStatus
from server.audit_logs.service import IAuditTrail
from server.auth.principal import Principal
from server.business_managers.models import BusinessManager
from server.outbox.repository import IOutbox
from server.pagination import Page, PageTokenCodec
from server.pixels.exceptions import (
    AlreadySharedException,
    PixelNotFoundException,
    PixelShareNotFoundException,
    ShareAccountNotActiveException,
    ShareAccountNotFoundException,
)
from server.pixels.models import Pixel
from server.pixels.repository import IPixelRepository
from server.pixels.schemas import PixelListRequestSchema, PixelResponseSchema
from server.requests.schemas import PixelCreationPayload, PixelSharePayload, RequestResponseSchema
from server.requests.service import IRequestService
from server.tenancy import SYSTEM, TenantScope, WorkspaceScope

# Published by the outbox relay; a worker removes the share on Meta's side.
PIXEL_UNSHARED_TOPIC = "pixel.unshared"
# Unsharing is audited on the pixel: a share has no id of its own, and the pixel's before/after
# snapshots (its `account_ids`) say exactly what changed.
ENTITY = "pixel"


class IBusinessManagerLookup(Protocol):
    """What pixel rules need of business managers (implemented by BusinessManagerRepository)."""

    async def get_usable(
        self, business_manager_id: uuid.UUID, *, workspace_id: uuid.UUID
    ) -> BusinessManager | None: ...


class AccountState(Protocol):
    @property
    def id(self) -> uuid.UUID: ...
    @property
    def status(self) -> AccountStatus: ...


class IAccountLookup(Protocol):
    """What pixel rules need of ad accounts (implemented by AccountRepository)."""

    async def get_many(self, account_ids: Collection[uuid.UUID], *, scope: TenantScope) -> Sequence[AccountState]: ...


class IPixelService(Protocol):
    async def request_pixel(
        self, workspace_id: uuid.UUID, payload: PixelCreationPayload, *, actor: Principal, idempotency_key: str | None
    ) -> RequestResponseSchema: ...
    async def list_pixels(
        self, workspace_id: uuid.UUID, query: PixelListRequestSchema
    ) -> Page[PixelResponseSchema]: ...
    async def get_pixel(self, pixel_id: uuid.UUID, *, workspace_id: uuid.UUID) -> PixelResponseSchema: ...
    async def request_pixel_share(
        self, workspace_id: uuid.UUID, payload: PixelSharePayload, *, actor: Principal, idempotency_key: str | None
    ) -> RequestResponseSchema: ...
    async def unshare_pixel(
        self, pixel_id: uuid.UUID, account_id: uuid.UUID, *, workspace_id: uuid.UUID
    ) -> PixelResponseSchema: ...
    async def unshare_account(self, account_id: uuid.UUID) -> list[uuid.UUID]: ...
    async def list_all_pixels(self, query: PixelListRequestSchema) -> Page[PixelResponseSchema]: ...


class PixelService:
    def __init__(
        self,
        *,
        repository: IPixelRepository,
        accounts: IAccountLookup,
        business_managers: IBusinessManagerLookup,
        requests: IRequestService,
        audit: IAuditTrail,
        outbox: IOutbox,
        page_tokens: PageTokenCodec,
    ) -> None:
        self._repository = repository
        self._accounts = accounts
        self._business_managers = business_managers
        self._requests = requests
        self._audit = audit
        self._outbox = outbox
        self._page_tokens = page_tokens

    async def request_pixel(
        self, workspace_id: uuid.UUID, payload: PixelCreationPayload, *, actor: Principal, idempotency_key: str | None
    ) -> RequestResponseSchema:
        """Queue a new pixel in a business manager the workspace may use."""
        usable = await self._business_managers.get_usable(payload.business_manager_id, workspace_id=workspace_id)
        if usable is None:
            raise BusinessManagerNotUsableException(payload.business_manager_id)
        return await self._requests.submit(workspace_id, payload, actor=actor, idempotency_key=idempotency_key)

    async def list_pixels(self, workspace_id: uuid.UUID, query: PixelListRequestSchema) -> Page[PixelResponseSchema]:
        return await self._list(
            query.model_copy(update={"workspace_id": workspace_id}),
            scope=WorkspaceScope(workspace_id),
            collection="pixels",
        )

    async def get_pixel(self, pixel_id: uuid.UUID, *, workspace_id: uuid.UUID) -> PixelResponseSchema:
        return _to_schema(await self._get(pixel_id, scope=WorkspaceScope(workspace_id)))

    async def request_pixel_share(
        self, workspace_id: uuid.UUID, payload: PixelSharePayload, *, actor: Principal, idempotency_key: str | None
    ) -> RequestResponseSchema:
        """Queue sharing a pixel with active accounts of its workspace that it is not shared with yet."""
        pixel = await self._get(payload.pixel_id, scope=WorkspaceScope(workspace_id))
        found = {
            account.id: account
            for account in await self._accounts.get_many(payload.account_ids, scope=WorkspaceScope(workspace_id))
        }
        # An account of another workspace is as unknown as one that does not exist.
        for account_id in payload.account_ids:
            if account_id not in found:
                raise ShareAccountNotFoundException(account_id)
        inactive = [a for a in payload.account_ids if found[a].status is not AccountStatus.ACTIVE]
        if inactive:
            raise ShareAccountNotActiveException(inactive)
        shared = set(pixel.account_ids)
        already = [a for a in payload.account_ids if a in shared]
        if already:
            raise AlreadySharedException(pixel.id, already)
        return await self._requests.submit(workspace_id, payload, actor=actor, idempotency_key=idempotency_key)

    async def unshare_pixel(
        self, pixel_id: uuid.UUID, account_id: uuid.UUID, *, workspace_id: uuid.UUID
    ) -> PixelResponseSchema:
        """Stop sharing the pixel with the account here, and have a worker do it on Meta's side."""
        pixel = await self._get(pixel_id, scope=WorkspaceScope(workspace_id))
        before = _to_schema(pixel)
        if not await self._repository.remove_share(pixel, account_id):
            raise PixelShareNotFoundException(pixel_id, account_id)
        after = _to_schema(pixel)
        await self._audit.record(
            entity_type=ENTITY,
            entity_id=pixel_id,
            action="unshare",
            workspace_id=workspace_id,
            before=before,
            after=after,
        )
        await self._outbox.add(PIXEL_UNSHARED_TOPIC, {"pixel_id": str(pixel_id), "account_id": str(account_id)})
        return after

    async def unshare_account(self, account_id: uuid.UUID) -> list[uuid.UUID]:
        """Stop sharing every pixel with the account (it moves to another workspace), and have a
        worker do it on Meta's side for each; the ids of those pixels. The account's move is the
        audited change."""
        pixel_ids = await self._repository.remove_account_shares(account_id)
        for pixel_id in pixel_ids:
            await self._outbox.add(PIXEL_UNSHARED_TOPIC, {"pixel_id": str(pixel_id), "account_id": str(account_id)})
        return pixel_ids

    async def list_all_pixels(self, query: PixelListRequestSchema) -> Page[PixelResponseSchema]:
        # Staff filtering by a workspace read that workspace only.
        scope = SYSTEM if query.workspace_id is None else WorkspaceScope(query.workspace_id)
        return await self._list(query, scope=scope, collection="all_pixels")

    async def _get(self, pixel_id: uuid.UUID, *, scope: TenantScope) -> Pixel:
        pixel = await self._repository.get(pixel_id, scope=scope)
        if pixel is None:
            raise PixelNotFoundException(pixel_id)
        return pixel

    async def _list(
        self, query: PixelListRequestSchema, *, scope: TenantScope, collection: str
    ) -> Page[PixelResponseSchema]:
        # The filters (the workspace among them) are bound into the token: a token of one
        # workspace's list cannot page through another's.
        return await self._page_tokens.page(
            query,
            collection,
            fetch=lambda after, limit: self._repository.list_pixels(
                scope=scope,
                business_manager_id=query.business_manager_id,
                after=after,
                limit=limit,
            ),
            convert=_to_schema,
        )


def _to_schema(pixel: Pixel) -> PixelResponseSchema:
    return PixelResponseSchema.model_validate(pixel)
