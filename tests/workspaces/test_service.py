"""WorkspaceService against the real database."""

import asyncio
import uuid

import pytest

from server.composition import Infrastructure
from server.exceptions import InvalidRequestException
from server.idempotency.exceptions import RequestIdReusedException
from server.workspaces.exceptions import (
    WorkspaceArchivedException,
    WorkspaceEtagMismatchException,
    WorkspaceNameTakenException,
    WorkspaceNotFoundException,
)
from server.workspaces.models import WorkspaceStatus
from server.workspaces.schemas import (
    WorkspaceCreateRequestSchema,
    WorkspaceListRequestSchema,
    WorkspaceResponseSchema,
    WorkspaceUpdateRequestSchema,
)


async def create(
    infrastructure: Infrastructure, name: str, *, request_id: str | None = None, **fields: object
) -> WorkspaceResponseSchema:
    async with infrastructure.unit_of_work() as uow:
        return await uow.workspaces.create_workspace(
            WorkspaceCreateRequestSchema.model_validate({"name": name, **fields}), idempotency_key=request_id
        )


async def test_create_then_get_returns_the_stored_workspace(infrastructure: Infrastructure) -> None:
    created = await create(infrastructure, "  Acme Retail  ")
    async with infrastructure.unit_of_work() as uow:
        fetched = await uow.workspaces.get_workspace(created.id)
    assert fetched == created
    assert fetched.name == "Acme Retail"
    assert fetched.status is WorkspaceStatus.ACTIVE
    assert fetched.etag == 'W/"1"'


async def test_get_unknown_id_is_not_found(infrastructure: Infrastructure) -> None:
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(WorkspaceNotFoundException):
            await uow.workspaces.get_workspace(uuid.uuid4())


async def test_names_are_unique_among_live_workspaces_ignoring_case(infrastructure: Infrastructure) -> None:
    first = await create(infrastructure, "Northwind")
    with pytest.raises(WorkspaceNameTakenException):
        await create(infrastructure, "NORTHWIND")
    async with infrastructure.unit_of_work() as uow:
        await uow.workspaces.delete_workspace(first.id)
    reused = await create(infrastructure, "northwind")
    assert reused.id != first.id


async def test_retry_with_same_request_id_returns_first_result(infrastructure: Infrastructure) -> None:
    first = await create(infrastructure, "Globex", request_id="req-1")
    again = await create(infrastructure, "Globex", request_id="req-1")
    assert again.id == first.id
    async with infrastructure.unit_of_work() as uow:
        page = await uow.workspaces.list_workspaces(WorkspaceListRequestSchema())
    assert [w.id for w in page.items] == [first.id]


async def test_same_request_id_with_other_payload_is_rejected(infrastructure: Infrastructure) -> None:
    await create(infrastructure, "Initech", request_id="req-2")
    with pytest.raises(RequestIdReusedException):
        await create(infrastructure, "Initrode", request_id="req-2")


async def test_concurrent_retries_create_one_workspace(infrastructure: Infrastructure) -> None:
    results = await asyncio.gather(*(create(infrastructure, "Umbrella", request_id="req-3") for _ in range(5)))
    assert len({r.id for r in results}) == 1
    async with infrastructure.unit_of_work() as uow:
        page = await uow.workspaces.list_workspaces(WorkspaceListRequestSchema())
    assert len(page.items) == 1


async def test_list_pages_through_every_workspace_in_creation_order(infrastructure: Infrastructure) -> None:
    created = [await create(infrastructure, f"Client {i:02d}") for i in range(7)]
    seen: list[uuid.UUID] = []
    token = ""
    while True:
        async with infrastructure.unit_of_work() as uow:
            page = await uow.workspaces.list_workspaces(WorkspaceListRequestSchema(page_size=3, page_token=token))
        seen.extend(w.id for w in page.items)
        token = page.next_page_token
        if not token:
            break
    assert seen == [w.id for w in created]


async def test_list_filters_by_status_and_token_is_bound_to_the_filter(infrastructure: Infrastructure) -> None:
    for i in range(3):
        await create(infrastructure, f"Active {i}")
    suspended = await create(infrastructure, "Paused", status="suspended")
    async with infrastructure.unit_of_work() as uow:
        only_suspended = await uow.workspaces.list_workspaces(
            WorkspaceListRequestSchema(status=WorkspaceStatus.SUSPENDED)
        )
        first_active = await uow.workspaces.list_workspaces(
            WorkspaceListRequestSchema(status=WorkspaceStatus.ACTIVE, page_size=1)
        )
    assert [w.id for w in only_suspended.items] == [suspended.id]
    assert first_active.next_page_token
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(InvalidRequestException) as raised:
            await uow.workspaces.list_workspaces(
                WorkspaceListRequestSchema(status=WorkspaceStatus.SUSPENDED, page_token=first_active.next_page_token)
            )
    assert raised.value.violations[0].field == "page_token"


async def test_tampered_page_token_is_rejected(infrastructure: Infrastructure) -> None:
    for i in range(2):
        await create(infrastructure, f"Tamper {i}")
    async with infrastructure.unit_of_work() as uow:
        page = await uow.workspaces.list_workspaces(WorkspaceListRequestSchema(page_size=1))
        forged = page.next_page_token[:-2] + ("AA" if not page.next_page_token.endswith("AA") else "BB")
        with pytest.raises(InvalidRequestException):
            await uow.workspaces.list_workspaces(WorkspaceListRequestSchema(page_size=1, page_token=forged))


def test_page_size_is_defaulted_coerced_and_never_negative() -> None:
    assert WorkspaceListRequestSchema().limit == 50
    assert WorkspaceListRequestSchema(page_size=10_000).limit == 500
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        WorkspaceListRequestSchema(page_size=-1)


async def test_update_applies_only_masked_fields_and_bumps_etag(infrastructure: Infrastructure) -> None:
    workspace = await create(infrastructure, "Stark")
    async with infrastructure.unit_of_work() as uow:
        updated = await uow.workspaces.update_workspace(
            workspace.id,
            WorkspaceUpdateRequestSchema(
                update_mask=frozenset({"name"}), name="Stark Industries", status="suspended", etag=workspace.etag
            ),
        )
    assert updated.name == "Stark Industries"
    assert updated.status is WorkspaceStatus.ACTIVE
    assert updated.etag != workspace.etag
    assert updated.updated_at > workspace.updated_at


async def test_update_with_stale_etag_is_a_conflict_and_changes_nothing(infrastructure: Infrastructure) -> None:
    workspace = await create(infrastructure, "Wayne")
    change = WorkspaceUpdateRequestSchema(update_mask=frozenset({"name"}), name="Wayne Ent", etag=workspace.etag)
    async with infrastructure.unit_of_work() as uow:
        await uow.workspaces.update_workspace(workspace.id, change)
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(WorkspaceEtagMismatchException):
            await uow.workspaces.update_workspace(workspace.id, change.model_copy(update={"name": "Lost update"}))
    async with infrastructure.unit_of_work() as uow:
        assert (await uow.workspaces.get_workspace(workspace.id)).name == "Wayne Ent"


async def test_delete_archives_and_archived_workspaces_are_read_only(infrastructure: Infrastructure) -> None:
    workspace = await create(infrastructure, "Cyberdyne")
    async with infrastructure.unit_of_work() as uow:
        archived = await uow.workspaces.delete_workspace(workspace.id, etag=workspace.etag)
        again = await uow.workspaces.delete_workspace(workspace.id)
    assert archived.status is WorkspaceStatus.ARCHIVED
    assert again == archived
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(WorkspaceArchivedException):
            await uow.workspaces.update_workspace(
                workspace.id, WorkspaceUpdateRequestSchema(update_mask=frozenset({"name"}), name="Skynet")
            )


async def test_delete_unknown_workspace_is_not_found(infrastructure: Infrastructure) -> None:
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(WorkspaceNotFoundException):
            await uow.workspaces.delete_workspace(uuid.uuid4())
