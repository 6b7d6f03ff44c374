"""Carrying out approved requests against Meta: the logic behind the `request.approved` task.

`RequestWork.carry_out(request_id)` does what the request asks (create an ad account or a pixel,
change a spend cap, share a pixel, connect a client business manager) and then completes it, or
fails it with a reason a person can act on. It is safe to run twice, also at the same time:

- the whole carry-out of one attempt runs in one transaction holding the request's row lock, so a
  second delivery waits and then finds the request COMPLETED (or FAILED) and does nothing;
- Meta-side creations are not idempotent, and a worker can die after Meta created the object but
  before our transaction committed. So before the first creation call, the work records in the
  request (a marker in its `result`, committed on its own) that it is about to create, with the ids
  of the same-name objects the business has at that moment. Only a later attempt, which finds the
  marker, looks for an object it may have created: same name in the business, known to no row of
  ours and not among those that were there before the marker. A first attempt never adopts: an
  object of the same name it finds belongs to someone else (another client of the agency, staff).
  (Meta's objects as the client reads them carry no creation time, so "created after the marker"
  is decided by that snapshot of ids, not by a timestamp.)
- the business manager a creation uses is held with a FOR KEY SHARE lock from before the Meta call
  until the insert, and must be ACTIVE: a DeleteBusinessManager (FOR UPDATE) waits for the new
  account or pixel and then refuses, instead of archiving the business manager under it.

Errors: a rejected system-user token fails the request and flags its business manager
NEEDS_ATTENTION (BusinessManagerService.flag_token_refused); any other error Meta will not get over
by itself (permissions, invalid parameters) fails it; rate limits and transient errors are retried
(server.tasks.retry), and fail it when the attempts run out: all of it through the Meta toolkit
(server.business_managers.meta_steps) that every task and sync uses.
"""

import asyncio
import datetime as dt
import uuid
from typing import ClassVar, assert_never

import structlog
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from server.accounts.meta_values import account_status_from_meta, disable_reason_from_meta
from server.accounts.models import AccountStatus
from server.accounts.repository import AccountRepository
from server.accounts.schemas import AccountResponseSchema
from server.business_managers.exceptions import BusinessManagerExistsException
from server.business_managers.meta_steps import BusinessCredentials, FailureKind, MetaStepFailure, WorkRefused
from server.business_managers.meta_values import verification_status_from_meta
from server.business_managers.models import (
    BusinessManagerOwnership,
    BusinessManagerStatus,
    BusinessVerificationStatus,
)
from server.business_managers.repository import BusinessManagerRepository
from server.business_managers.service import to_schema as business_manager_schema
from server.clients.meta.exceptions import MetaError
from server.clients.meta.models import MetaAdAccount, MetaPixel
from server.clients.meta.protocol import IMetaClient
from server.composition import Infrastructure, UnitOfWork
from server.config import Settings
from server.db import utcnow
from server.pixels.repository import PixelRepository
from server.pixels.schemas import PixelResponseSchema
from server.requests.models import RequestStatus
from server.requests.repository import RequestRepository, RequestWorkRepository
from server.requests.schemas import (
    AccountCreationPayload,
    BusinessManagerConnectionPayload,
    PixelCreationPayload,
    PixelSharePayload,
    RequestPayload,
    RequestResultSchema,
    SpendCapChangePayload,
)
from server.tasks.retry import Sleep
from server.tenancy import SYSTEM, WorkspaceScope

logger = structlog.get_logger("adplane.requests.work")

ACCOUNT_ENTITY = "account"
PIXEL_ENTITY = "pixel"
BUSINESS_MANAGER_ENTITY = "business_manager"
# Failure reasons are shown to people; Meta's messages are short, this only bounds a freak one.
MAX_FAILURE_REASON = 1000
# Platform business managers looked at when one is needed to read a client business.
_PLATFORM_CANDIDATES = 20

_PAYLOAD: TypeAdapter[RequestPayload] = TypeAdapter(RequestPayload)


class MetaIdTaken(Exception):
    """The Meta object just created or adopted got a row of ours meanwhile, for another request.

    Happens only when two requests for the same name in the same business, both on a later attempt,
    look for their orphan at the same time and pick the same one. Running the attempt again looks
    afresh: the taken object is then known here and left out.
    """

    retryable: ClassVar[bool] = True

    def __init__(self, meta_id: str) -> None:
        super().__init__(f"Meta object {meta_id} was taken by another request meanwhile")


class CreationNotMarked(Exception):
    """A creation was about to call Meta without its marker in the request (see `CreationMarker`).

    Cannot happen while only this module writes APPROVED requests' results; retried, since the next
    attempt marks the request first.
    """

    retryable: ClassVar[bool] = True

    def __init__(self, request_id: uuid.UUID) -> None:
        super().__init__(f"request {request_id} has no creation marker")


class CreationMarker(BaseModel):
    """Kept in an APPROVED request's `result` from just before its first creation call to Meta.

    Written and committed before Meta is asked to create (RequestWorkRepository.mark_creation_started),
    so a worker that dies after Meta created the object leaves it behind; completing or failing the
    request replaces it. `preexisting_meta_ids` are the business's objects of the request's name at
    that moment: someone else's, never adopted.
    """

    model_config = ConfigDict(frozen=True)

    creation_started_at: dt.datetime
    preexisting_meta_ids: tuple[str, ...] = ()

    @classmethod
    def of(cls, result: dict[str, object] | None) -> "CreationMarker | None":
        """The marker in a request's stored `result`; None when there is none."""
        if not isinstance(result, dict) or "creation_started_at" not in result:
            return None
        try:
            return cls.model_validate(result)
        except ValidationError:  # pragma: no cover - only this module writes markers
            return None


class RequestWork:
    """Carries out approved requests; built per task run (or per test) on the worker's resources."""

    def __init__(
        self,
        infrastructure: Infrastructure,
        meta: IMetaClient,
        settings: Settings,
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._infrastructure = infrastructure
        self._meta = meta
        self._steps = infrastructure.meta_steps(meta, settings, sleep=sleep)
        self._retry_deadline = dt.timedelta(seconds=settings.task_retry_deadline_seconds)

    async def carry_out(self, request_id: uuid.UUID) -> RequestStatus | None:
        """Do what the request asks and settle it; the status it ends in (None: no such request).

        A request that is not APPROVED (done already, rejected, cancelled...) is left alone.
        """
        try:
            outcome = await self._steps.run(
                lambda: self._attempt(request_id), what=f"carrying out request {request_id}"
            )
        except BusinessManagerExistsException as exists:
            # Another connection of the same Meta business committed between our check and insert.
            return await self._fail(request_id, str(exists))
        if isinstance(outcome, MetaStepFailure):
            if outcome.kind is FailureKind.EXHAUSTED:
                return await self._hold(request_id, outcome)
            # A refused token has flagged its business manager already (MetaSteps.run).
            return await self._fail(request_id, outcome.reason)
        return outcome

    async def _hold(self, request_id: uuid.UUID, failure: MetaStepFailure) -> RequestStatus | None:
        """Rate limits or transient errors outlasted this run: the request waits for the requeue
        job (until Meta's regain time), or fails, retryable, past TASK_RETRY_DEADLINE_SECONDS."""
        retry_after = dt.timedelta(seconds=failure.retry_after) if failure.retry_after else None
        async with self._infrastructure.unit_of_work() as uow:
            request = await RequestRepository(uow.session).lock(request_id, scope=SYSTEM)
            if request is None:
                return None
            held = await uow.requests.hold_for_retry(
                request_id,
                reason=_clip(failure.reason, MAX_FAILURE_REASON),
                retry_after=retry_after,
                deadline=self._retry_deadline,
            )
        logger.warning(
            "request waits for Meta" if held.status is RequestStatus.APPROVED else "request failed (retryable)",
            request_id=str(request_id),
            retry_at=held.retry_at.isoformat() if held.retry_at else None,
            reason=failure.reason,
        )
        return held.status

    async def _attempt(self, request_id: uuid.UUID) -> RequestStatus | None:
        """One attempt: under the request's row lock, do the work and complete the request.

        The lock is held across the Meta calls on purpose. It is one row that nothing but this work
        writes once the request is APPROVED (reviews and expiry only touch waiting requests, and
        reads are not blocked by a row lock), so the only one kept waiting is a second delivery of
        the same message, which is exactly the one that must wait. It costs a database connection
        for the duration of a few Meta calls, each bounded by the HTTP timeout; the back-off between
        attempts happens outside the transaction. A claim status instead would need a new state in
        the lifecycle and a way to tell a dead worker's claim from a slow one; with the lock, a
        worker that dies loses its connection and the lock with it.

        A creation first marks the request (`_mark_creation`: short transactions of its own, before
        this lock is taken), since the mark must survive this transaction's rollback.
        """
        first_creation = await self._mark_creation(request_id)
        async with self._infrastructure.unit_of_work() as uow:
            request = await RequestRepository(uow.session).lock(request_id, scope=SYSTEM)
            if request is None:
                logger.warning("approved request not found; nothing to do", request_id=str(request_id))
                return None
            if request.status is not RequestStatus.APPROVED:
                logger.info(
                    "request is not approved; nothing to do", request_id=str(request_id), status=request.status.value
                )
                return request.status
            payload = _PAYLOAD.validate_python(request.payload)
            workspace_id = request.workspace_id
            match payload:
                case AccountCreationPayload():
                    marker = _marker_of(request_id, request.result)
                    result = await self._create_account(uow, workspace_id, payload, marker, adopt=not first_creation)
                case PixelCreationPayload():
                    marker = _marker_of(request_id, request.result)
                    result = await self._create_pixel(uow, workspace_id, payload, marker, adopt=not first_creation)
                case SpendCapChangePayload():
                    result = await self._change_spend_cap(uow, workspace_id, payload)
                case PixelSharePayload():
                    result = await self._share_pixel(uow, workspace_id, payload)
                case BusinessManagerConnectionPayload():
                    result = await self._connect_business_manager(uow, workspace_id, payload)
                case _:  # pragma: no cover - every request type has a case above
                    assert_never(payload)
            await uow.requests.complete_request(request_id, result)
            logger.info(
                "request completed", request_id=str(request_id), type=payload.type.value, meta_id=result.meta_id
            )
            return RequestStatus.COMPLETED

    async def _mark_creation(self, request_id: uuid.UUID) -> bool:
        """Before a creation request's first call to create on Meta, record (committed) that the
        creation is starting; True when this attempt did, i.e. no earlier attempt can have created
        anything, so there is nothing of ours to adopt. False for every other request, and when
        the marker was there already (an earlier attempt, or a concurrent delivery, wrote it).

        No lock is held meanwhile: the request is read in one short transaction, Meta is asked for
        the same-name objects outside any, and the conditional update lets one delivery win.
        """
        async with self._infrastructure.unit_of_work() as uow:
            request = await RequestRepository(uow.session).get(request_id, scope=SYSTEM)
            if request is None or request.status is not RequestStatus.APPROVED:
                return False
            payload = _PAYLOAD.validate_python(request.payload)
            if not isinstance(payload, AccountCreationPayload | PixelCreationPayload):
                return False
            if CreationMarker.of(request.result) is not None:
                return False
            credentials = await self._credentials(uow, payload.business_manager_id)
        match payload:
            case AccountCreationPayload():
                preexisting = [account.id for account in await self._same_name_accounts(credentials, payload)]
            case PixelCreationPayload():
                preexisting = [pixel.id for pixel in await self._same_name_pixels(credentials, payload)]
        marker = CreationMarker(creation_started_at=utcnow(), preexisting_meta_ids=tuple(sorted(preexisting)))
        async with self._infrastructure.unit_of_work() as uow:
            marked = await RequestWorkRepository(uow.session).mark_creation_started(
                request_id, marker.model_dump(mode="json")
            )
        if marked:
            logger.info("creation starting", request_id=str(request_id), preexisting=len(preexisting))
        return marked

    async def _fail(self, request_id: uuid.UUID, reason: str) -> RequestStatus | None:
        """Fail the request for good (in a transaction of its own: the attempt's was rolled back)."""
        async with self._infrastructure.unit_of_work() as uow:
            request = await RequestRepository(uow.session).lock(request_id, scope=SYSTEM)
            if request is None:
                return None
            if request.status is not RequestStatus.APPROVED:
                # Another delivery settled it while this one was failing.
                return request.status
            await uow.requests.fail_request(
                request_id, RequestResultSchema(failure_reason=_clip(reason, MAX_FAILURE_REASON))
            )
        logger.warning("request failed", request_id=str(request_id), reason=reason)
        return RequestStatus.FAILED

    # -- the work of each request type ---------------------------------------------------------

    async def _create_account(
        self,
        uow: UnitOfWork,
        workspace_id: uuid.UUID,
        payload: AccountCreationPayload,
        marker: CreationMarker,
        *,
        adopt: bool,
    ) -> RequestResultSchema:
        credentials = await self._creation_credentials(uow, workspace_id, payload.business_manager_id)
        work = RequestWorkRepository(uow.session)
        meta_account = await self._adoptable_account(credentials, payload, work, marker) if adopt else None
        if meta_account is None:
            meta_account = await self._steps.call(
                credentials,
                lambda token: self._meta.create_ad_account(
                    credentials.meta_business_id,
                    name=payload.name,
                    currency=payload.currency,
                    timezone_name=payload.timezone,
                    token=token,
                ),
            )
        account = await work.add_account(
            workspace_id=workspace_id,
            business_manager_id=credentials.business_manager_id,
            meta_account_id=meta_account.id,
            name=payload.name,
            currency=payload.currency,
            timezone=payload.timezone,
            spend_cap_minor=meta_account.spend_cap or None,
            amount_spent_minor=meta_account.amount_spent,
            status=AccountStatus.ACTIVE,
            meta_status=account_status_from_meta(meta_account),
            disable_reason=disable_reason_from_meta(meta_account),
            synced_at=utcnow(),
        )
        if account is None:
            raise MetaIdTaken(meta_account.id)
        await uow.audit.record(
            entity_type=ACCOUNT_ENTITY,
            entity_id=account.id,
            action="create",
            workspace_id=workspace_id,
            after=AccountResponseSchema.model_validate(account),
        )
        return RequestResultSchema(account_id=account.id, meta_id=meta_account.id)

    async def _same_name_accounts(
        self, credentials: BusinessCredentials, payload: AccountCreationPayload
    ) -> list[MetaAdAccount]:
        return await self._steps.call(
            credentials,
            lambda token: self._meta.find_ad_accounts(credentials.meta_business_id, name=payload.name, token=token),
        )

    async def _adoptable_account(
        self,
        credentials: BusinessCredentials,
        payload: AccountCreationPayload,
        work: RequestWorkRepository,
        marker: CreationMarker,
    ) -> MetaAdAccount | None:
        """An account an earlier attempt of this request created on Meta but never recorded: same
        name and currency in the business, not there when the creation started, no row of ours has it."""
        found = await self._same_name_accounts(credentials, payload)
        preexisting = set(marker.preexisting_meta_ids)
        candidates = [
            account for account in found if account.currency == payload.currency and account.id not in preexisting
        ]
        known = await work.known_meta_account_ids([account.id for account in candidates])
        unknown = [account for account in candidates if account.id not in known]
        if not unknown:
            return None
        adopted = min(unknown, key=lambda account: int(account.account_id))
        logger.info("adopting an ad account an earlier attempt created", meta_account_id=adopted.id)
        return adopted

    async def _create_pixel(
        self,
        uow: UnitOfWork,
        workspace_id: uuid.UUID,
        payload: PixelCreationPayload,
        marker: CreationMarker,
        *,
        adopt: bool,
    ) -> RequestResultSchema:
        credentials = await self._creation_credentials(uow, workspace_id, payload.business_manager_id)
        work = RequestWorkRepository(uow.session)
        meta_pixel = await self._adoptable_pixel(credentials, payload, work, marker) if adopt else None
        if meta_pixel is None:
            meta_pixel = await self._steps.call(
                credentials,
                lambda token: self._meta.create_pixel(credentials.meta_business_id, name=payload.name, token=token),
            )
        pixel = await work.add_pixel(
            workspace_id=workspace_id,
            business_manager_id=credentials.business_manager_id,
            meta_pixel_id=meta_pixel.id,
            name=payload.name,
            last_fired_at=meta_pixel.last_fired_time,
        )
        if pixel is None:
            raise MetaIdTaken(meta_pixel.id)
        await uow.audit.record(
            entity_type=PIXEL_ENTITY,
            entity_id=pixel.id,
            action="create",
            workspace_id=workspace_id,
            after=PixelResponseSchema.model_validate(pixel),
        )
        return RequestResultSchema(pixel_id=pixel.id, meta_id=meta_pixel.id)

    async def _same_name_pixels(
        self, credentials: BusinessCredentials, payload: PixelCreationPayload
    ) -> list[MetaPixel]:
        async def named(token: str) -> list[MetaPixel]:
            owned = self._meta.list_owned_pixels(credentials.meta_business_id, token=token)
            return [pixel async for pixel in owned if pixel.name == payload.name]

        return await self._steps.call(credentials, named)

    async def _adoptable_pixel(
        self,
        credentials: BusinessCredentials,
        payload: PixelCreationPayload,
        work: RequestWorkRepository,
        marker: CreationMarker,
    ) -> MetaPixel | None:
        """A pixel an earlier attempt of this request created but never recorded (see accounts)."""
        preexisting = set(marker.preexisting_meta_ids)
        candidates = [
            pixel for pixel in await self._same_name_pixels(credentials, payload) if pixel.id not in preexisting
        ]
        known = await work.known_meta_pixel_ids([pixel.id for pixel in candidates])
        unknown = [pixel for pixel in candidates if pixel.id not in known]
        if not unknown:
            return None
        adopted = min(unknown, key=lambda pixel: int(pixel.id))
        logger.info("adopting a pixel an earlier attempt created", meta_pixel_id=adopted.id)
        return adopted

    async def _creation_credentials(
        self, uow: UnitOfWork, workspace_id: uuid.UUID, business_manager_id: uuid.UUID
    ) -> BusinessCredentials:
        """The credentials of the business manager a creation lands in, which must be ACTIVE and
        usable by the workspace; WorkRefused (saying why) when it is not.

        Its row stays locked FOR KEY SHARE (`get_usable`) until this transaction ends, so from
        before the Meta call to the insert: a concurrent DeleteBusinessManager (FOR UPDATE) waits,
        then sees the new row and refuses, and cannot archive it between Meta's creation and ours.
        The lock does not conflict with plain UPDATEs (the syncs) nor with account inserts; only
        the FOR UPDATE lockers (delete, an update through the RPC, flagging) wait, for at most the
        Meta calls of this attempt, each bounded by the HTTP timeout.
        """
        business_managers = BusinessManagerRepository(uow.session)
        business_manager = await business_managers.get_usable(business_manager_id, workspace_id=workspace_id)
        if business_manager is None:
            # Says why when it is missing, not ACTIVE or without a token...
            await self._credentials(uow, business_manager_id)
            # ...otherwise it is a client business manager of another workspace.
            raise WorkRefused(f"business manager {business_manager_id} cannot be used by workspace {workspace_id}")
        return self._steps.credentials(business_manager)

    async def _credentials(self, uow: UnitOfWork, business_manager_id: uuid.UUID) -> BusinessCredentials:
        business_manager = await BusinessManagerRepository(uow.session).get(business_manager_id)
        if business_manager is None:
            raise WorkRefused(f"business manager {business_manager_id} does not exist")
        return self._steps.credentials(business_manager)

    async def _change_spend_cap(
        self, uow: UnitOfWork, workspace_id: uuid.UUID, payload: SpendCapChangePayload
    ) -> RequestResultSchema:
        accounts = AccountRepository(uow.session)
        account = await accounts.get(payload.account_id, scope=WorkspaceScope(workspace_id))
        if account is None:
            raise WorkRefused(f"ad account {payload.account_id} is no longer in the workspace")
        if account.status is AccountStatus.ARCHIVED:
            raise WorkRefused(f"ad account {account.id} has been archived")
        meta_account_id = account.meta_account_id
        if meta_account_id is None:
            raise WorkRefused(f"ad account {account.id} has no Meta account yet")
        if payload.currency != account.currency:
            raise WorkRefused(f"the spend cap is in {payload.currency} but the account is in {account.currency}")
        credentials = await self._credentials(uow, account.business_manager_id)
        await self._steps.call(
            credentials,
            lambda token: self._meta.update_spend_cap(
                meta_account_id, payload.amount_minor, currency=account.currency, token=token
            ),
        )
        before = AccountResponseSchema.model_validate(account)
        updated = await accounts.update(
            account.id,
            expected_version=None,
            # A new cap starts the spend-cap alerts over.
            values={"spend_cap_minor": payload.amount_minor or None, "spend_cap_alert_percent": 0},
        )
        if updated is None:  # pragma: no cover - the row was just read and accounts are never deleted
            raise WorkRefused(f"ad account {account.id} disappeared")
        await uow.audit.record(
            entity_type=ACCOUNT_ENTITY,
            entity_id=account.id,
            action="update",
            workspace_id=workspace_id,
            before=before,
            after=AccountResponseSchema.model_validate(updated),
        )
        return RequestResultSchema(account_id=account.id, meta_id=meta_account_id)

    async def _share_pixel(
        self, uow: UnitOfWork, workspace_id: uuid.UUID, payload: PixelSharePayload
    ) -> RequestResultSchema:
        pixel = await PixelRepository(uow.session).get(payload.pixel_id, scope=WorkspaceScope(workspace_id))
        if pixel is None:
            raise WorkRefused(f"pixel {payload.pixel_id} is no longer in the workspace")
        meta_pixel_id = pixel.meta_pixel_id
        if meta_pixel_id is None:
            raise WorkRefused(f"pixel {pixel.id} has no Meta pixel yet")
        found = {
            account.id: account
            for account in await AccountRepository(uow.session).get_many(
                payload.account_ids, scope=WorkspaceScope(workspace_id)
            )
        }
        # Checked before any Meta call, so a request that cannot be done in full changes nothing.
        missing = [account_id for account_id in payload.account_ids if account_id not in found]
        if missing:
            raise WorkRefused(f"ad accounts no longer in the workspace: {', '.join(map(str, missing))}")
        unusable = [
            account_id
            for account_id in payload.account_ids
            if found[account_id].status is not AccountStatus.ACTIVE or found[account_id].meta_account_id is None
        ]
        if unusable:
            raise WorkRefused(f"ad accounts not active on Meta: {', '.join(map(str, unusable))}")
        credentials = await self._credentials(uow, pixel.business_manager_id)
        for account_id in payload.account_ids:
            # Sharing again what is shared already is a no-op on Meta's side: a rerun repeats all.
            await self._share_on_meta(credentials, meta_pixel_id, _meta_id(found[account_id].meta_account_id))
        before = PixelResponseSchema.model_validate(pixel)
        added = await RequestWorkRepository(uow.session).add_pixel_shares(pixel, payload.account_ids)
        if added:
            await uow.audit.record(
                entity_type=PIXEL_ENTITY,
                entity_id=pixel.id,
                action="share",
                workspace_id=workspace_id,
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

    async def _connect_business_manager(
        self, uow: UnitOfWork, workspace_id: uuid.UUID, payload: BusinessManagerConnectionPayload
    ) -> RequestResultSchema:
        business_managers = BusinessManagerRepository(uow.session)
        if await business_managers.live_meta_business_id_exists(payload.meta_business_id):
            raise WorkRefused(f"Meta business {payload.meta_business_id} is already on the platform")
        # The client business has made the agency a partner, so the agency's own token reads it.
        platform = await business_managers.list_business_managers(
            ownership=BusinessManagerOwnership.PLATFORM,
            status=BusinessManagerStatus.ACTIVE,
            workspace_id=None,
            after=None,
            limit=_PLATFORM_CANDIDATES,
        )
        with_token = [business_manager for business_manager in platform if business_manager.encrypted_token]
        if not with_token:
            raise WorkRefused(
                "no active platform business manager with a system-user token to read the business through"
            )
        credentials = self._steps.credentials(with_token[0])
        try:
            business = await self._steps.call(
                credentials, lambda token: self._meta.get_business(payload.meta_business_id, token=token)
            )
        except MetaError as error:
            if error.retryable:
                raise
            raise WorkRefused(
                f"Meta refused to read business {payload.meta_business_id} through {credentials.describe()}: {error}"
            ) from error
        business_manager = await business_managers.add(
            meta_business_id=payload.meta_business_id,
            name=payload.name,
            ownership=BusinessManagerOwnership.CLIENT,
            workspace_id=workspace_id,
            status=BusinessManagerStatus.ACTIVE,
            # A value Meta added since: nothing is known about the verification yet.
            verification_status=verification_status_from_meta(business.verification_status)
            or BusinessVerificationStatus.NOT_VERIFIED,
            encrypted_token=None,
            synced_at=utcnow(),
        )
        await uow.audit.record(
            entity_type=BUSINESS_MANAGER_ENTITY,
            entity_id=business_manager.id,
            action="create",
            workspace_id=workspace_id,
            after=business_manager_schema(business_manager),
        )
        return RequestResultSchema(business_manager_id=business_manager.id, meta_id=business.id)


def _marker_of(request_id: uuid.UUID, result: dict[str, object] | None) -> CreationMarker:
    marker = CreationMarker.of(result)
    if marker is None:
        raise CreationNotMarked(request_id)
    return marker


def _meta_id(value: str | None) -> str:
    if value is None:  # pragma: no cover - callers check first
        raise WorkRefused("the object has no Meta id yet")
    return value


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
