"""The work of approved pixel requests: creating a pixel, sharing it with ad accounts.

Registered for those request types in the composition root; the requests module runs it inside the
attempt's transaction (see `server.requests.handlers` for the contract and `server.requests.work`
for the lifecycle around it, creation markers included).
"""

from server.accounts.models import AccountStatus
from server.accounts.repository import AccountRepository
from server.audit_logs.service import IAuditTrail
from server.business_managers.meta_creation import MetaCreation, create_or_adopt, same_name_ids
from server.business_managers.meta_steps import BusinessCredentials, MetaSteps, WorkRefused
from server.business_managers.repository import BusinessManagerRepository
from server.clients.meta.models import MetaPixel
from server.pixels.repository import PixelRepository
from server.pixels.schemas import PixelResponseSchema
from server.pixels.service import ENTITY as PIXEL_ENTITY
from server.requests.handlers import ApprovedWork, MetaIdTaken, SameNameLookup
from server.requests.schemas import PixelCreationPayload, PixelSharePayload, RequestPayload, RequestResultSchema
from server.tenancy import WorkspaceScope


class PixelRequestWork:
    def __init__(
        self,
        steps: MetaSteps,
        *,
        pixels: PixelRepository,
        accounts: AccountRepository,
        business_managers: BusinessManagerRepository,
        audit: IAuditTrail,
    ) -> None:
        self._steps = steps
        self._meta = steps.meta
        self._pixels = pixels
        self._accounts = accounts
        self._business_managers = business_managers
        self._audit = audit

    async def carry_out(self, work: ApprovedWork) -> RequestResultSchema:
        match work.payload:
            case PixelCreationPayload():
                return await self._create(work, work.payload)
            case PixelSharePayload():
                return await self._share(work, work.payload)
            case _:
                raise WorkRefused(f"pixels do not carry out {work.payload.type.value} requests")

    async def same_name_lookup(self, payload: RequestPayload) -> SameNameLookup:
        if not isinstance(payload, PixelCreationPayload):
            raise WorkRefused(f"{payload.type.value} requests create no pixel")
        credentials = await self._steps.credentials_of(self._business_managers, payload.business_manager_id)
        return lambda: same_name_ids(self._steps, credentials, self._creation(credentials, payload))

    def _creation(self, credentials: BusinessCredentials, payload: PixelCreationPayload) -> MetaCreation[MetaPixel]:
        business_id = credentials.meta_business_id

        async def same_name(token: str) -> list[MetaPixel]:
            owned = self._meta.list_owned_pixels(business_id, token=token)
            return [pixel async for pixel in owned if pixel.name == payload.name]

        return MetaCreation(
            what="pixel",
            same_name=same_name,
            create=lambda token: self._meta.create_pixel(business_id, name=payload.name, token=token),
            known=self._pixels.known_meta_pixel_ids,
            order=lambda pixel: int(pixel.id),
        )

    async def _create(self, work: ApprovedWork, payload: PixelCreationPayload) -> RequestResultSchema:
        credentials = await self._steps.creation_credentials(
            self._business_managers, payload.business_manager_id, workspace_id=work.workspace_id
        )
        meta_pixel = await create_or_adopt(
            self._steps,
            credentials,
            self._creation(credentials, payload),
            adopt=work.adopt,
            preexisting=work.marker.preexisting_meta_ids if work.marker else (),
        )
        pixel = await self._pixels.add_created(
            workspace_id=work.workspace_id,
            business_manager_id=credentials.business_manager_id,
            meta_pixel_id=meta_pixel.id,
            name=payload.name,
            last_fired_at=meta_pixel.last_fired_time,
        )
        if pixel is None:
            raise MetaIdTaken(meta_pixel.id)
        await self._audit.record(
            entity_type=PIXEL_ENTITY,
            entity_id=pixel.id,
            action="create",
            workspace_id=work.workspace_id,
            after=PixelResponseSchema.model_validate(pixel),
        )
        return RequestResultSchema(pixel_id=pixel.id, meta_id=meta_pixel.id)

    async def _share(self, work: ApprovedWork, payload: PixelSharePayload) -> RequestResultSchema:
        scope = WorkspaceScope(work.workspace_id)
        pixel = await self._pixels.get(payload.pixel_id, scope=scope)
        if pixel is None:
            raise WorkRefused(f"pixel {payload.pixel_id} is no longer in the workspace")
        meta_pixel_id = pixel.meta_pixel_id
        if meta_pixel_id is None:
            raise WorkRefused(f"pixel {pixel.id} has no Meta pixel yet")
        found = {account.id: account for account in await self._accounts.get_many(payload.account_ids, scope=scope)}
        # Checked before any Meta call, so a request that cannot be done in full changes nothing.
        missing = [account_id for account_id in payload.account_ids if account_id not in found]
        if missing:
            raise WorkRefused(f"ad accounts no longer in the workspace: {', '.join(map(str, missing))}")
        meta_account_ids = {account_id: found[account_id].meta_account_id for account_id in payload.account_ids}
        unusable = [
            account_id
            for account_id, meta_account_id in meta_account_ids.items()
            if found[account_id].status is not AccountStatus.ACTIVE or meta_account_id is None
        ]
        if unusable:
            raise WorkRefused(f"ad accounts not active on Meta: {', '.join(map(str, unusable))}")
        credentials = await self._steps.credentials_of(self._business_managers, pixel.business_manager_id)
        for meta_account_id in meta_account_ids.values():
            # Sharing again what is shared already is a no-op on Meta's side: a rerun repeats all.
            await self._share_on_meta(credentials, meta_pixel_id, str(meta_account_id))
        before = PixelResponseSchema.model_validate(pixel)
        added = await self._pixels.add_shares(pixel, payload.account_ids)
        if added:
            await self._audit.record(
                entity_type=PIXEL_ENTITY,
                entity_id=pixel.id,
                action="share",
                workspace_id=work.workspace_id,
                before=before,
                after=PixelResponseSchema.model_validate(pixel),
            )
        return RequestResultSchema(pixel_id=pixel.id, meta_id=meta_pixel_id)

    async def _share_on_meta(self, credentials: BusinessCredentials, meta_pixel_id: str, meta_account_id: str) -> None:
        await self._steps.call(
            credentials,
            lambda token: self._meta.share_pixel(
                meta_pixel_id, account_id=meta_account_id, business_id=credentials.meta_business_id, token=token
            ),
        )
