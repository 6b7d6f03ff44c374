"""The work of approved account requests: creating an ad account, changing its spend cap.

Registered for those request types in the composition root; the requests module runs it inside the
attempt's transaction (see `server.requests.handlers` for the contract and `server.requests.work`
for the lifecycle around it, creation markers included).
"""

from server.accounts.meta_values import account_status_from_meta, disable_reason_from_meta
from server.accounts.models import AccountStatus
from server.accounts.repository import AccountRepository
from server.accounts.schemas import AccountResponseSchema
from server.accounts.service import ACCOUNT_ENTITY
from server.audit_logs.service import IAuditTrail
from server.business_managers.meta_creation import MetaCreation, create_or_adopt, same_name_ids
from server.business_managers.meta_steps import BusinessCredentials, MetaSteps, WorkRefused
from server.business_managers.repository import BusinessManagerRepository
from server.clients.meta.models import MetaAdAccount
from server.db import utcnow
from server.requests.handlers import ApprovedWork, MetaIdTaken, SameNameLookup
from server.requests.schemas import (
    AccountCreationPayload,
    RequestPayload,
    RequestResultSchema,
    SpendCapChangePayload,
)
from server.tenancy import WorkspaceScope


class AccountRequestWork:
    def __init__(
        self,
        steps: MetaSteps,
        *,
        accounts: AccountRepository,
        business_managers: BusinessManagerRepository,
        audit: IAuditTrail,
    ) -> None:
        self._steps = steps
        self._meta = steps.meta
        self._accounts = accounts
        self._business_managers = business_managers
        self._audit = audit

    async def carry_out(self, work: ApprovedWork) -> RequestResultSchema:
        match work.payload:
            case AccountCreationPayload():
                return await self._create(work, work.payload)
            case SpendCapChangePayload():
                return await self._change_spend_cap(work, work.payload)
            case _:
                raise WorkRefused(f"accounts do not carry out {work.payload.type.value} requests")

    async def same_name_lookup(self, payload: RequestPayload) -> SameNameLookup:
        if not isinstance(payload, AccountCreationPayload):
            raise WorkRefused(f"{payload.type.value} requests create no ad account")
        credentials = await self._steps.credentials_of(self._business_managers, payload.business_manager_id)
        return lambda: same_name_ids(self._steps, credentials, self._creation(credentials, payload))

    def _creation(
        self, credentials: BusinessCredentials, payload: AccountCreationPayload
    ) -> MetaCreation[MetaAdAccount]:
        business_id = credentials.meta_business_id

        async def same_name(token: str) -> list[MetaAdAccount]:
            found = await self._meta.find_ad_accounts(business_id, name=payload.name, token=token)
            return [account for account in found if account.currency == payload.currency]

        return MetaCreation(
            what="ad account",
            same_name=same_name,
            create=lambda token: self._meta.create_ad_account(
                business_id, name=payload.name, currency=payload.currency, timezone_name=payload.timezone, token=token
            ),
            known=self._accounts.known_meta_account_ids,
            order=lambda account: int(account.account_id),
        )

    async def _create(self, work: ApprovedWork, payload: AccountCreationPayload) -> RequestResultSchema:
        credentials = await self._steps.creation_credentials(
            self._business_managers, payload.business_manager_id, workspace_id=work.workspace_id
        )
        meta_account = await create_or_adopt(
            self._steps,
            credentials,
            self._creation(credentials, payload),
            adopt=work.adopt,
            preexisting=work.marker.preexisting_meta_ids if work.marker else (),
        )
        account = await self._accounts.add_created(
            workspace_id=work.workspace_id,
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
        await self._audit.record(
            entity_type=ACCOUNT_ENTITY,
            entity_id=account.id,
            action="create",
            workspace_id=work.workspace_id,
            after=AccountResponseSchema.model_validate(account),
        )
        return RequestResultSchema(account_id=account.id, meta_id=meta_account.id)

    async def _change_spend_cap(self, work: ApprovedWork, payload: SpendCapChangePayload) -> RequestResultSchema:
        account = await self._accounts.get(payload.account_id, scope=WorkspaceScope(work.workspace_id))
        if account is None:
            raise WorkRefused(f"ad account {payload.account_id} is no longer in the workspace")
        if account.status is AccountStatus.ARCHIVED:
            raise WorkRefused(f"ad account {account.id} has been archived")
        meta_account_id = account.meta_account_id
        if meta_account_id is None:
            raise WorkRefused(f"ad account {account.id} has no Meta account yet")
        if payload.currency != account.currency:
            raise WorkRefused(f"the spend cap is in {payload.currency} but the account is in {account.currency}")
        credentials = await self._steps.credentials_of(self._business_managers, account.business_manager_id)
        await self._steps.call(
            credentials,
            lambda token: self._meta.update_spend_cap(
                meta_account_id, payload.amount_minor, currency=account.currency, token=token
            ),
        )
        before = account
        updated = await self._accounts.update(
            account.id,
            expected_version=None,
            # A new cap starts the spend-cap alerts over.
            values={"spend_cap_minor": payload.amount_minor or None, "spend_cap_alert_percent": 0},
        )
        if updated is None:  # pragma: no cover - the row was just read and accounts are never deleted
            raise WorkRefused(f"ad account {account.id} disappeared")
        await self._audit.record(
            entity_type=ACCOUNT_ENTITY,
            entity_id=account.id,
            action="update",
            workspace_id=work.workspace_id,
            before=before,
            after=AccountResponseSchema.model_validate(updated),
        )
        return RequestResultSchema(account_id=account.id, meta_id=meta_account_id)
