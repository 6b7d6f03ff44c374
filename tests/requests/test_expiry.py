"""The scheduled expiry of requests nobody reviewed in time."""

import datetime as dt
import uuid

from sqlalchemy import update

from server.composition import Infrastructure
from server.db import utcnow
from server.requests.models import Request, RequestStatus
from server.requests.schemas import PixelCreationPayload
from server.requests.tasks import expire_stale
from tests.meta_work import count, staff


async def waiting_request(infrastructure: Infrastructure, workspace_id: uuid.UUID, *, age: dt.timedelta) -> uuid.UUID:
    payload = PixelCreationPayload(name="Pixel", business_manager_id=uuid.uuid4())
    async with infrastructure.unit_of_work() as uow:
        request = await uow.requests.submit(workspace_id, payload, actor=staff(), idempotency_key=None)
        await uow.session.execute(update(Request).where(Request.id == request.id).values(expires_at=utcnow() - age))
    return request.id


async def test_expires_every_stale_waiting_request_in_batches(
    infrastructure: Infrastructure, workspace_id: uuid.UUID
) -> None:
    stale = [await waiting_request(infrastructure, workspace_id, age=dt.timedelta(hours=1)) for _ in range(5)]
    fresh = await waiting_request(infrastructure, workspace_id, age=-dt.timedelta(days=1))

    assert await expire_stale(infrastructure.unit_of_work, batch_size=2) == 5

    assert await count(infrastructure, Request, Request.id.in_(stale), Request.status == RequestStatus.EXPIRED) == 5
    assert (
        await count(infrastructure, Request, Request.id == fresh, Request.status == RequestStatus.WAITING_FOR_APPROVAL)
        == 1
    )
    assert await expire_stale(infrastructure.unit_of_work, batch_size=2) == 0
