"""Tasks of the request lifecycle: the shell taskiq calls for an approved request."""

import uuid
from typing import Any

from taskiq import Context

from devstack.meta_simulator import SimulatorControl
from server.composition import Infrastructure
from server.requests.models import RequestStatus
from server.requests.schemas import PixelCreationPayload
from tests.meta_work import (
    MetaWorld,
    approved_request,
    stored_request,
    task,
)


async def test_the_request_task_carries_out_the_request_of_the_message(
    infrastructure: Infrastructure, task_context: Context, control: SimulatorControl, meta_world: MetaWorld
) -> None:
    request_id = await approved_request(
        infrastructure,
        meta_world.workspace_id,
        PixelCreationPayload(name="P", business_manager_id=meta_world.business_manager_id),
    )
    message: dict[str, Any] = {"request_id": str(request_id), "type": "pixel_creation", "outbox_id": str(uuid.uuid4())}

    assert await task("requests.carry_out")(message, task_context) == "completed"
    assert (await stored_request(infrastructure, request_id)).status is RequestStatus.COMPLETED
    assert control.counters().objects.pixels == 1
