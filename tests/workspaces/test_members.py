"""Workspace membership rules of WorkspaceService, against the real database."""

import asyncio
import uuid

import pytest

from server.auth.permissions import MEMBERS_MANAGE
from server.auth.principal import Principal, PrincipalKind
from server.auth.roles import WorkspaceRole
from server.composition import Infrastructure
from server.exceptions import (
    AlreadyExistsException,
    FailedPreconditionException,
    InvalidRequestException,
    NotFoundException,
    PermissionDeniedException,
)
from server.users.models import User
from server.workspaces.exceptions import (
    AlreadyMemberException,
    LastOwnerException,
    MemberNotFoundException,
    MemberUserInactiveException,
    MemberUserNotFoundException,
    OwnerRequiredException,
    WorkspaceArchivedException,
    WorkspaceNotFoundException,
)
from server.workspaces.schemas import (
    MemberAddRequestSchema,
    MemberListRequestSchema,
    MemberResponseSchema,
    MembershipResponseSchema,
    MemberUpdateRequestSchema,
    MyWorkspacesRequestSchema,
    WorkspaceCreateRequestSchema,
)
from tests.waits import blocked_on_a_lock

# --- helpers -----------------------------------------------------------------------------------


async def new_user(infrastructure: Infrastructure, *, active: bool = True) -> uuid.UUID:
    """A user row; these tests never sign in, so the password hash is a placeholder."""
    async with infrastructure.unit_of_work() as uow:
        user = User(
            email=f"member-{uuid.uuid4().hex[:10]}@example.com",
            full_name="Member",
            password_hash="not-a-real-hash",
            is_active=active,
        )
        uow.session.add(user)
        await uow.session.flush()
    return user.id


def as_user(user_id: uuid.UUID, workspace_id: uuid.UUID | None = None, role: WorkspaceRole | None = None) -> Principal:
    return Principal(kind=PrincipalKind.USER, id=user_id, workspace_id=workspace_id, workspace_role=role)


def staff() -> Principal:
    """Agency staff managing members: a system permission, no role in the workspace."""
    return Principal(kind=PrincipalKind.USER, id=uuid.uuid4(), system_permissions=frozenset({MEMBERS_MANAGE}))


async def create_workspace(infrastructure: Infrastructure, name: str, *, actor: Principal | None = None) -> uuid.UUID:
    async with infrastructure.unit_of_work() as uow:
        workspace = await uow.workspaces.create_workspace(WorkspaceCreateRequestSchema(name=name), actor=actor)
    return workspace.id


async def archive(infrastructure: Infrastructure, workspace_id: uuid.UUID) -> None:
    async with infrastructure.unit_of_work() as uow:
        await uow.workspaces.delete_workspace(workspace_id)


async def add(
    infrastructure: Infrastructure, workspace_id: uuid.UUID, user_id: uuid.UUID, role: WorkspaceRole, *, by: Principal
) -> MemberResponseSchema:
    async with infrastructure.unit_of_work() as uow:
        return await uow.workspaces.add_member(
            workspace_id, MemberAddRequestSchema(user_id=user_id, role=role), actor=by
        )


async def update(
    infrastructure: Infrastructure, workspace_id: uuid.UUID, user_id: uuid.UUID, role: WorkspaceRole, *, by: Principal
) -> MemberResponseSchema:
    async with infrastructure.unit_of_work() as uow:
        return await uow.workspaces.update_member(workspace_id, user_id, MemberUpdateRequestSchema(role=role), actor=by)


async def remove(infrastructure: Infrastructure, workspace_id: uuid.UUID, user_id: uuid.UUID, *, by: Principal) -> None:
    async with infrastructure.unit_of_work() as uow:
        await uow.workspaces.remove_member(workspace_id, user_id, actor=by)


async def members(infrastructure: Infrastructure, workspace_id: uuid.UUID) -> dict[uuid.UUID, WorkspaceRole]:
    async with infrastructure.unit_of_work() as uow:
        page = await uow.workspaces.list_members(workspace_id, MemberListRequestSchema(page_size=500))
    assert page.next_page_token == ""
    return {member.user_id: member.role for member in page.items}


async def all_members(
    infrastructure: Infrastructure, workspace_id: uuid.UUID, *, page_size: int
) -> list[list[MemberResponseSchema]]:
    pages: list[list[MemberResponseSchema]] = []
    token = ""
    while True:
        async with infrastructure.unit_of_work() as uow:
            page = await uow.workspaces.list_members(
                workspace_id, MemberListRequestSchema(page_size=page_size, page_token=token)
            )
        pages.append(page.items)
        token = page.next_page_token
        if not token:
            return pages
        assert len(pages) < 100, "pagination does not end"


async def all_my_workspaces(
    infrastructure: Infrastructure, user_id: uuid.UUID, *, page_size: int
) -> list[list[MembershipResponseSchema]]:
    pages: list[list[MembershipResponseSchema]] = []
    token = ""
    while True:
        async with infrastructure.unit_of_work() as uow:
            page = await uow.workspaces.list_my_workspaces(
                user_id, MyWorkspacesRequestSchema(page_size=page_size, page_token=token)
            )
        pages.append(page.items)
        token = page.next_page_token
        if not token:
            return pages
        assert len(pages) < 100, "pagination does not end"


async def owned_workspace(infrastructure: Infrastructure, name: str) -> tuple[uuid.UUID, uuid.UUID]:
    """A workspace created by a user, who is therefore its only owner: (workspace id, owner id)."""
    owner_id = await new_user(infrastructure)
    workspace_id = await create_workspace(infrastructure, name, actor=as_user(owner_id))
    return workspace_id, owner_id


# --- creating workspaces -----------------------------------------------------------------------


async def test_user_who_creates_a_workspace_becomes_its_owner(infrastructure: Infrastructure) -> None:
    workspace_id, owner_id = await owned_workspace(infrastructure, "Created By A User")

    assert await members(infrastructure, workspace_id) == {owner_id: WorkspaceRole.OWNER}
    async with infrastructure.unit_of_work() as uow:
        mine = await uow.workspaces.list_my_workspaces(owner_id, MyWorkspacesRequestSchema())
    assert [(m.workspace.id, m.role) for m in mine.items] == [(workspace_id, WorkspaceRole.OWNER)]


async def test_api_key_creates_a_workspace_without_owner(infrastructure: Infrastructure) -> None:
    service = Principal(
        kind=PrincipalKind.API_KEY, id=uuid.uuid4(), system_permissions=frozenset({"workspaces.manage"})
    )
    workspace_id = await create_workspace(infrastructure, "Created By A Key", actor=service)
    assert await members(infrastructure, workspace_id) == {}


async def test_workspace_created_without_actor_has_no_members(infrastructure: Infrastructure) -> None:
    workspace_id = await create_workspace(infrastructure, "Created By Nobody")
    assert await members(infrastructure, workspace_id) == {}


# --- my workspaces -----------------------------------------------------------------------------


async def test_my_workspaces_lists_live_memberships_with_roles(infrastructure: Infrastructure) -> None:
    user_id = await new_user(infrastructure)
    admin = staff()
    roles = [WorkspaceRole.VIEWER, WorkspaceRole.ADMIN, WorkspaceRole.OWNER, WorkspaceRole.MEMBER]
    expected: dict[uuid.UUID, WorkspaceRole] = {}
    for n, role in enumerate(roles):
        workspace_id = await create_workspace(infrastructure, f"Mine {n}")
        await add(infrastructure, workspace_id, user_id, role, by=admin)
        expected[workspace_id] = role
    archived_id = await create_workspace(infrastructure, "Mine Archived")
    await add(infrastructure, archived_id, user_id, WorkspaceRole.OWNER, by=admin)
    await archive(infrastructure, archived_id)
    # Someone else's workspace.
    await owned_workspace(infrastructure, "Not Mine")

    pages = await all_my_workspaces(infrastructure, user_id, page_size=2)

    assert [len(page) for page in pages] == [2, 2]
    listed = [membership for page in pages for membership in page]
    assert {m.workspace.id: m.role for m in listed} == expected
    assert len(listed) == len(expected)  # no workspace twice
    assert archived_id not in {m.workspace.id for m in listed}


async def test_my_workspaces_page_token_belongs_to_its_user(infrastructure: Infrastructure) -> None:
    user_id = await new_user(infrastructure)
    other_id = await new_user(infrastructure)
    for n in range(3):
        workspace_id = await create_workspace(infrastructure, f"Token {n}", actor=as_user(user_id))
        await add(infrastructure, workspace_id, other_id, WorkspaceRole.VIEWER, by=staff())
    async with infrastructure.unit_of_work() as uow:
        first = await uow.workspaces.list_my_workspaces(user_id, MyWorkspacesRequestSchema(page_size=1))
    assert first.next_page_token

    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(InvalidRequestException):
            await uow.workspaces.list_my_workspaces(
                other_id, MyWorkspacesRequestSchema(page_size=1, page_token=first.next_page_token)
            )


# --- listing members ---------------------------------------------------------------------------


async def test_members_are_listed_in_joining_order_across_pages(infrastructure: Infrastructure) -> None:
    workspace_id, owner_id = await owned_workspace(infrastructure, "Joining Order")
    owner = as_user(owner_id, workspace_id, WorkspaceRole.OWNER)
    # Users created first join last, so joining order is not the order of user ids.
    user_ids = [await new_user(infrastructure) for _ in range(4)]
    joining = list(reversed(user_ids))
    for user_id in joining:
        await add(infrastructure, workspace_id, user_id, WorkspaceRole.MEMBER, by=owner)

    pages = await all_members(infrastructure, workspace_id, page_size=2)

    assert [len(page) for page in pages] == [2, 2, 1]
    listed = [member for page in pages for member in page]
    assert [member.user_id for member in listed] == [owner_id, *joining]
    assert all(member.workspace_id == workspace_id for member in listed)
    assert [member.created_at for member in listed] == sorted(member.created_at for member in listed)


async def test_members_page_token_belongs_to_its_workspace(infrastructure: Infrastructure) -> None:
    workspace_id, _ = await owned_workspace(infrastructure, "Token Workspace")
    other_id, _ = await owned_workspace(infrastructure, "Other Token Workspace")
    await add(infrastructure, workspace_id, await new_user(infrastructure), WorkspaceRole.VIEWER, by=staff())
    async with infrastructure.unit_of_work() as uow:
        first = await uow.workspaces.list_members(workspace_id, MemberListRequestSchema(page_size=1))
    assert first.next_page_token

    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(InvalidRequestException):
            await uow.workspaces.list_members(
                other_id, MemberListRequestSchema(page_size=1, page_token=first.next_page_token)
            )


async def test_members_of_an_unknown_workspace_is_not_found(infrastructure: Infrastructure) -> None:
    async with infrastructure.unit_of_work() as uow:
        with pytest.raises(WorkspaceNotFoundException):
            await uow.workspaces.list_members(uuid.uuid4(), MemberListRequestSchema())


# --- adding members ----------------------------------------------------------------------------


async def test_admin_adds_a_viewer(infrastructure: Infrastructure) -> None:
    workspace_id, owner_id = await owned_workspace(infrastructure, "Add Viewer")
    admin_id = await new_user(infrastructure)
    await add(
        infrastructure,
        workspace_id,
        admin_id,
        WorkspaceRole.ADMIN,
        by=as_user(owner_id, workspace_id, WorkspaceRole.OWNER),
    )
    viewer_id = await new_user(infrastructure)

    added = await add(
        infrastructure,
        workspace_id,
        viewer_id,
        WorkspaceRole.VIEWER,
        by=as_user(admin_id, workspace_id, WorkspaceRole.ADMIN),
    )

    assert (added.workspace_id, added.user_id, added.role) == (workspace_id, viewer_id, WorkspaceRole.VIEWER)
    assert added.email.startswith("member-")
    assert added.full_name == "Member"
    assert await members(infrastructure, workspace_id) == {
        owner_id: WorkspaceRole.OWNER,
        admin_id: WorkspaceRole.ADMIN,
        viewer_id: WorkspaceRole.VIEWER,
    }


async def test_admin_cannot_grant_the_owner_role(infrastructure: Infrastructure) -> None:
    workspace_id, _ = await owned_workspace(infrastructure, "Admin Grants Owner")
    admin = as_user(await new_user(infrastructure), workspace_id, WorkspaceRole.ADMIN)
    candidate_id = await new_user(infrastructure)

    with pytest.raises(OwnerRequiredException) as error:
        await add(infrastructure, workspace_id, candidate_id, WorkspaceRole.OWNER, by=admin)
    assert isinstance(error.value, PermissionDeniedException)
    assert candidate_id not in await members(infrastructure, workspace_id)


async def test_owner_of_another_workspace_cannot_grant_the_owner_role(infrastructure: Infrastructure) -> None:
    workspace_id, _ = await owned_workspace(infrastructure, "Target Workspace")
    elsewhere_id, elsewhere_owner_id = await owned_workspace(infrastructure, "Elsewhere")
    outsider = as_user(elsewhere_owner_id, elsewhere_id, WorkspaceRole.OWNER)

    with pytest.raises(OwnerRequiredException):
        await add(infrastructure, workspace_id, await new_user(infrastructure), WorkspaceRole.OWNER, by=outsider)


async def test_owner_and_staff_may_grant_the_owner_role(infrastructure: Infrastructure) -> None:
    workspace_id, owner_id = await owned_workspace(infrastructure, "Owners Grant Owner")
    by_owner = await new_user(infrastructure)
    by_staff = await new_user(infrastructure)

    await add(
        infrastructure,
        workspace_id,
        by_owner,
        WorkspaceRole.OWNER,
        by=as_user(owner_id, workspace_id, WorkspaceRole.OWNER),
    )
    await add(infrastructure, workspace_id, by_staff, WorkspaceRole.OWNER, by=staff())

    assert await members(infrastructure, workspace_id) == {
        owner_id: WorkspaceRole.OWNER,
        by_owner: WorkspaceRole.OWNER,
        by_staff: WorkspaceRole.OWNER,
    }


async def test_adding_an_unknown_user_is_not_found(infrastructure: Infrastructure) -> None:
    workspace_id, _ = await owned_workspace(infrastructure, "Unknown User")
    with pytest.raises(MemberUserNotFoundException) as error:
        await add(infrastructure, workspace_id, uuid.uuid4(), WorkspaceRole.VIEWER, by=staff())
    assert isinstance(error.value, NotFoundException)


async def test_adding_an_inactive_user_is_a_failed_precondition(infrastructure: Infrastructure) -> None:
    workspace_id, owner_id = await owned_workspace(infrastructure, "Inactive User")
    inactive_id = await new_user(infrastructure, active=False)
    with pytest.raises(MemberUserInactiveException) as error:
        await add(infrastructure, workspace_id, inactive_id, WorkspaceRole.VIEWER, by=staff())
    assert isinstance(error.value, FailedPreconditionException)
    assert await members(infrastructure, workspace_id) == {owner_id: WorkspaceRole.OWNER}


async def test_adding_a_member_twice_already_exists(infrastructure: Infrastructure) -> None:
    workspace_id, owner_id = await owned_workspace(infrastructure, "Twice")
    user_id = await new_user(infrastructure)
    await add(infrastructure, workspace_id, user_id, WorkspaceRole.VIEWER, by=staff())

    with pytest.raises(AlreadyMemberException) as error:
        await add(infrastructure, workspace_id, user_id, WorkspaceRole.ADMIN, by=staff())
    assert isinstance(error.value, AlreadyExistsException)
    # The existing membership is untouched.
    assert await members(infrastructure, workspace_id) == {owner_id: WorkspaceRole.OWNER, user_id: WorkspaceRole.VIEWER}


async def test_adding_the_owner_again_already_exists(infrastructure: Infrastructure) -> None:
    workspace_id, owner_id = await owned_workspace(infrastructure, "Owner Twice")
    with pytest.raises(AlreadyMemberException):
        await add(infrastructure, workspace_id, owner_id, WorkspaceRole.VIEWER, by=staff())


async def test_adding_to_an_unknown_workspace_is_not_found(infrastructure: Infrastructure) -> None:
    with pytest.raises(WorkspaceNotFoundException):
        await add(infrastructure, uuid.uuid4(), await new_user(infrastructure), WorkspaceRole.VIEWER, by=staff())


async def test_adding_to_an_archived_workspace_is_refused(infrastructure: Infrastructure) -> None:
    workspace_id, _ = await owned_workspace(infrastructure, "Archived Members")
    await archive(infrastructure, workspace_id)
    with pytest.raises(WorkspaceArchivedException):
        await add(infrastructure, workspace_id, await new_user(infrastructure), WorkspaceRole.VIEWER, by=staff())


# --- changing and removing members -------------------------------------------------------------


async def test_admin_changes_roles_below_owner(infrastructure: Infrastructure) -> None:
    workspace_id, _ = await owned_workspace(infrastructure, "Admin Changes")
    admin = as_user(await new_user(infrastructure), workspace_id, WorkspaceRole.ADMIN)
    user_id = await new_user(infrastructure)
    await add(infrastructure, workspace_id, user_id, WorkspaceRole.VIEWER, by=admin)

    updated = await update(infrastructure, workspace_id, user_id, WorkspaceRole.MEMBER, by=admin)
    assert updated.role is WorkspaceRole.MEMBER
    assert (await members(infrastructure, workspace_id))[user_id] is WorkspaceRole.MEMBER

    await remove(infrastructure, workspace_id, user_id, by=admin)
    assert user_id not in await members(infrastructure, workspace_id)


async def test_admin_cannot_touch_owners(infrastructure: Infrastructure) -> None:
    workspace_id, owner_id = await owned_workspace(infrastructure, "Admin Touches Owner")
    second_owner_id = await new_user(infrastructure)
    await add(infrastructure, workspace_id, second_owner_id, WorkspaceRole.OWNER, by=staff())
    viewer_id = await new_user(infrastructure)
    await add(infrastructure, workspace_id, viewer_id, WorkspaceRole.VIEWER, by=staff())
    admin = as_user(await new_user(infrastructure), workspace_id, WorkspaceRole.ADMIN)
    before = await members(infrastructure, workspace_id)

    with pytest.raises(OwnerRequiredException):
        await update(infrastructure, workspace_id, owner_id, WorkspaceRole.ADMIN, by=admin)
    with pytest.raises(OwnerRequiredException):
        await update(infrastructure, workspace_id, viewer_id, WorkspaceRole.OWNER, by=admin)
    with pytest.raises(OwnerRequiredException):
        await remove(infrastructure, workspace_id, owner_id, by=admin)

    assert await members(infrastructure, workspace_id) == before


async def test_demoting_the_last_owner_is_refused(infrastructure: Infrastructure) -> None:
    workspace_id, owner_id = await owned_workspace(infrastructure, "Last Owner Demoted")
    owner = as_user(owner_id, workspace_id, WorkspaceRole.OWNER)
    for by in (owner, staff()):
        with pytest.raises(LastOwnerException) as error:
            await update(infrastructure, workspace_id, owner_id, WorkspaceRole.ADMIN, by=by)
        assert isinstance(error.value, FailedPreconditionException)
    assert await members(infrastructure, workspace_id) == {owner_id: WorkspaceRole.OWNER}


async def test_removing_the_last_owner_is_refused(infrastructure: Infrastructure) -> None:
    workspace_id, owner_id = await owned_workspace(infrastructure, "Last Owner Removed")
    viewer_id = await new_user(infrastructure)
    await add(infrastructure, workspace_id, viewer_id, WorkspaceRole.VIEWER, by=staff())
    for by in (as_user(owner_id, workspace_id, WorkspaceRole.OWNER), staff()):
        with pytest.raises(LastOwnerException):
            await remove(infrastructure, workspace_id, owner_id, by=by)
    assert await members(infrastructure, workspace_id) == {
        owner_id: WorkspaceRole.OWNER,
        viewer_id: WorkspaceRole.VIEWER,
    }


async def test_with_two_owners_one_can_step_down(infrastructure: Infrastructure) -> None:
    workspace_id, first_id = await owned_workspace(infrastructure, "Two Owners")
    second_id = await new_user(infrastructure)
    first = as_user(first_id, workspace_id, WorkspaceRole.OWNER)
    await add(infrastructure, workspace_id, second_id, WorkspaceRole.OWNER, by=first)

    demoted = await update(infrastructure, workspace_id, first_id, WorkspaceRole.ADMIN, by=first)
    assert demoted.role is WorkspaceRole.ADMIN
    assert await members(infrastructure, workspace_id) == {
        first_id: WorkspaceRole.ADMIN,
        second_id: WorkspaceRole.OWNER,
    }

    # Now the second is the last one.
    second = as_user(second_id, workspace_id, WorkspaceRole.OWNER)
    with pytest.raises(LastOwnerException):
        await update(infrastructure, workspace_id, second_id, WorkspaceRole.MEMBER, by=second)


async def test_with_two_owners_one_can_be_removed(infrastructure: Infrastructure) -> None:
    workspace_id, first_id = await owned_workspace(infrastructure, "Two Owners Remove")
    second_id = await new_user(infrastructure)
    await add(infrastructure, workspace_id, second_id, WorkspaceRole.OWNER, by=staff())

    await remove(infrastructure, workspace_id, first_id, by=as_user(second_id, workspace_id, WorkspaceRole.OWNER))
    assert await members(infrastructure, workspace_id) == {second_id: WorkspaceRole.OWNER}


async def test_changing_or_removing_a_non_member_is_not_found(infrastructure: Infrastructure) -> None:
    workspace_id, _ = await owned_workspace(infrastructure, "Non Member")
    stranger_id = await new_user(infrastructure)
    with pytest.raises(MemberNotFoundException):
        await update(infrastructure, workspace_id, stranger_id, WorkspaceRole.VIEWER, by=staff())
    with pytest.raises(MemberNotFoundException):
        await remove(infrastructure, workspace_id, stranger_id, by=staff())


@pytest.mark.parametrize("round_", range(5))
async def test_concurrent_demotions_of_two_owners_leave_one(infrastructure: Infrastructure, round_: int) -> None:
    workspace_id, first_id = await owned_workspace(infrastructure, f"Race {round_}")
    second_id = await new_user(infrastructure)
    await add(infrastructure, workspace_id, second_id, WorkspaceRole.OWNER, by=staff())

    async def step_down(user_id: uuid.UUID) -> MemberResponseSchema:
        return await update(
            infrastructure,
            workspace_id,
            user_id,
            WorkspaceRole.ADMIN,
            by=as_user(user_id, workspace_id, WorkspaceRole.OWNER),
        )

    results = await asyncio.gather(step_down(first_id), step_down(second_id), return_exceptions=True)

    failures = [result for result in results if isinstance(result, BaseException)]
    assert len(failures) == 1, results
    assert isinstance(failures[0], LastOwnerException), failures
    roles = await members(infrastructure, workspace_id)
    assert sorted(roles.values()) == sorted([WorkspaceRole.OWNER, WorkspaceRole.ADMIN])


@pytest.mark.parametrize("round_", range(3))
async def test_concurrent_removals_of_two_owners_leave_one(infrastructure: Infrastructure, round_: int) -> None:
    workspace_id, first_id = await owned_workspace(infrastructure, f"Removal Race {round_}")
    second_id = await new_user(infrastructure)
    await add(infrastructure, workspace_id, second_id, WorkspaceRole.OWNER, by=staff())

    results = await asyncio.gather(
        remove(infrastructure, workspace_id, first_id, by=staff()),
        remove(infrastructure, workspace_id, second_id, by=staff()),
        return_exceptions=True,
    )

    failures = [result for result in results if isinstance(result, BaseException)]
    assert len(failures) == 1, results
    assert isinstance(failures[0], LastOwnerException), failures
    assert list((await members(infrastructure, workspace_id)).values()) == [WorkspaceRole.OWNER]


# --- roles changed concurrently ----------------------------------------------------------------


async def test_admin_cannot_demote_a_member_who_concurrently_became_owner(infrastructure: Infrastructure) -> None:
    """The owner checks must see the role as it is when the change is written, not as it was read."""
    workspace_id, owner_id = await owned_workspace(infrastructure, "Stale Role Demotion")
    promoted_id = await new_user(infrastructure)
    await add(infrastructure, workspace_id, promoted_id, WorkspaceRole.ADMIN, by=staff())
    admin = as_user(await new_user(infrastructure), workspace_id, WorkspaceRole.ADMIN)

    async with infrastructure.unit_of_work() as promotion:
        await promotion.workspaces.update_member(
            workspace_id,
            promoted_id,
            MemberUpdateRequestSchema(role=WorkspaceRole.OWNER),
            actor=as_user(owner_id, workspace_id, WorkspaceRole.OWNER),
        )
        # The admin's demotion starts while the promotion is not committed yet, and waits for it.
        demotion = asyncio.create_task(
            update(infrastructure, workspace_id, promoted_id, WorkspaceRole.VIEWER, by=admin)
        )
        await blocked_on_a_lock(infrastructure)
    (outcome,) = await asyncio.gather(demotion, return_exceptions=True)

    # The member was an owner when the admin's change was written: only an owner or staff may change that.
    assert isinstance(outcome, OwnerRequiredException), outcome
    assert (await members(infrastructure, workspace_id))[promoted_id] is WorkspaceRole.OWNER


async def test_workspace_keeps_an_owner_when_a_new_owner_is_removed_concurrently(
    infrastructure: Infrastructure,
) -> None:
    workspace_id, owner_id = await owned_workspace(infrastructure, "Stale Role Removal")
    successor_id = await new_user(infrastructure)
    await add(infrastructure, workspace_id, successor_id, WorkspaceRole.ADMIN, by=staff())
    owner = as_user(owner_id, workspace_id, WorkspaceRole.OWNER)
    admin = as_user(await new_user(infrastructure), workspace_id, WorkspaceRole.ADMIN)
    removed = asyncio.Event()
    release = asyncio.Event()

    async def admin_removes_the_successor() -> None:
        async with infrastructure.unit_of_work() as uow:
            await uow.workspaces.remove_member(workspace_id, successor_id, actor=admin)
            removed.set()
            await release.wait()  # a slow commit

    # 1. The owner hands over: the successor becomes owner (not committed yet) ...
    async with infrastructure.unit_of_work() as promotion:
        await promotion.workspaces.update_member(
            workspace_id, successor_id, MemberUpdateRequestSchema(role=WorkspaceRole.OWNER), actor=owner
        )
        # 2. ... while an admin removes the successor, whom they read as an admin.
        removal = asyncio.create_task(admin_removes_the_successor())
        await blocked_on_a_lock(infrastructure)
    # 3. With two owners committed, the old owner steps down.
    await asyncio.wait([removal, asyncio.create_task(removed.wait())], return_when=asyncio.FIRST_COMPLETED)
    await update(infrastructure, workspace_id, owner_id, WorkspaceRole.ADMIN, by=owner)
    release.set()
    await asyncio.gather(removal, return_exceptions=True)

    roles = await members(infrastructure, workspace_id)
    assert WorkspaceRole.OWNER in roles.values(), roles
