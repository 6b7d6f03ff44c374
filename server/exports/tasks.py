"""The daily spend export: one CSV per workspace with ad accounts, written to S3.

The file is a snapshot of the platform's view of each account's spend (`amount_spent_minor` is
Meta's lifetime spend, kept fresh by the account sync) as of the run, and it is named by the UTC
date of the run: the 04:00 UTC run of 2026-11-27 writes `spend-2026-11-27.csv`, which holds the
spend through the end of 2026-11-26 plus whatever the last sync saw of the early hours of the 27th.
The difference between two consecutive files is a day's spend. A rerun on the same day replaces
that day's file.
"""

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Protocol

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from server.exports.service import IExportService
from server.units import UnitOfWorkFactory

logger = structlog.get_logger("adplane.exports")

# Workspaces read per query while walking those with ad accounts.
WORKSPACE_BATCH = 100


@dataclass
class SpendExportSummary:
    export_date: dt.date
    # Workspaces whose file was written, and the account rows in those files.
    workspaces: int = 0
    rows: int = 0
    # Workspaces whose upload failed (after botocore's own retries); the others are exported.
    failed: list[uuid.UUID] = field(default_factory=list)


class ExportUnit(Protocol):
    @property
    def exports(self) -> IExportService: ...


class SpendExportIncomplete(Exception):
    def __init__(self, summary: SpendExportSummary) -> None:
        ids = ", ".join(str(workspace_id) for workspace_id in summary.failed)
        super().__init__(f"spend export of {summary.export_date} failed for workspaces {ids}; rerun to retry them")
        self.summary = summary


async def run_daily_spend_export(
    units: UnitOfWorkFactory[ExportUnit], *, day: dt.date, create_bucket: bool, batch_size: int = WORKSPACE_BATCH
) -> SpendExportSummary:
    """Export the spend of every workspace that has ad accounts, named by `day`.

    One transaction per workspace: a storage failure loses that workspace's export only, and no
    transaction stays open across more than one upload. Database errors are not caught: without
    the database nothing can be recorded, so the run stops.
    """
    if create_bucket:
        async with units() as uow:
            await uow.exports.ensure_bucket()
    summary = SpendExportSummary(export_date=day)
    after: uuid.UUID | None = None
    while True:
        async with units() as uow:
            workspace_ids = await uow.exports.workspaces_with_accounts(after=after, limit=batch_size)
        for workspace_id in workspace_ids:
            try:
                async with units() as uow:
                    export = await uow.exports.export_workspace_spend(workspace_id, day)
            except (BotoCoreError, ClientError):
                logger.exception("spend export failed", workspace_id=str(workspace_id), export_date=day.isoformat())
                summary.failed.append(workspace_id)
                continue
            if export is not None:
                summary.workspaces += 1
                summary.rows += export.row_count
        if len(workspace_ids) < batch_size:
            break
        after = workspace_ids[-1]
    logger.info(
        "spend export done",
        export_date=day.isoformat(),
        workspaces=summary.workspaces,
        rows=summary.rows,
        failed=len(summary.failed),
    )
    return summary
