"""BusinessManagerService against the real database."""

import asyncio
import hashlib
import json
import uuid

import pytest
from pydantic import ValidationError
from sqlalchemy import select, update

from server.accounts.models import Account, AccountStatus
from server.audit_logs.models import AuditLog
from server.auth.principal import Principal, PrincipalKind
from server.business_managers.exceptions import (
    BusinessManagerArchivedException,
    BusinessManagerEtagMismatchException,
    BusinessManagerExistsException,
    BusinessManagerInUseException,
    BusinessManagerNotFoundException,
)
from server.business_managers.models import (
    BusinessManager,
    BusinessManagerOwnership,
    BusinessManagerStatus,
    BusinessVerificationStatus,
)
from server.business_managers.repository import BusinessManagerRepository
from server.business_managers.schemas import (
    BusinessManagerCreateRequestSchema,
    BusinessManagerListRequestSchema,
    BusinessManagerResponseSchema,
    BusinessManagerUpdateRequestSchema,
    WorkspaceBusinessManagerListRequestSchema,
)
from server.composition import Infrastructure
from server.exceptions import InvalidRequestException
from server.idempotency.exceptions import RequestIdReusedException
from server.idempotency.models import IdempotencyKey
from server.pixels.models import Pixel
from server.requests.models import Request, RequestStatus, RequestType
from server.requests.schemas import BusinessManagerConnectionPayload
from server.workspaces.exceptions import WorkspaceArchivedException, WorkspaceNotFoundException
from server.workspaces.schemas import WorkspaceCreateRequestSchema
from tests.waits import blocked_on_a_lock

TOKEN = "EAAG-system-user-token-0123456789abcdef"
OTHER_TOKEN = "EAAG-rotated-token-fedcba9876543210"

STAFF = Principal(kind=PrincipalKind.USER, id=uuid.uuid4(), system_permissions=frozenset({"business_managers.manage"}))


def create_schema(
    meta_business_id: str = "1234567890", *, name: str = "Agency BM", token: str = TOKEN
) -> BusinessManagerCreateRequestSchema:
    return BusinessManagerCreateRequestSchema.model_validate(
        {"meta_business_id": meta_business_id, "name": name, "system_user_token": token}
    )


async def create(
    infrastructure: Infrastructure,
    meta_business_id: str = "1234567890",
    *,
    name: str = "Agency BM",
    token: str = TOKEN,
    request_id: str | None = None,
) -> BusinessManagerResponseSchema:
    async with infrastructure.unit_of_work() as uow:
        return await uow.business_managers.create_business_manager(
            create_schema(meta_business_id, name=name, token=token), actor=STAFF, idempotency_key=request_id
        )


async def stored(infrastructure: Infrastructure, business_manager_id: uuid.UUID) -> BusinessManager:
    async with infrastructure.unit_of_work() as uow:
        row = await uow.session.get(BusinessManager, business_manager_id)
    assert row is not None
    return row


async def make_workspace(infrastructure: Infrastructure, name: str = "Acme") -> uuid.UUID:
    async with infrastructure.unit_of_work() as uow:
        return (await uow.workspaces.create_workspace(WorkspaceCreateRequestSchema(name=name))).id


async def client_bm(
    infrastructure: Infrastructure,
    workspace_id: uuid.UUID,
    meta_business_id: str,
    *,
    status: BusinessManagerStatus = BusinessManagerStatus.ACTIVE,
) -> uuid.UUID:
    """A client business manager as the connection worker would leave it (seeded directly)."""
    async with infrastructure.unit_of_work() as uow:
        row = BusinessManager(
            meta_business_id=meta_business_id,
            name=f"Client {meta_business_id}",
            ownership=BusinessManagerOwnership.CLIENT,
            workspace_id=workspace_id,
            status=status,
            verification_status=BusinessVerificationStatus.VERIFIED,
            encrypted_token=None,
        )
        uow.session.add(row)
        await uow.session.flush()
        return row.id


async def set_status(infrastructure: Infrastructure, business_manager_id: uuid.UUID, status: str) -> None:
    async with infrastructure.unit_of_work() as uow:
        await uow.session.execute(
            update(BusinessManager).where(BusinessManager.id == business_manager_id).values(status=status)
        )


async def audit_rows(infrastructure: Infrastructure) -> list[AuditLog]:
    async with infrastructure.unit_of_work() as uow:
        return list(
            await uow.session.scalars(
                select(AuditLog).where(AuditLog.entity_type == "business_manager").order_by(AuditLog.id)
            )
        )


def update_schema(**fields: object) -> BusinessManagerUpdateRequestSchema:
    return BusinessManagerUpdateRequestSchema.model_validate(fields)


# --- create, get, the token at rest -----------------------------------------------------------


async def test_create_makes_an_active_unverified_platform_business_manager(infrastructure: Infrastructure) -> None:
    created = await create(infrastructure, " 1234567890 ", name="  Agency BM  ")
    assert created.meta_business_id == "1234567890"
    assert created.name == "Agency BM"
    assert created.ownership is BusinessManagerOwnership.PLATFORM
    assert created.workspace_id is None
    assert created.status is BusinessManagerStatus.ACTIVE
    assert created.verification_status is BusinessVerificationStatus.NOT_VERIFIED
    assert created.has_system_user_token is True
    assert created.etag == 'W/"1"'
    async with infrastructure.unit_of_work() as uow:
        assert await uow.business_managers.get_business_manager(created.id) == created


async def test_token_is_encrypted_at_rest_and_never_in_the_response(infrastructure: Infrastructure) -> None:
    created = await create(infrastructure)
    row = await stored(infrastructure, created.id)
    assert row.encrypted_token is not None
    assert TOKEN not in row.encrypted_token
    assert infrastructure.cipher.decrypt(row.encrypted_token) == TOKEN
    dumped = created.model_dump_json()
    assert TOKEN not in dumped
    assert 'token":' not in dumped.replace("has_system_user_token", "")


async def test_token_never_reaches_the_audit_trail(infrastructure: Infrastructure) -> None:
    created = await create(infrastructure)
    async with infrastructure.unit_of_work() as uow:
        await uow.business_managers.update_business_manager(
            created.id, update_schema(update_mask=["system_user_token"], system_user_token=OTHER_TOKEN)
        )
    async with infrastructure.unit_of_work() as uow:
        await uow.business_managers.delete_business_manager(created.id)
    rows = await audit_rows(infrastructure)
    assert [row.action for row in rows] == ["create", "update", "delete"]
    row = await stored(infrastructure, created.id)
    for entry in rows:
        assert entry.entity_id == created.id
        snapshots = json.dumps([entry.before, entry.after])
        assert TOKEN not in snapshots
        assert OTHER_TOKEN not in snapshots
        assert "encrypted_token" not in snapshots
    assert rows[0].before is None
    assert rows[0].after is not None
    assert rows[0].after["has_system_user_token"] is True
    assert rows[2].after is not None
    assert rows[2].after["status"] == "archived"
    assert row.encrypted_token is None


def test_token_length_is_validated_without_echoing_it() -> None:
    for token in ("short-token", "x" * 1001, "has a space inside it...."):
        with pytest.raises(ValidationError) as raised:
            create_schema(token=token)
        assert [error["loc"] for error in raised.value.errors()] == [("system_user_token",)]
        assert token not in str(raised.value)
        with pytest.raises(ValidationError) as raised:
            update_schema(update_mask=["system_user_token"], system_user_token=token)
        assert token not in str(raised.value)
    assert create_schema(token=f"  {TOKEN}\n").system_user_token.get_secret_value() == TOKEN
    assert TOKEN not in repr(create_schema())


@pytest.mark.parametrize("meta_business_id", ["", "abc", "123456789012345678901", "12-34"])
def test_meta_business_id_is_one_to_twenty_digits(meta_business_id: str) -> None:
    with pytest.raises(ValidationError):
        create_schema(meta_business_id)


async def test_a_live_meta_business_id_is_taken_until_archived(infrastructure: Infrastructure) -> None:
    first = await create(infrastructure, "555")
    with pytest.raises(BusinessManagerExistsException) as raised:
        await create(infrastructure, "555", name="Again")
    assert raised.value.reason == "BUSINESS_MANAGER_EXISTS"
    assert TOKEN not in raised.value.message
    async with infrastructure.unit_of_work() as uow:
        await uow.business_managers.delete_business_manager(first.id)
    again = await create(infrastructure, "555", name="Again")
    assert again.id != first.id


async def test_create_with_a_request_id_runs_once(infrastructure: Infrastructure) -> None:
    first = await create(infrastructure, request_id="create-1")
    replayed = await create(infrastructure, request_id="create-1")
    assert replayed == first
    async with infrastructure.unit_of_work() as uow:
        count = len(list(await uow.session.scalars(select(BusinessManager))))
    assert count == 1
    with pytest.raises(RequestIdReusedException):
        await create(infrastructure, name="Other name", request_id="create-1")
    # The token is not in the fingerprint, but a retry is still checked against the stored token.
    with pytest.raises(RequestIdReusedException):
        await create(infrastructure, token=OTHER_TOKEN, request_id="create-1")


async def test_idempotency_fingerprint_does_not_cover_the_token(infrastructure: Infrastructure) -> None:
    await create(infrastructure, request_id="create-2")
    async with infrastructure.unit_of_work() as uow:
        key = await uow.session.scalar(select(IdempotencyKey).where(IdempotencyKey.key == "create-2"))
    assert key is not None
    without_token = json.dumps({"meta_business_id": "1234567890", "name": "Agency BM"}, separators=(",", ":"))
    assert key.fingerprint == hashlib.sha256(without_token.encode()).hexdigest()
    assert "system_user_token" not in create_schema().model_dump_json()


async def test_get_unknown_is_not_found(infrastructure: Infrastructure) -> None:
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(BusinessManagerNotFoundException) as raised:
            await uow.business_managers.get_business_manager(uuid.uuid4())
    assert raised.value.reason == "BUSINESS_MANAGER_NOT_FOUND"


# --- list ---------------------------------------------------------------------------------------


async def test_list_filters_and_pages_in_creation_order(infrastructure: Infrastructure) -> None:
    workspace = await make_workspace(infrastructure)
    platform = [(await create(infrastructure, str(100 + i), name=f"BM {i}")).id for i in range(3)]
    client = await client_bm(infrastructure, workspace, "900")
    await set_status(infrastructure, platform[1], "needs_attention")

    async def ids(**query: object) -> list[uuid.UUID]:
        async with infrastructure.unit_of_work() as uow:
            page = await uow.business_managers.list_business_managers(
                BusinessManagerListRequestSchema.model_validate(query)
            )
        return [b.id for b in page.items]

    assert await ids() == [*platform, client]
    assert await ids(ownership="platform") == platform
    assert await ids(ownership="client") == [client]
    assert await ids(status="needs_attention") == [platform[1]]
    assert await ids(workspace_id=workspace) == [client]

    seen: list[uuid.UUID] = []
    token = ""
    while True:
        async with infrastructure.unit_of_work() as uow:
            page = await uow.business_managers.list_business_managers(
                BusinessManagerListRequestSchema(
                    page_size=1, page_token=token, ownership=BusinessManagerOwnership.PLATFORM
                )
            )
        seen += [b.id for b in page.items]
        token = page.next_page_token
        if not token:
            break
    assert seen == platform

    async with infrastructure.unit_of_work() as uow:
        first = await uow.business_managers.list_business_managers(BusinessManagerListRequestSchema(page_size=1))
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(InvalidRequestException) as raised:
            await uow.business_managers.list_business_managers(
                BusinessManagerListRequestSchema(
                    page_size=1, page_token=first.next_page_token, ownership=BusinessManagerOwnership.CLIENT
                )
            )
    assert raised.value.violations[0].reason == "INVALID_PAGE_TOKEN"


# --- update -------------------------------------------------------------------------------------


async def test_update_name_with_etag_and_stale_etag_is_a_conflict(infrastructure: Infrastructure) -> None:
    created = await create(infrastructure)
    async with infrastructure.unit_of_work() as uow:
        renamed = await uow.business_managers.update_business_manager(
            created.id, update_schema(update_mask=["name"], name=" Renamed ", etag=created.etag)
        )
    assert renamed.name == "Renamed"
    assert renamed.etag == 'W/"2"'
    row = await stored(infrastructure, created.id)
    assert row.encrypted_token is not None
    assert infrastructure.cipher.decrypt(row.encrypted_token) == TOKEN
    for etag in (created.etag, "garbage"):
        async with infrastructure.unit_of_work() as uow:
            with pytest.raises(BusinessManagerEtagMismatchException) as raised:
                await uow.business_managers.update_business_manager(
                    created.id, update_schema(update_mask=["name"], name="Again", etag=etag)
                )
        assert raised.value.reason == "ETAG_MISMATCH"
    assert (await stored(infrastructure, created.id)).name == "Renamed"


def test_update_mask_must_be_non_empty_and_known() -> None:
    with pytest.raises(ValidationError):
        update_schema(update_mask=[])
    with pytest.raises(ValidationError):
        update_schema(update_mask=["status"], name="x")
    with pytest.raises(ValidationError):
        update_schema(update_mask=["name"])  # in the mask, but no value
    with pytest.raises(ValidationError):
        update_schema(update_mask=["system_user_token"], system_user_token="short")


async def test_fields_outside_the_mask_are_left_alone(infrastructure: Infrastructure) -> None:
    created = await create(infrastructure)
    async with infrastructure.unit_of_work() as uow:
        updated = await uow.business_managers.update_business_manager(
            created.id, update_schema(update_mask=["system_user_token"], name="Ignored", system_user_token=OTHER_TOKEN)
        )
    assert updated.name == "Agency BM"


async def test_new_token_is_re_encrypted_and_clears_needs_attention(infrastructure: Infrastructure) -> None:
    created = await create(infrastructure)
    await set_status(infrastructure, created.id, "needs_attention")
    before = (await stored(infrastructure, created.id)).encrypted_token
    async with infrastructure.unit_of_work() as uow:
        updated = await uow.business_managers.update_business_manager(
            created.id, update_schema(update_mask=["system_user_token"], system_user_token=OTHER_TOKEN)
        )
    assert updated.status is BusinessManagerStatus.ACTIVE
    row = await stored(infrastructure, created.id)
    assert row.encrypted_token is not None
    assert row.encrypted_token != before
    assert OTHER_TOKEN not in row.encrypted_token
    assert infrastructure.cipher.decrypt(row.encrypted_token) == OTHER_TOKEN


async def test_a_rename_keeps_needs_attention(infrastructure: Infrastructure) -> None:
    created = await create(infrastructure)
    await set_status(infrastructure, created.id, "needs_attention")
    async with infrastructure.unit_of_work() as uow:
        updated = await uow.business_managers.update_business_manager(
            created.id, update_schema(update_mask=["name"], name="Renamed")
        )
    assert updated.status is BusinessManagerStatus.NEEDS_ATTENTION


async def test_update_of_archived_or_unknown(infrastructure: Infrastructure) -> None:
    created = await create(infrastructure)
    async with infrastructure.unit_of_work() as uow:
        await uow.business_managers.delete_business_manager(created.id)
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(BusinessManagerArchivedException) as raised:
            await uow.business_managers.update_business_manager(
                created.id, update_schema(update_mask=["system_user_token"], system_user_token=OTHER_TOKEN)
            )
    assert raised.value.reason == "BUSINESS_MANAGER_ARCHIVED"
    assert (await stored(infrastructure, created.id)).encrypted_token is None
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(BusinessManagerNotFoundException):
            await uow.business_managers.update_business_manager(
                uuid.uuid4(), update_schema(update_mask=["name"], name="x")
            )


# --- delete -------------------------------------------------------------------------------------


async def test_delete_archives_clears_the_token_and_is_idempotent(infrastructure: Infrastructure) -> None:
    created = await create(infrastructure)
    async with infrastructure.unit_of_work() as uow:
        archived = await uow.business_managers.delete_business_manager(created.id, etag=created.etag)
    assert archived.status is BusinessManagerStatus.ARCHIVED
    assert archived.has_system_user_token is False
    assert (await stored(infrastructure, created.id)).encrypted_token is None
    async with infrastructure.unit_of_work() as uow:
        again = await uow.business_managers.delete_business_manager(created.id)
    assert again == archived
    async with infrastructure.unit_of_work() as uow:
        with_etag = await uow.business_managers.delete_business_manager(created.id, etag=archived.etag)
    assert with_etag == archived
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(BusinessManagerEtagMismatchException):
            await uow.business_managers.delete_business_manager(created.id, etag=created.etag)
    assert [row.action for row in await audit_rows(infrastructure)] == ["create", "delete"]


async def test_delete_with_stale_etag_or_unknown(infrastructure: Infrastructure) -> None:
    created = await create(infrastructure)
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(BusinessManagerEtagMismatchException):
            await uow.business_managers.delete_business_manager(created.id, etag='W/"7"')
    assert (await stored(infrastructure, created.id)).status is BusinessManagerStatus.ACTIVE
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(BusinessManagerNotFoundException):
            await uow.business_managers.delete_business_manager(uuid.uuid4())


async def test_delete_is_refused_while_an_account_lives_in_it(infrastructure: Infrastructure) -> None:
    workspace = await make_workspace(infrastructure)
    created = await create(infrastructure)
    async with infrastructure.unit_of_work() as uow:
        account = Account(
            workspace_id=workspace,
            business_manager_id=created.id,
            name="Ads",
            currency="USD",
            timezone="UTC",
            status=AccountStatus.ACTIVE,
        )
        uow.session.add(account)
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(BusinessManagerInUseException) as raised:
            await uow.business_managers.delete_business_manager(created.id)
    assert raised.value.reason == "BUSINESS_MANAGER_IN_USE"
    row = await stored(infrastructure, created.id)
    assert row.status is BusinessManagerStatus.ACTIVE
    assert row.encrypted_token is not None


async def test_delete_is_refused_while_a_pixel_lives_in_it(infrastructure: Infrastructure) -> None:
    workspace = await make_workspace(infrastructure)
    created = await create(infrastructure)
    other = await create(infrastructure, "777")
    async with infrastructure.unit_of_work() as uow:
        uow.session.add(Pixel(workspace_id=workspace, business_manager_id=created.id, name="Site"))
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(BusinessManagerInUseException):
            await uow.business_managers.delete_business_manager(created.id)
    # Only the business manager the pixel lives in is in use.
    async with infrastructure.unit_of_work() as uow:
        archived = await uow.business_managers.delete_business_manager(other.id)
    assert archived.status is BusinessManagerStatus.ARCHIVED


# --- connection requests ------------------------------------------------------------------------


def connection(meta_business_id: str = "4242", name: str = "Acme Business") -> BusinessManagerConnectionPayload:
    return BusinessManagerConnectionPayload.model_validate({"meta_business_id": meta_business_id, "name": name})


MEMBER = Principal(kind=PrincipalKind.USER, id=uuid.uuid4())


async def test_connection_request_lands_in_the_queue(infrastructure: Infrastructure) -> None:
    workspace = await make_workspace(infrastructure)
    async with infrastructure.unit_of_work() as uow:
        queued = await uow.business_managers.request_connection(workspace, connection(), actor=MEMBER)
    assert queued.status is RequestStatus.WAITING_FOR_APPROVAL
    assert queued.type is RequestType.BUSINESS_MANAGER_CONNECTION
    assert queued.workspace_id == workspace
    assert queued.requester_id == MEMBER.id
    async with infrastructure.unit_of_work() as uow:
        row = await uow.session.get(Request, queued.id)
    assert row is not None
    assert row.status is RequestStatus.WAITING_FOR_APPROVAL
    assert row.payload == {"type": "business_manager_connection", "meta_business_id": "4242", "name": "Acme Business"}


async def test_connection_request_with_a_request_id_runs_once(infrastructure: Infrastructure) -> None:
    workspace = await make_workspace(infrastructure)
    async with infrastructure.unit_of_work() as uow:
        queued = await uow.business_managers.request_connection(
            workspace, connection(), actor=MEMBER, idempotency_key="connect-1"
        )
    async with infrastructure.unit_of_work() as uow:
        replayed = await uow.business_managers.request_connection(
            workspace, connection(), actor=MEMBER, idempotency_key="connect-1"
        )
    assert replayed.id == queued.id
    async with infrastructure.unit_of_work() as uow:
        assert len(list(await uow.session.scalars(select(Request)))) == 1


async def test_connection_for_a_business_already_on_the_platform_is_refused(infrastructure: Infrastructure) -> None:
    workspace = await make_workspace(infrastructure)
    existing = await create(infrastructure, "4242")
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(BusinessManagerExistsException) as raised:
            await uow.business_managers.request_connection(workspace, connection("4242"), actor=MEMBER)
    assert raised.value.reason == "BUSINESS_MANAGER_EXISTS"
    async with infrastructure.unit_of_work() as uow:
        assert list(await uow.session.scalars(select(Request))) == []
    # Once archived, the business may be connected again.
    async with infrastructure.unit_of_work() as uow:
        await uow.business_managers.delete_business_manager(existing.id)
    async with infrastructure.unit_of_work() as uow:
        queued = await uow.business_managers.request_connection(workspace, connection("4242"), actor=MEMBER)
    assert queued.status is RequestStatus.WAITING_FOR_APPROVAL


async def test_connection_for_an_unknown_or_archived_workspace(infrastructure: Infrastructure) -> None:
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(WorkspaceNotFoundException) as raised:
            await uow.business_managers.request_connection(uuid.uuid4(), connection(), actor=MEMBER)
    assert raised.value.reason == "WORKSPACE_NOT_FOUND"
    workspace = await make_workspace(infrastructure)
    async with infrastructure.unit_of_work() as uow:
        await uow.workspaces.delete_workspace(workspace)
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(WorkspaceArchivedException):
            await uow.business_managers.request_connection(workspace, connection(), actor=MEMBER)


# --- the workspace's view -------------------------------------------------------------------------


async def list_workspace(
    infrastructure: Infrastructure, workspace: uuid.UUID, *, page_size: int = 0, page_token: str = ""
) -> tuple[list[uuid.UUID], str]:
    async with infrastructure.unit_of_work() as uow:
        page = await uow.business_managers.list_workspace_business_managers(
            workspace, WorkspaceBusinessManagerListRequestSchema(page_size=page_size, page_token=page_token)
        )
    return [b.id for b in page.items], page.next_page_token


async def test_workspace_sees_its_client_bms_and_usable_platform_bms(infrastructure: Infrastructure) -> None:
    mine = await make_workspace(infrastructure, "Mine")
    theirs = await make_workspace(infrastructure, "Theirs")
    platform_active = (await create(infrastructure, "1")).id
    own_client = await client_bm(infrastructure, mine, "2")
    platform_attention = (await create(infrastructure, "3")).id
    await set_status(infrastructure, platform_attention, "needs_attention")
    platform_archived = (await create(infrastructure, "4")).id
    async with infrastructure.unit_of_work() as uow:
        await uow.business_managers.delete_business_manager(platform_archived)
    their_client = await client_bm(infrastructure, theirs, "5")
    own_archived_client = await client_bm(infrastructure, mine, "6", status=BusinessManagerStatus.ARCHIVED)
    own_attention_client = await client_bm(infrastructure, mine, "7", status=BusinessManagerStatus.NEEDS_ATTENTION)

    ids, token = await list_workspace(infrastructure, mine)
    assert ids == [platform_active, own_client, platform_attention, own_attention_client]
    assert token == ""
    assert their_client not in ids
    assert own_archived_client not in ids
    assert platform_archived not in ids
    ids, _ = await list_workspace(infrastructure, theirs)
    assert ids == [platform_active, platform_attention, their_client]

    paged: list[uuid.UUID] = []
    token = ""
    while True:
        ids, token = await list_workspace(infrastructure, mine, page_size=1, page_token=token)
        assert len(ids) == 1
        paged += ids
        if not token:
            break
    assert paged == [platform_active, own_client, platform_attention, own_attention_client]

    # A page token of one workspace is refused by another.
    _, token = await list_workspace(infrastructure, mine, page_size=1)
    with pytest.raises(InvalidRequestException):
        await list_workspace(infrastructure, theirs, page_size=1, page_token=token)


async def test_workspace_list_of_an_unknown_workspace_is_not_found(infrastructure: Infrastructure) -> None:
    platform = await create(infrastructure)
    with pytest.raises(WorkspaceNotFoundException):
        await list_workspace(infrastructure, uuid.uuid4())
    # A real workspace with nothing to offer is an empty page, not an error.
    empty = await make_workspace(infrastructure, "Empty")
    async with infrastructure.unit_of_work() as uow:
        await uow.business_managers.delete_business_manager(platform.id)
    assert await list_workspace(infrastructure, empty) == ([], "")


# --- get_usable (used by the accounts and pixels services) ----------------------------------------


async def test_get_usable(infrastructure: Infrastructure) -> None:
    mine = await make_workspace(infrastructure, "Mine")
    theirs = await make_workspace(infrastructure, "Theirs")
    platform = (await create(infrastructure, "1")).id
    attention = (await create(infrastructure, "2")).id
    await set_status(infrastructure, attention, "needs_attention")
    archived = (await create(infrastructure, "3")).id
    async with infrastructure.unit_of_work() as uow:
        await uow.business_managers.delete_business_manager(archived)
    own_client = await client_bm(infrastructure, mine, "4")
    their_client = await client_bm(infrastructure, theirs, "5")
    own_attention_client = await client_bm(infrastructure, mine, "6", status=BusinessManagerStatus.NEEDS_ATTENTION)

    async with infrastructure.unit_of_work() as uow:
        repository = BusinessManagerRepository(uow.session)
        usable = {
            bm_id
            for bm_id in (platform, attention, archived, own_client, their_client, own_attention_client, uuid.uuid4())
            if await repository.get_usable(bm_id, workspace_id=mine) is not None
        }
        assert usable == {platform, own_client}
        assert await repository.get_usable(their_client, workspace_id=theirs) is not None
        fetched = await repository.get(archived)
        assert fetched is not None
        assert fetched.status is BusinessManagerStatus.ARCHIVED
        assert await repository.get(uuid.uuid4()) is None


async def test_an_account_added_under_get_usable_blocks_a_concurrent_delete(infrastructure: Infrastructure) -> None:
    """get_usable's key-share lock makes DeleteBusinessManager wait for the account to commit and see it."""
    workspace = await make_workspace(infrastructure)
    created = await create(infrastructure)

    async def delete() -> BusinessManagerResponseSchema:
        async with infrastructure.unit_of_work() as uow:
            return await uow.business_managers.delete_business_manager(created.id)

    async with infrastructure.unit_of_work() as uow:
        assert await BusinessManagerRepository(uow.session).get_usable(created.id, workspace_id=workspace) is not None
        deleting = asyncio.create_task(delete())
        await blocked_on_a_lock(infrastructure)
        assert not deleting.done()
        uow.session.add(
            Account(
                workspace_id=workspace,
                business_manager_id=created.id,
                name="Ads",
                currency="USD",
                timezone="UTC",
                status=AccountStatus.ACTIVE,
            )
        )
    with pytest.raises(BusinessManagerInUseException):
        await asyncio.wait_for(deleting, timeout=10)


async def test_get_usable_after_a_concurrent_archive_finds_nothing(infrastructure: Infrastructure) -> None:
    workspace = await make_workspace(infrastructure)
    created = await create(infrastructure)

    async def usable() -> BusinessManager | None:
        async with infrastructure.unit_of_work() as uow:
            return await BusinessManagerRepository(uow.session).get_usable(created.id, workspace_id=workspace)

    async with infrastructure.unit_of_work() as uow:
        await uow.business_managers.delete_business_manager(created.id)
        looking = asyncio.create_task(usable())
        await blocked_on_a_lock(infrastructure)
        assert not looking.done()
    assert await asyncio.wait_for(looking, timeout=10) is None
