"""Keyset flatness: ListAccounts page 1 and a deep page cost the same statements and about the same
time in a workspace of 1,000 accounts and in one of 1,000,000 (seeded with COPY)."""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import dataclass

from bench.dataset import seed
from server.accounts.schemas import AccountListRequestSchema
from server.composition import Infrastructure
from server.config import Settings
from server.statement_log import sent_statements

PAGE_SIZE = 50
DEEP_PAGE = 200
REPEATS = 200


@dataclass(frozen=True)
class PageCost:
    rows: int
    page: int
    statements: int
    median_ms: float


async def _page(infrastructure: Infrastructure, workspace_id: uuid.UUID, token: str) -> str:
    async with infrastructure.unit_of_work(read_only=True) as uow:
        page = await uow.accounts.list_workspace_accounts(
            workspace_id, AccountListRequestSchema(page_size=PAGE_SIZE, page_token=token)
        )
    return page.next_page_token


async def _costs(
    infrastructure: Infrastructure, workspace_id: uuid.UUID, rows: int, *, repeats: int = REPEATS
) -> list[PageCost]:
    """Page 1 and page DEEP_PAGE (or the last page, if the workspace has fewer)."""
    tokens = {1: ""}
    token = ""
    for number in range(2, DEEP_PAGE + 1):
        token = await _page(infrastructure, workspace_id, token)
        if not token:
            break
        tokens[number] = token
    deepest = max(tokens)
    pages = (1, deepest)
    for number in pages:
        await _page(infrastructure, workspace_id, tokens[number])  # warm
    # The two pages alternate call by call, so a burst of noise on a shared machine hits both alike
    # instead of whichever page happened to be measuring then.
    durations: list[list[float]] = [[] for _ in pages]
    statements = [0 for _ in pages]
    for _ in range(repeats):
        for at, number in enumerate(pages):
            with sent_statements(infrastructure) as seen:
                started = time.perf_counter()
                await _page(infrastructure, workspace_id, tokens[number])
                durations[at].append((time.perf_counter() - started) * 1000)
            statements[at] += len(seen)
    return [
        PageCost(
            rows=rows, page=number, statements=statements[at] // repeats, median_ms=statistics.median(durations[at])
        )
        for at, number in enumerate(pages)
    ]


async def measure(settings: Settings, *, large: int, small: int = 1_000) -> list[PageCost]:
    infrastructure = Infrastructure.build(settings)
    try:
        costs = []
        for rows, label in ((small, "small"), (large, "large")):
            dataset = await seed(
                settings.database_url, infrastructure.tokens, workspaces=1, accounts_per_workspace=rows, label=label
            )
            costs += await _costs(infrastructure, dataset.members[0].workspace_id, rows)
        return costs
    finally:
        await infrastructure.close()


def report(costs: list[PageCost]) -> str:
    lines = [
        f"ListAccounts, page of {PAGE_SIZE}, service layer, median of {REPEATS} calls",
        "",
        "| accounts in the workspace | page | SQL statements | median ms |",
        "| ---: | ---: | ---: | ---: |",
    ]
    lines += [f"| {c.rows:,} | {c.page} | {c.statements} | {c.median_ms:.2f} |" for c in costs]
    # Flat: within each workspace, the deep page costs what page 1 does (same statements, time
    # within 1.3x). Across sizes the pages may differ: PostgreSQL plans a workspace that is most
    # of the table differently (it walks the primary key), which is not the page's depth.
    by_rows: dict[int, list[PageCost]] = {}
    for cost in costs:
        by_rows.setdefault(cost.rows, []).append(cost)
    lines.append("")
    for rows, pages in by_rows.items():
        first, deepest = min(pages, key=lambda c: c.page), max(pages, key=lambda c: c.page)
        same = "same statements" if first.statements == deepest.statements else "DIFFERENT statements"
        lines.append(
            f"{rows:,} accounts: page {deepest.page} / page 1 = {deepest.median_ms / first.median_ms:.2f}x, {same}"
        )
    slowest, fastest = max(c.median_ms for c in costs), min(c.median_ms for c in costs)
    lines.append(f"flat means at most 1.3x; across both sizes, slowest / fastest page: {slowest / fastest:.2f}x")
    return "\n".join(lines)
