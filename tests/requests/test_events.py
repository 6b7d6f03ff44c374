"""Request change events reach the Redis stream once: right after commit, or from the outbox relay
when that fast path missed, never twice, never for a rolled-back change."""

import json
import uuid
from functools import partial

import pytest
from taskiq import InMemoryBroker

from server.auth.principal import Principal, PrincipalKind, set_current_principal
from server.background.registry import event_streams, publish
from server.composition import Infrastructure
from server.outbox.relay import OutboxRelay
from server.requests.events import STREAM_KEY, RequestEventRecorder
from server.requests.schemas import PixelCreationPayload, RequestResponseSchema
from server.requests.service import RequestService
from tests.requests.test_service import new_workspace


async def stream_kinds(infrastructure: Infrastructure) -> list[tuple[str, str]]:
    assert infrastructure.redis is not None
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await infrastructure.redis.xrange(STREAM_KEY)  # type: ignore[assignment]
    events = [json.loads(fields[b"event"]) for _, fields in entries]
    return [(event["kind"], event["request"]["id"]) for event in events]


async def submit(infrastructure: Infrastructure, workspace: uuid.UUID, *, fast_path: bool) -> RequestResponseSchema:
    actor = Principal(kind=PrincipalKind.USER, id=uuid.uuid4())
    set_current_principal(actor)
    try:
        async with infrastructure.unit_of_work() as uow:
            service = uow.requests
            if not fast_path:  # as if the process died between the commit and the append
                assert isinstance(service, RequestService)
                service._events = RequestEventRecorder(outbox=uow.outbox, after_commit=uow.after_commit, publisher=None)
            payload = PixelCreationPayload(name="p", business_manager_id=uuid.uuid4())
            return await service.submit(workspace, payload, actor=actor, idempotency_key=None)
    finally:
        set_current_principal(None)


async def test_a_change_is_appended_after_commit_and_the_relay_does_not_repeat_it(
    infrastructure: Infrastructure,
) -> None:
    workspace = await new_workspace(infrastructure)
    fast = await submit(infrastructure, workspace, fast_path=True)
    assert await stream_kinds(infrastructure) == [("created", str(fast.id))]

    missed = await submit(infrastructure, workspace, fast_path=False)
    assert await stream_kinds(infrastructure) == [("created", str(fast.id))]

    relay = OutboxRelay(
        infrastructure.unit_of_work,
        partial(publish, InMemoryBroker(), streams=event_streams(infrastructure.request_event_publisher)),
        batch_size=10,
        poll_seconds=0.01,
    )
    assert await relay.relay_once() == 2
    assert await stream_kinds(infrastructure) == [("created", str(fast.id)), ("created", str(missed.id))]


async def test_a_rolled_back_change_is_never_appended(infrastructure: Infrastructure) -> None:
    workspace = await new_workspace(infrastructure)

    class Boom(Exception):
        pass

    async def submit_then_fail() -> None:
        actor = Principal(kind=PrincipalKind.USER, id=uuid.uuid4())
        async with infrastructure.unit_of_work() as uow:
            payload = PixelCreationPayload(name="p", business_manager_id=uuid.uuid4())
            await uow.requests.submit(workspace, payload, actor=actor, idempotency_key=None)
            raise Boom

    with pytest.raises(Boom):
        await submit_then_fail()
    assert await stream_kinds(infrastructure) == []
