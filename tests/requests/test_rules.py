"""Rules around the lifecycle: no work for inactive workspaces, no approval after expiry,
and time zones Meta does not support refused up front."""

import datetime as dt
import uuid

import pytest

from server.composition import Infrastructure
from server.db import utcnow
from server.requests.exceptions import RequestExpiredException
from server.requests.models import RequestStatus
from server.requests.schemas import AccountCreationPayload
from server.workspaces.exceptions import WorkspaceNotActiveException
from server.workspaces.models import WorkspaceStatus
from server.workspaces.schemas import WorkspaceUpdateRequestSchema
from tests.requests.test_service import force, member, new_workspace, pixel, reviewer, stored, submit


@pytest.fixture
async def workspace(infrastructure: Infrastructure) -> uuid.UUID:
    return await new_workspace(infrastructure)


async def _suspend(infrastructure: Infrastructure, workspace: uuid.UUID) -> None:
    async with infrastructure.unit_of_work() as uow:
        await uow.workspaces.update_workspace(
            workspace, WorkspaceUpdateRequestSchema(update_mask=frozenset({"status"}), status=WorkspaceStatus.SUSPENDED)
        )


async def test_a_suspended_workspace_cannot_ask(infrastructure: Infrastructure, workspace: uuid.UUID) -> None:
    await _suspend(infrastructure, workspace)
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(WorkspaceNotActiveException):
            await uow.requests.submit(workspace, pixel(), actor=member(), idempotency_key=None)


async def test_a_request_of_a_suspended_workspace_is_not_approved(
    infrastructure: Infrastructure, workspace: uuid.UUID
) -> None:
    request = await submit(infrastructure, workspace)
    await _suspend(infrastructure, workspace)
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(WorkspaceNotActiveException):
            await uow.requests.approve_request(request.id, actor=reviewer(), idempotency_key=None)
    assert (await stored(infrastructure, request.id)).status is RequestStatus.WAITING_FOR_APPROVAL


async def test_an_expired_request_is_not_approved_even_before_the_expiry_job_ran(
    infrastructure: Infrastructure, workspace: uuid.UUID
) -> None:
    request = await submit(infrastructure, workspace)
    await force(infrastructure, request.id, expires_at=utcnow() - dt.timedelta(minutes=1))
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(RequestExpiredException):
            await uow.requests.approve_request(request.id, actor=reviewer(), idempotency_key=None)


def test_time_zones_meta_does_not_support_are_refused_up_front() -> None:
    with pytest.raises(ValueError, match="Meta supports"):
        AccountCreationPayload(name="a", currency="EUR", timezone="Europe/Kyiv", business_manager_id=uuid.uuid4())
    assert (
        AccountCreationPayload(
            name="a", currency="EUR", timezone="Europe/Berlin", business_manager_id=uuid.uuid4()
        ).timezone
        == "Europe/Berlin"
    )
