"""The audit log's monthly partitions: created ahead of time, and old months dropped whole.

`audit_logs` is partitioned by RANGE (created_at), one partition a month named `audit_logs_yYYYYmMM`,
plus `audit_logs_default` for a row of a month nobody created (so a missed rotation never fails a
write). Rotating creates the next AUDIT_LOG_PARTITIONS_AHEAD months (moving any rows of theirs out of
the default partition first) and drops the partitions whose whole month is older than the months
kept; it never deletes a row from a partition it keeps, and never touches the default partition's
rows otherwise. The application itself never changes an entry: every partition carries the
append-only trigger of the table.
"""

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Protocol

import structlog
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from server.units import UnitOfWorkFactory

logger = structlog.get_logger("adplane.audit_logs.partitions")

TABLE = "audit_logs"
DEFAULT_PARTITION = "audit_logs_default"
_MONTHLY = re.compile(r"^audit_logs_y(\d{4})m(\d{2})$")
# DDL waits this long for its lock on the table, then gives up (and the next run tries again)
# instead of queueing every writer of the audit log behind it.
LOCK_TIMEOUT = "5s"
_TRIGGER = (
    "CREATE OR REPLACE TRIGGER audit_logs_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON {table} "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_logs_append_only()"
)


def is_partition(table: str) -> bool:
    """Whether `table` is one of the audit log's partitions (alembic compares the models with the
    partitioned table only)."""
    return table == DEFAULT_PARTITION or _MONTHLY.match(table) is not None


@dataclass(frozen=True, order=True)
class Month:
    year: int
    month: int

    @classmethod
    def of(cls, day: dt.date) -> "Month":
        return cls(day.year, day.month)

    def plus(self, months: int) -> "Month":
        index = self.year * 12 + self.month - 1 + months
        return Month(index // 12, index % 12 + 1)

    @property
    def start(self) -> dt.datetime:
        return dt.datetime(self.year, self.month, 1, tzinfo=dt.UTC)

    @property
    def end(self) -> dt.datetime:
        return self.plus(1).start

    @property
    def table(self) -> str:
        return f"audit_logs_y{self.year:04d}m{self.month:02d}"


@dataclass
class Rotation:
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    # Rows moved from the default partition into a month created for them.
    moved: int = 0


class AuditLogPartitions:
    """The DDL of the audit log's partitions, on one transaction's session."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def months(self) -> list[Month]:
        """The monthly partitions there are, oldest first."""
        rows = await self._session.execute(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = CAST(:parent AS regclass)"
            ),
            {"parent": TABLE},
        )
        months = [Month(int(m[1]), int(m[2])) for (name,) in rows if (m := _MONTHLY.match(name))]
        return sorted(months)

    async def rotate(self, *, today: dt.date, keep_months: int, ahead: int) -> Rotation:
        """Create the months from this one to `ahead` months ahead; with `keep_months` > 0, drop the
        months that ended before the first day of the month `keep_months` before this one (every
        entry younger than `keep_months` whole months stays). Safe to run again and at once with
        another (an advisory lock orders them)."""
        await self._session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        await self._session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(TABLE, 0))))
        this_month = Month.of(today)
        existing = set(await self.months())
        rotation = Rotation()
        for offset in range(ahead + 1):
            month = this_month.plus(offset)
            if month not in existing:
                rotation.moved += await self._create(month)
                rotation.created.append(month.table)
        if keep_months > 0:
            oldest_kept = this_month.plus(-keep_months)
            for month in sorted(existing):
                if month < oldest_kept:
                    await self._session.execute(text(f'DROP TABLE "{month.table}"'))
                    rotation.dropped.append(month.table)
        if rotation.created or rotation.dropped:
            logger.info(
                "audit log partitions rotated", created=rotation.created, dropped=rotation.dropped, moved=rotation.moved
            )
        return rotation

    async def create(self, month: Month) -> int:
        """Create `month`'s partition unless it exists; how many rows it took from the default partition."""
        if month in set(await self.months()):
            return 0
        return await self._create(month)

    async def _create(self, month: Month) -> int:
        bounds = {"start": month.start, "end": month.end}
        waiting = await self._session.scalar(
            text(f"SELECT count(*) FROM {DEFAULT_PARTITION} WHERE created_at >= :start AND created_at < :end"),  # noqa: S608
            bounds,
        )
        if not waiting:
            await self._session.execute(
                text(
                    f'CREATE TABLE "{month.table}" PARTITION OF {TABLE} '
                    f"FOR VALUES FROM ('{month.start.isoformat()}') TO ('{month.end.isoformat()}')"
                )
            )
        else:
            # Rows of this month went to the default partition: a partition of the month cannot be
            # attached while they are there. They move into it within this transaction (the
            # default partition's trigger is off for the move only; the owner runs this).
            await self._session.execute(
                text(f'CREATE TABLE "{month.table}" (LIKE {TABLE} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)')
            )
            await self._session.execute(text(f"ALTER TABLE {DEFAULT_PARTITION} DISABLE TRIGGER audit_logs_append_only"))
            await self._session.execute(
                text(
                    f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} "  # noqa: S608
                    "WHERE created_at >= :start AND created_at < :end RETURNING *) "
                    f'INSERT INTO "{month.table}" SELECT * FROM moved'
                ),
                bounds,
            )
            await self._session.execute(text(f"ALTER TABLE {DEFAULT_PARTITION} ENABLE TRIGGER audit_logs_append_only"))
            await self._session.execute(
                text(
                    f'ALTER TABLE {TABLE} ATTACH PARTITION "{month.table}" '
                    f"FOR VALUES FROM ('{month.start.isoformat()}') TO ('{month.end.isoformat()}')"
                )
            )
        await self._session.execute(text(_TRIGGER.format(table=f'"{month.table}"')))
        return int(waiting or 0)


class PartitionUnit(Protocol):
    @property
    def audit_log_partitions(self) -> AuditLogPartitions: ...


async def rotate_partitions(
    units: UnitOfWorkFactory[PartitionUnit], *, keep_months: int, ahead: int, today: dt.date | None = None
) -> Rotation:
    """`AuditLogPartitions.rotate` in a transaction of its own: the scheduled job and `adplane
    audit-log rotate`."""
    async with units() as uow:
        return await uow.audit_log_partitions.rotate(
            today=today or dt.datetime.now(dt.UTC).date(), keep_months=keep_months, ahead=ahead
        )
