"""The benchmark dataset, written with COPY: workspaces, one member each, their ad accounts.

Rows go in through asyncpg's binary COPY (100,000 accounts in a few seconds, 1,000,000 in well
under a minute), then ANALYZE, so the planner sees the real table sizes.
"""

import datetime as dt
import uuid
from dataclasses import dataclass

import asyncpg
from sqlalchemy.engine import make_url

from server.auth.passwords import Passwords
from server.auth.tokens import TokenIssuer
from server.db import new_id

PASSWORD = "benchmark password 123"


@dataclass(frozen=True)
class Member:
    user_id: uuid.UUID
    workspace_id: uuid.UUID
    access_token: str


@dataclass(frozen=True)
class Dataset:
    members: list[Member]
    # The account ids of each workspace, in id (= creation) order.
    accounts: dict[uuid.UUID, list[uuid.UUID]]

    @property
    def account_count(self) -> int:
        return sum(len(ids) for ids in self.accounts.values())


def asyncpg_dsn(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


async def seed(
    database_url: str, tokens: TokenIssuer, *, workspaces: int, accounts_per_workspace: int, label: str = "bench"
) -> Dataset:
    """`workspaces` workspaces, each with one member (role member) and `accounts_per_workspace`
    accounts in one platform business manager; an access token per member, valid for a day."""
    now = dt.datetime.now(dt.UTC)
    password_hash = await Passwords().hash(PASSWORD)
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        manager_id = new_id()
        await connection.copy_records_to_table(
            "business_managers",
            columns=[
                "id",
                "meta_business_id",
                "name",
                "ownership",
                "status",
                "verification_status",
                "version",
                "created_at",
                "updated_at",
            ],
            records=[
                (manager_id, str(manager_id.int % 10**15), f"{label} BM", "platform", "active", "verified", 1, now, now)
            ],
        )
        workspace_ids = [new_id() for _ in range(workspaces)]
        user_ids = [new_id() for _ in range(workspaces)]
        await connection.copy_records_to_table(
            "workspaces",
            columns=["id", "name", "status", "version", "created_at", "updated_at"],
            records=[(w, f"{label} {n}", "active", 1, now, now) for n, w in enumerate(workspace_ids)],
        )
        await connection.copy_records_to_table(
            "users",
            columns=[
                "id",
                "email",
                "full_name",
                "password_hash",
                "is_active",
                "is_superuser",
                "version",
                "created_at",
                "updated_at",
            ],
            records=[
                (u, f"{label}-{n}@example.com", f"{label} {n}", password_hash, True, False, 1, now, now)
                for n, u in enumerate(user_ids)
            ],
        )
        await connection.copy_records_to_table(
            "workspaces_users",
            columns=["workspace_id", "user_id", "role", "created_at", "updated_at"],
            records=[(w, u, "member", now, now) for w, u in zip(workspace_ids, user_ids, strict=True)],
        )
        accounts: dict[uuid.UUID, list[uuid.UUID]] = {w: [] for w in workspace_ids}

        def rows() -> list[tuple[object, ...]]:
            out: list[tuple[object, ...]] = []
            for n in range(accounts_per_workspace):
                for w in workspace_ids:
                    account_id = new_id()
                    accounts[w].append(account_id)
                    out.append(
                        (
                            account_id,
                            w,
                            manager_id,
                            f"act_{account_id.hex}",
                            f"Account {n}",
                            "EUR",
                            "Europe/Berlin",
                            100_000,
                            n * 100,
                            "active",
                            "active",
                            "",
                            0,
                            1,
                            now,
                            now,
                        )
                    )
            return out

        await connection.copy_records_to_table(
            "accounts",
            columns=[
                "id",
                "workspace_id",
                "business_manager_id",
                "meta_account_id",
                "name",
                "currency",
                "timezone",
                "spend_cap_minor",
                "amount_spent_minor",
                "status",
                "meta_status",
                "disable_reason",
                "spend_cap_alert_percent",
                "version",
                "created_at",
                "updated_at",
            ],
            records=rows(),
        )
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    members = [
        Member(
            user_id=u,
            workspace_id=w,
            access_token=tokens.issue_access(user_id=u, family_id=new_id(), now=now).token,
        )
        for w, u in zip(workspace_ids, user_ids, strict=True)
    ]
    return Dataset(members=members, accounts=accounts)
