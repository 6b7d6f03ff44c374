"""`adplane seed-demo`: a realistic dataset to explore the platform with.

Workspaces with members of every role, platform and client business managers, ad accounts in
every Meta status, pixels and shares, and requests waiting in the queue. Users, workspaces,
memberships and requests go through the services (so they are audited like real ones); business
managers, accounts and pixels are written directly, as the Meta sync would.
"""

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import select

from devstack.meta_simulator.control_client import SimulatorControl
from devstack.meta_simulator.schemas import AdAccountSeed
from server.accounts.models import Account, AccountStatus, AccountUser, AccountUserTask, MetaAccountStatus
from server.auth.principal import Principal, PrincipalKind, set_current_principal
from server.auth.roles import WorkspaceRole
from server.business_managers.models import (
    BusinessManager,
    BusinessManagerOwnership,
    BusinessManagerStatus,
    BusinessVerificationStatus,
)
from server.clients.meta.statuses import ACCOUNT_STATUS_NAMES
from server.composition import Infrastructure
from server.db import utcnow
from server.pixels.models import Pixel, PixelAccount
from server.requests.schemas import (
    AccountCreationPayload,
    BusinessManagerConnectionPayload,
    PixelCreationPayload,
    PixelSharePayload,
    RejectionSchema,
    RequestPayload,
    SpendCapChangePayload,
)
from server.users.schemas import UserCreateRequestSchema
from server.workspaces.models import Workspace
from server.workspaces.schemas import MemberAddRequestSchema, WorkspaceCreateRequestSchema

DEMO_PASSWORD = "demo-password-2026"  # noqa: S105 - printed for people to sign in to a demo
MARKER_WORKSPACE = "Acme Retail"
DEMO_BUSINESSES = ("100000000000001", "100000000000002", "200000000000001")


@dataclass(frozen=True)
class DemoLogin:
    email: str
    what: str


class AlreadySeededError(Exception):
    pass


async def seed_demo(infrastructure: Infrastructure) -> list[DemoLogin]:
    """Load the demo data; the logins it created. Refuses to load it twice."""
    async with infrastructure.unit_of_work() as uow:
        if await uow.session.scalar(select(Workspace.id).where(Workspace.name == MARKER_WORKSPACE)):
            raise AlreadySeededError(f"a workspace named {MARKER_WORKSPACE!r} exists; the demo data is loaded")

    logins: list[DemoLogin] = []

    async def user(email: str, what: str, roles: list[str] | None = None) -> Principal:
        async with infrastructure.unit_of_work() as uow:
            created = await uow.users.create_user(
                UserCreateRequestSchema.model_validate(
                    {
                        "email": email,
                        "full_name": email.split("@", maxsplit=1)[0].replace(".", " ").title(),
                        "password": DEMO_PASSWORD,
                    }
                )
            )
            if roles:
                await uow.users.set_user_roles(created.id, roles)
        logins.append(DemoLogin(email=email, what=what))
        return Principal(kind=PrincipalKind.USER, id=created.id, system_permissions=frozenset())

    await user("ada.admin@agency.example", "agency administrator (every system permission)", ["administrator"])
    approver = await user("alan.approver@agency.example", "agency staff who approve requests", ["approver"])
    await user("grace.staff@agency.example", "agency staff (read everything)", ["staff"])

    workspaces: dict[str, uuid.UUID] = {}
    members: dict[str, dict[WorkspaceRole, Principal]] = {}
    for name, slug in (("Acme Retail", "acme"), ("Globex Travel", "globex"), ("Initech Software", "initech")):
        owner = await user(f"olivia.owner@{slug}.example", f"owner of {name}")
        async with infrastructure.unit_of_work() as uow:
            workspace = await uow.workspaces.create_workspace(WorkspaceCreateRequestSchema(name=name), actor=owner)
        workspaces[slug] = workspace.id
        members[slug] = {WorkspaceRole.OWNER: owner}
        as_owner = Principal(
            kind=PrincipalKind.USER, id=owner.id, workspace_id=workspace.id, workspace_role=WorkspaceRole.OWNER
        )
        for role, person in (
            (WorkspaceRole.ADMIN, "adam.admin"),
            (WorkspaceRole.MEMBER, "maria.member"),
            (WorkspaceRole.VIEWER, "victor.viewer"),
        ):
            principal = await user(f"{person}@{slug}.example", f"{role.value} of {name}")
            async with infrastructure.unit_of_work() as uow:
                await uow.workspaces.add_member(
                    workspace.id, MemberAddRequestSchema(user_id=principal.id, role=role), actor=as_owner
                )
            members[slug][role] = principal

    assets = await _assets(infrastructure, workspaces, members)
    await _requests(infrastructure, workspaces, members, assets, reviewer=approver)
    return logins


@dataclass(frozen=True)
class _Assets:
    eu: BusinessManager
    acme_own: BusinessManager
    acme_accounts: list[Account]
    pixels: list[Pixel]


async def _assets(
    infrastructure: Infrastructure, workspaces: dict[str, uuid.UUID], members: dict[str, dict[WorkspaceRole, Principal]]
) -> _Assets:
    now = utcnow()
    async with infrastructure.unit_of_work() as uow:
        cipher = infrastructure.cipher
        tokens = {meta_id: f"demo-system-user-token-{meta_id}" for meta_id in DEMO_BUSINESSES}
        eu = BusinessManager(
            meta_business_id="100000000000001",
            name="Agency Platform EU",
            ownership=BusinessManagerOwnership.PLATFORM,
            status=BusinessManagerStatus.ACTIVE,
            verification_status=BusinessVerificationStatus.VERIFIED,
            encrypted_token=cipher.encrypt(tokens["100000000000001"]),
        )
        us = BusinessManager(
            meta_business_id="100000000000002",
            name="Agency Platform US",
            ownership=BusinessManagerOwnership.PLATFORM,
            status=BusinessManagerStatus.NEEDS_ATTENTION,
            verification_status=BusinessVerificationStatus.VERIFIED,
            encrypted_token=cipher.encrypt(tokens["100000000000002"]),
        )
        acme_own = BusinessManager(
            meta_business_id="200000000000001",
            name="Acme Retail (own business)",
            ownership=BusinessManagerOwnership.CLIENT,
            workspace_id=workspaces["acme"],
            status=BusinessManagerStatus.ACTIVE,
            verification_status=BusinessVerificationStatus.PENDING,
            encrypted_token=cipher.encrypt(tokens["200000000000001"]),
        )
        uow.session.add_all([eu, us, acme_own])
        await uow.session.flush()

        accounts: list[Account] = []
        statuses = list(MetaAccountStatus)
        for index, status in enumerate(statuses):
            slug = ("acme", "globex", "initech")[index % 3]
            accounts.append(
                Account(
                    workspace_id=workspaces[slug],
                    # Acme's accounts live in its own business; the others alternate platform ones.
                    business_manager_id=acme_own.id if slug == "acme" else (eu.id, us.id)[index % 2],
                    meta_account_id=f"act_{300000000000000 + index}",
                    name=f"{slug.title()} {status.value.replace('_', ' ').title()}",
                    currency=("EUR", "USD", "GBP")[index % 3],
                    timezone=("Europe/Berlin", "America/New_York", "Europe/London")[index % 3],
                    spend_cap_minor=(500_000, None, 2_000_000)[index % 3],
                    amount_spent_minor=137_500 * (index + 1),
                    status=AccountStatus.ACTIVE if status is not MetaAccountStatus.CLOSED else AccountStatus.ARCHIVED,
                    meta_status=status,
                    disable_reason="ADS_INTEGRITY_POLICY" if status is MetaAccountStatus.DISABLED else "",
                    synced_at=now - dt.timedelta(minutes=7),
                )
            )
        if infrastructure.settings.meta_simulator_url:
            _mirror_in_simulator(infrastructure.settings.meta_simulator_url, [eu, us, acme_own], accounts, tokens)
        uow.session.add_all(accounts)
        await uow.session.flush()
        acme_accounts = [a for a in accounts if a.workspace_id == workspaces["acme"]]
        for account in acme_accounts:
            uow.session.add(
                AccountUser(
                    account_id=account.id,
                    user_id=members["acme"][WorkspaceRole.MEMBER].id,
                    tasks=[AccountUserTask.ADVERTISE.value, AccountUserTask.ANALYZE.value],
                )
            )
        pixels = [
            Pixel(
                workspace_id=workspaces[slug],
                business_manager_id=eu.id,
                meta_pixel_id=f"{400000000000000 + index}",
                name=f"{slug.title()} Website Pixel",
                last_fired_at=now - dt.timedelta(hours=index + 1),
            )
            for index, slug in enumerate(("acme", "globex", "initech"))
        ]
        uow.session.add_all(pixels)
        await uow.session.flush()
        uow.session.add(PixelAccount(pixel_id=pixels[0].id, account_id=acme_accounts[0].id))

    return _Assets(eu=eu, acme_own=acme_own, acme_accounts=acme_accounts, pixels=pixels)


async def _requests(
    infrastructure: Infrastructure,
    workspaces: dict[str, uuid.UUID],
    members: dict[str, dict[WorkspaceRole, Principal]],
    assets: _Assets,
    *,
    reviewer: Principal,
) -> None:
    eu, acme_own, acme_accounts, pixels = assets.eu, assets.acme_own, assets.acme_accounts, assets.pixels
    # Requests: some waiting in the queue, some already reviewed.
    acme_member = members["acme"][WorkspaceRole.MEMBER]
    globex_member = members["globex"][WorkspaceRole.MEMBER]
    submissions: list[tuple[uuid.UUID, Principal, RequestPayload]] = [
        (
            workspaces["acme"],
            acme_member,
            AccountCreationPayload(
                name="Acme Spring Sale", currency="EUR", timezone="Europe/Berlin", business_manager_id=eu.id
            ),
        ),
        (
            workspaces["acme"],
            acme_member,
            PixelCreationPayload(name="Acme App Events", business_manager_id=acme_own.id),
        ),
        (
            workspaces["acme"],
            acme_member,
            SpendCapChangePayload(
                account_id=acme_accounts[0].id, currency=acme_accounts[0].currency, amount_minor=1_000_000
            ),
        ),
        (workspaces["acme"], acme_member, PixelSharePayload(pixel_id=pixels[0].id, account_ids=[acme_accounts[1].id])),
        (
            workspaces["globex"],
            globex_member,
            BusinessManagerConnectionPayload(meta_business_id="200000000000002", name="Globex Travel (own business)"),
        ),
        (
            workspaces["globex"],
            globex_member,
            AccountCreationPayload(
                name="Globex Summer", currency="USD", timezone="America/New_York", business_manager_id=eu.id
            ),
        ),
        (
            workspaces["globex"],
            globex_member,
            AccountCreationPayload(
                name="Globex Winter", currency="USD", timezone="America/New_York", business_manager_id=eu.id
            ),
        ),
    ]
    submitted = []
    for workspace_id, actor, payload in submissions:
        async with infrastructure.unit_of_work() as uow:
            submitted.append(await uow.requests.submit(workspace_id, payload, actor=actor, idempotency_key=None))
    set_current_principal(reviewer)
    try:
        async with infrastructure.unit_of_work() as uow:
            await uow.requests.approve_request(submitted[-2].id, actor=reviewer, idempotency_key=None)
            await uow.requests.reject_request(
                submitted[-1].id, RejectionSchema(reason="Please reuse the Globex Summer account."), actor=reviewer
            )
    finally:
        set_current_principal(None)


def _mirror_in_simulator(
    url: str, businesses: list[BusinessManager], accounts: list[Account], tokens: dict[str, str]
) -> None:
    """Create the demo businesses (with their tokens) and accounts in the Graph API simulator, so
    approved requests and syncs work against it; the accounts take the ids the simulator gives."""
    meta_ids = {bm.id: bm.meta_business_id for bm in businesses}
    with SimulatorControl(url) as control:
        for bm in businesses:
            control.add_business(bm.name, business_id=bm.meta_business_id, token=tokens[bm.meta_business_id])
        codes = {name: code for code, name in ACCOUNT_STATUS_NAMES.items()}
        created = control.add_ad_accounts(
            [
                AdAccountSeed(
                    business_id=meta_ids[account.business_manager_id],
                    name=account.name,
                    currency=account.currency,
                    timezone_name=account.timezone,
                    account_status=codes[(account.meta_status or MetaAccountStatus.ACTIVE).value],
                    spend_cap=account.spend_cap_minor or 0,
                    amount_spent=account.amount_spent_minor,
                )
                for account in accounts
            ]
        )
    for account, meta_account_id in zip(accounts, created, strict=True):
        account.meta_account_id = meta_account_id
