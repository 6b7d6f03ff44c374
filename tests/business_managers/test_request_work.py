"""The work of approved business manager requests against the simulator (connecting a client's
business), and the business manager rules every request's work runs into: usable by the workspace,
not deleted while an account is created in it."""

import asyncio
import uuid
from typing import cast

import pytest

from devstack.meta_simulator import SimulatorControl
from server.accounts.models import Account
from server.business_managers.exceptions import BusinessManagerInUseException
from server.business_managers.models import (
    BusinessManager,
    BusinessManagerOwnership,
    BusinessManagerStatus,
    BusinessVerificationStatus,
)
from server.clients.meta import IMetaClient
from server.clients.meta.models import MetaAdAccount
from server.composition import Infrastructure, UnitOfWork
from server.config import Settings
from server.requests.models import RequestStatus
from server.requests.schemas import AccountCreationPayload, BusinessManagerConnectionPayload
from server.requests.work import RequestWork
from server.workspaces.schemas import WorkspaceCreateRequestSchema
from tests.meta_work import (
    CREATE_ACCOUNT_ROUTE,
    MetaWorld,
    account_payload,
    add_business_manager,
    approved_request,
    audit_entries,
    count,
    rows,
    stored_request,
)
from tests.waits import blocked_on_a_lock

# --- business manager connection -----------------------------------------------------------------


async def test_business_manager_connection_reads_the_business_and_adds_it(
    infrastructure: Infrastructure, work: RequestWork[UnitOfWork], control: SimulatorControl, workspace_id: uuid.UUID
) -> None:
    client = control.add_business("Client Co", verification_status="pending")
    # The simulator has no partner relationships: a token reads its own business only. The
    # agency's token stands for a partner's here by being the one of the client's business.
    await add_business_manager(infrastructure, meta_business_id="999000111", token=client.token)
    payload = BusinessManagerConnectionPayload(meta_business_id=client.id, name="Client Co (ours)")
    request_id = await approved_request(infrastructure, workspace_id, payload)

    assert await work.carry_out(request_id) is RequestStatus.COMPLETED

    result = (await stored_request(infrastructure, request_id)).result
    assert result is not None
    assert result.business_manager_id is not None
    assert result.meta_id == client.id
    (connected,) = await rows(infrastructure, BusinessManager, BusinessManager.id == result.business_manager_id)
    assert (connected.meta_business_id, connected.name, connected.workspace_id) == (
        client.id,
        "Client Co (ours)",
        workspace_id,
    )
    assert (connected.ownership, connected.status, connected.verification_status) == (
        BusinessManagerOwnership.CLIENT,
        BusinessManagerStatus.ACTIVE,
        BusinessVerificationStatus.PENDING,
    )
    assert connected.encrypted_token is None
    (created,) = await audit_entries(infrastructure, entity_type="business_manager", entity_id=connected.id)
    assert created.action == "create"
    assert created.after is not None
    assert created.after["has_system_user_token"] is False


@pytest.mark.parametrize(
    ("meta_status", "stored"),
    [
        ("rejected", BusinessVerificationStatus.FAILED),
        ("pending_need_more_info", BusinessVerificationStatus.PENDING),
        ("verified", BusinessVerificationStatus.VERIFIED),
    ],
)
async def test_business_manager_connection_stores_the_verification_status_the_sync_would(
    infrastructure: Infrastructure,
    work: RequestWork[UnitOfWork],
    control: SimulatorControl,
    workspace_id: uuid.UUID,
    meta_status: str,
    stored: BusinessVerificationStatus,
) -> None:
    """One converter for Meta's verification status: a business Meta calls "rejected" is FAILED
    from the moment it is connected, not NOT_VERIFIED until the next sync flips it."""
    client = control.add_business("Client Co", verification_status=meta_status)
    await add_business_manager(infrastructure, meta_business_id="999000111", token=client.token)
    payload = BusinessManagerConnectionPayload(meta_business_id=client.id, name="Client Co (ours)")
    request_id = await approved_request(infrastructure, workspace_id, payload)

    assert await work.carry_out(request_id) is RequestStatus.COMPLETED

    result = (await stored_request(infrastructure, request_id)).result
    assert result is not None
    (connected,) = await rows(infrastructure, BusinessManager, BusinessManager.id == result.business_manager_id)
    assert connected.verification_status is stored


async def test_business_manager_connection_fails_when_meta_will_not_show_the_business(
    infrastructure: Infrastructure,
    work: RequestWork[UnitOfWork],
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    client = control.add_business("Not a partner")
    payload = BusinessManagerConnectionPayload(meta_business_id=client.id, name="Client")
    request_id = await approved_request(infrastructure, meta_world.workspace_id, payload)

    assert await work.carry_out(request_id) is RequestStatus.FAILED

    result = (await stored_request(infrastructure, request_id)).result
    assert result is not None
    assert result.failure_reason is not None
    assert f"Meta refused to read business {client.id}" in result.failure_reason
    assert await count(infrastructure, BusinessManager) == 1


async def test_business_manager_connection_fails_without_a_platform_business_manager(
    infrastructure: Infrastructure, work: RequestWork[UnitOfWork], control: SimulatorControl, workspace_id: uuid.UUID
) -> None:
    payload = BusinessManagerConnectionPayload(meta_business_id="123456", name="Client")
    request_id = await approved_request(infrastructure, workspace_id, payload)

    assert await work.carry_out(request_id) is RequestStatus.FAILED

    result = (await stored_request(infrastructure, request_id)).result
    assert result is not None
    assert result.failure_reason is not None
    assert "no active platform business manager" in result.failure_reason
    assert control.counters().calls.http_calls == 0


# --- the rules every request's work runs into ----------------------------------------------------


class PausedCreate:
    """A Meta client whose account creation waits, once inside, until the test lets it go on."""

    def __init__(self, meta: IMetaClient) -> None:
        self._meta = meta
        self.entered = asyncio.Event()
        self.go_on = asyncio.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self._meta, name)

    async def create_ad_account(
        self, business_id: str, *, name: str, currency: str, timezone_name: str, token: str
    ) -> MetaAdAccount:
        self.entered.set()
        await self.go_on.wait()
        return await self._meta.create_ad_account(
            business_id, name=name, currency=currency, timezone_name=timezone_name, token=token
        )


async def delete_business_manager(infrastructure: Infrastructure, business_manager_id: uuid.UUID) -> None:
    async with infrastructure.unit_of_work() as uow:
        await uow.business_managers.delete_business_manager(business_manager_id)


async def test_a_business_manager_cannot_be_deleted_while_an_account_is_created_in_it(
    infrastructure: Infrastructure,
    meta: IMetaClient,
    work_settings: Settings,
    control: SimulatorControl,
    meta_world: MetaWorld,
) -> None:
    """Deleting waits for the creation (FOR KEY SHARE) and then sees the account: refused."""
    request_id = await approved_request(infrastructure, meta_world.workspace_id, account_payload(meta_world))
    paused = PausedCreate(meta)
    creation = asyncio.create_task(
        infrastructure.request_work(cast(IMetaClient, paused), work_settings).carry_out(request_id)
    )
    await asyncio.wait_for(paused.entered.wait(), timeout=5)
    deletion = asyncio.create_task(delete_business_manager(infrastructure, meta_world.business_manager_id))
    await blocked_on_a_lock(infrastructure)
    assert not deletion.done()  # waits for the creation's lock

    paused.go_on.set()
    assert await creation is RequestStatus.COMPLETED
    with pytest.raises(BusinessManagerInUseException):
        await deletion
    (business_manager,) = await rows(
        infrastructure, BusinessManager, BusinessManager.id == meta_world.business_manager_id
    )
    assert business_manager.status is BusinessManagerStatus.ACTIVE
    assert await count(infrastructure, Account) == 1


async def test_a_client_business_manager_of_another_workspace_is_refused(
    infrastructure: Infrastructure, work: RequestWork[UnitOfWork], control: SimulatorControl, meta_world: MetaWorld
) -> None:
    async with infrastructure.unit_of_work() as uow:
        other = await uow.workspaces.create_workspace(WorkspaceCreateRequestSchema(name="Other client"))
    business = control.add_business("Other client's business")
    business_manager_id = await add_business_manager(
        infrastructure,
        meta_business_id=business.id,
        token=business.token,
        ownership=BusinessManagerOwnership.CLIENT,
        workspace_id=other.id,
    )
    payload = AccountCreationPayload(
        name="A", currency="EUR", timezone="Europe/Berlin", business_manager_id=business_manager_id
    )
    request_id = await approved_request(infrastructure, meta_world.workspace_id, payload)

    assert await work.carry_out(request_id) is RequestStatus.FAILED

    result = (await stored_request(infrastructure, request_id)).result
    assert result is not None
    assert result.failure_reason is not None
    assert "cannot be used by workspace" in result.failure_reason
    assert control.counters().calls.by_route.get(CREATE_ACCOUNT_ROUTE, 0) == 0
    assert await count(infrastructure, Account) == 0
