"""The audit log partitioned by month: reads and keyset pages across months, rotation that only drops
whole months older than those kept and creates the next ones, rows of a month nobody created kept
(the default partition) and moved into their month once it exists, and every partition append-only."""

import asyncio
import datetime as dt
import uuid
from typing import Any

import pytest
import sqlalchemy.exc
from sqlalchemy import select, text

from server.audit_logs.models import AuditLog
from server.audit_logs.partitions import DEFAULT_PARTITION, Month
from server.audit_logs.repository import AuditLogRepository
from server.audit_logs.schemas import AuditLogListRequestSchema
from server.composition import Infrastructure
from server.config import Settings
from server.db import utcnow
from tests.test_cli import run

THIS_MONTH = Month.of(utcnow().date())


async def _create_months(infrastructure: Infrastructure, *months: Month) -> None:
    async with infrastructure.unit_of_work() as uow:
        for month in months:
            await uow.audit_log_partitions.create(month)


async def _add(infrastructure: Infrastructure, created_at: dt.datetime, **row: Any) -> uuid.UUID:
    async with infrastructure.unit_of_work() as uow:
        await AuditLogRepository(uow.session).add_many(
            [
                {
                    "actor_type": None,
                    "actor_id": None,
                    "workspace_id": None,
                    "entity_type": "workspace",
                    "entity_id": uuid.uuid4(),
                    "action": "update",
                    "before": None,
                    "after": None,
                    "trace_id": None,
                    "created_at": created_at,
                    **row,
                }
            ]
        )
        return (await uow.session.scalars(select(AuditLog.id).order_by(AuditLog.id.desc()).limit(1))).one()


async def _partition_of(infrastructure: Infrastructure) -> dict[uuid.UUID, str]:
    async with infrastructure.unit_of_work() as uow:
        rows = await uow.session.execute(text("SELECT id, tableoid::regclass::text FROM audit_logs"))
        return {row.id: row.tableoid for row in rows}


async def _pages(infrastructure: Infrastructure, **query: Any) -> list[list[uuid.UUID]]:
    pages: list[list[uuid.UUID]] = []
    token = ""
    while True:
        async with infrastructure.unit_of_work(read_only=True) as uow:
            page = await uow.audit_logs.list_audit_logs(
                AuditLogListRequestSchema(page_size=2, page_token=token, **query)
            )
        pages.append([entry.id for entry in page.items])
        token = page.next_page_token
        if not token:
            return pages


async def test_keyset_pages_run_across_three_monthly_partitions(infrastructure: Infrastructure) -> None:
    months = [THIS_MONTH.plus(-2), THIS_MONTH.plus(-1), THIS_MONTH]
    await _create_months(infrastructure, *months)
    workspace = uuid.uuid4()
    ids: list[uuid.UUID] = []
    others: list[uuid.UUID] = []
    for month in months:  # oldest first, so id order is time order as in production
        for day in (1, 2):
            ids.append(await _add(infrastructure, month.start + dt.timedelta(days=day), workspace_id=workspace))
        others.append(await _add(infrastructure, month.start + dt.timedelta(days=3)))

    where = await _partition_of(infrastructure)
    assert [where[row_id] for row_id in ids] == [month.table for month in months for _ in (1, 2)]

    pages = await _pages(infrastructure, workspace_id=workspace)
    assert pages == [ids[4:6][::-1], ids[2:4][::-1], ids[0:2][::-1]]  # each page one month, newest first
    everything = await _pages(infrastructure)
    assert [row_id for page in everything for row_id in page] == sorted(ids + others, reverse=True)
    # A time range across a month boundary reads both partitions.
    ranged = await _pages(
        infrastructure,
        workspace_id=workspace,
        start_time=months[1].start,
        end_time=months[2].start + dt.timedelta(days=2),
    )
    assert [row_id for page in ranged for row_id in page] == [ids[4], ids[3], ids[2]]


async def _tables(infrastructure: Infrastructure) -> set[str]:
    async with infrastructure.unit_of_work() as uow:
        return {month.table for month in await uow.audit_log_partitions.months()}


async def test_rotate_drops_only_whole_months_older_than_those_kept_and_creates_the_next(
    infrastructure: Infrastructure,
) -> None:
    past = [THIS_MONTH.plus(-offset) for offset in range(6, 0, -1)]  # six months ago .. last month
    await _create_months(infrastructure, *past)
    by_month = {month: await _add(infrastructure, month.start + dt.timedelta(hours=1)) for month in past}
    # The last instant of the oldest month kept, and an entry of long ago in the default partition.
    keep_months = 2
    oldest_kept = THIS_MONTH.plus(-keep_months)
    edge = await _add(infrastructure, oldest_kept.start)
    ancient = await _add(infrastructure, dt.datetime(2001, 1, 1, tzinfo=dt.UTC))
    now = await _add(infrastructure, utcnow())

    async with infrastructure.unit_of_work() as uow:
        rotation = await uow.audit_log_partitions.rotate(today=utcnow().date(), keep_months=keep_months, ahead=5)

    dropped = [month for month in past if month < oldest_kept]
    assert rotation.dropped == [month.table for month in dropped]
    assert {THIS_MONTH.plus(4).table, THIS_MONTH.plus(5).table} <= set(rotation.created)
    tables = await _tables(infrastructure)
    assert not {month.table for month in dropped} & tables
    assert {THIS_MONTH.plus(offset).table for offset in range(-keep_months, 6)} <= tables

    remaining = set(await _partition_of(infrastructure))
    assert remaining == {by_month[month] for month in past if month >= oldest_kept} | {edge, ancient, now}

    # Again: nothing more to drop or create.
    async with infrastructure.unit_of_work() as uow:
        again = await uow.audit_log_partitions.rotate(today=utcnow().date(), keep_months=keep_months, ahead=5)
    assert (again.created, again.dropped) == ([], [])


async def test_rotate_without_months_to_keep_drops_nothing(infrastructure: Infrastructure) -> None:
    old = THIS_MONTH.plus(-13)
    await _create_months(infrastructure, old)
    entry = await _add(infrastructure, old.start)
    async with infrastructure.unit_of_work() as uow:
        rotation = await uow.audit_log_partitions.rotate(today=utcnow().date(), keep_months=0, ahead=3)
    assert rotation.dropped == []
    assert (await _partition_of(infrastructure))[entry] == old.table


async def test_entries_of_a_month_without_a_partition_move_into_it_when_it_is_made(
    infrastructure: Infrastructure,
) -> None:
    later = THIS_MONTH.plus(20)
    entry = await _add(infrastructure, later.start + dt.timedelta(days=5))
    assert (await _partition_of(infrastructure))[entry] == DEFAULT_PARTITION

    async with infrastructure.unit_of_work() as uow:
        assert await uow.audit_log_partitions.create(later) == 1
    assert (await _partition_of(infrastructure))[entry] == later.table
    assert [row_id for page in await _pages(infrastructure) for row_id in page] == [entry]


@pytest.mark.parametrize(
    "statement", ["DELETE FROM {table}", "UPDATE {table} SET action = 'forged'", "TRUNCATE {table}"]
)
async def test_every_partition_refuses_changes(infrastructure: Infrastructure, statement: str) -> None:
    later = THIS_MONTH.plus(30)
    await _create_months(infrastructure, later)
    await _add(infrastructure, later.start)
    await _add(infrastructure, dt.datetime(2002, 1, 1, tzinfo=dt.UTC))
    for table in (later.table, DEFAULT_PARTITION):
        with pytest.raises(sqlalchemy.exc.ProgrammingError, match="append-only"):
            async with infrastructure.unit_of_work() as uow:
                await uow.session.execute(text(statement.format(table=table)))
    assert len(await _partition_of(infrastructure)) == 2


async def test_the_command_rotates_with_the_months_it_is_given(
    settings: Settings, infrastructure: Infrastructure
) -> None:
    old = THIS_MONTH.plus(-40)
    await _create_months(infrastructure, old)
    env = {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url}
    kept = await asyncio.to_thread(run, "audit-log", "rotate", "--ahead", "2", **env)
    assert kept.returncode == 0, kept.stderr
    assert "dropped: none" in kept.stdout
    rotated = await asyncio.to_thread(run, "audit-log", "rotate", "--keep-months", "12", **env)
    assert rotated.returncode == 0, rotated.stderr
    assert old.table in rotated.stdout.splitlines()[-1]
    assert old.table not in await _tables(infrastructure)
