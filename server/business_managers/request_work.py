"""The work of approved business manager requests: connecting a client's Meta business.

Registered for that request type in the composition root; the requests module runs it inside the
attempt's transaction (see `server.requests.handlers`).
"""

from server.audit_logs.service import IAuditTrail
from server.business_managers.exceptions import BusinessManagerExistsException
from server.business_managers.meta_steps import MetaSteps, WorkRefused
from server.business_managers.meta_values import verification_status_from_meta
from server.business_managers.models import BusinessManagerOwnership, BusinessManagerStatus, BusinessVerificationStatus
from server.business_managers.repository import BusinessManagerRepository
from server.business_managers.service import ENTITY, to_schema
from server.clients.meta.exceptions import MetaError
from server.db import utcnow
from server.requests.handlers import ApprovedWork, SameNameLookup
from server.requests.schemas import BusinessManagerConnectionPayload, RequestPayload, RequestResultSchema

# Platform business managers looked at when one is needed to read a client business.
_PLATFORM_CANDIDATES = 20


class BusinessManagerRequestWork:
    def __init__(self, steps: MetaSteps, *, business_managers: BusinessManagerRepository, audit: IAuditTrail) -> None:
        self._steps = steps
        self._meta = steps.meta
        self._business_managers = business_managers
        self._audit = audit

    async def carry_out(self, work: ApprovedWork) -> RequestResultSchema:
        if not isinstance(work.payload, BusinessManagerConnectionPayload):
            raise WorkRefused(f"business managers do not carry out {work.payload.type.value} requests")
        return await self._connect(work, work.payload)

    async def same_name_lookup(self, payload: RequestPayload) -> SameNameLookup:
        raise WorkRefused(f"{payload.type.value} requests create nothing on Meta")

    async def _connect(self, work: ApprovedWork, payload: BusinessManagerConnectionPayload) -> RequestResultSchema:
        if await self._business_managers.live_meta_business_id_exists(payload.meta_business_id):
            raise WorkRefused(f"Meta business {payload.meta_business_id} is already on the platform")
        # The client business has made the agency a partner, so the agency's own token reads it.
        platform = await self._business_managers.list_business_managers(
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
        try:
            business_manager = await self._business_managers.add(
                meta_business_id=payload.meta_business_id,
                name=payload.name,
                ownership=BusinessManagerOwnership.CLIENT,
                workspace_id=work.workspace_id,
                status=BusinessManagerStatus.ACTIVE,
                # A value Meta added since: nothing is known about the verification yet.
                verification_status=verification_status_from_meta(business.verification_status)
                or BusinessVerificationStatus.NOT_VERIFIED,
                encrypted_token=None,
                synced_at=utcnow(),
            )
        except BusinessManagerExistsException as exists:
            # Another connection of the same Meta business committed between our check and insert.
            raise WorkRefused(str(exists)) from exists
        await self._audit.record(
            entity_type=ENTITY,
            entity_id=business_manager.id,
            action="create",
            workspace_id=work.workspace_id,
            after=to_schema(business_manager),
        )
        return RequestResultSchema(business_manager_id=business_manager.id, meta_id=business.id)
