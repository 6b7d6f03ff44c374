"""Benchmark: the account sync over 10,000 ad accounts in 20 businesses, Meta answering in 50 ms.

    make bench            (or: .venv/bin/python -m bench.sync_accounts [--accounts N ...])

Starts a throwaway embedded PostgreSQL (migrated to head) and the Graph API simulator in its own
process, with 50 ms of latency on every Graph call. Seeds the businesses and ad accounts on both
sides in bulk: Meta's side through the simulator's control API, ours with executemany INSERTs; our
copy is one sync behind, so Meta reports a new spend for every account and a new status for 5 % of
them. Then runs `sync_accounts` as the worker does and prints the wall time, the Graph calls made and
the rows written; a second run, with nothing new on Meta's side, shows the steady state.

Exits 1 if the first run takes `--limit` seconds (60) or more.
"""

import argparse
import asyncio
import random
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy import func, insert, select

from devstack.embedded import free_port, start_postgres
from devstack.meta_simulator import SimulatorControl
from devstack.meta_simulator.schemas import AdAccountSeed, Counters
from server import migrations
from server.accounts.models import Account, AccountStatus, MetaAccountStatus
from server.accounts.sync import SyncSummary, sync_accounts
from server.audit_logs.models import AuditLog
from server.business_managers.models import (
    BusinessManager,
    BusinessManagerOwnership,
    BusinessManagerStatus,
    BusinessVerificationStatus,
)
from server.clients.meta import MetaGraphClient
from server.composition import Infrastructure
from server.config import Environment, Settings
from server.db import new_id
from server.log import configure_logging
from server.workspaces.models import Workspace, WorkspaceStatus

SIMULATOR_START_SECONDS = 30.0
# Meta's code for a disabled account, and a disable reason (risk_payment).
DISABLED, RISK_PAYMENT = 2, 3


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.sync_accounts", description=__doc__.split("\n")[0])
    parser.add_argument("--businesses", type=int, default=20)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=int, default=50, help="delay of every Graph call")
    parser.add_argument("--status-changes", type=float, default=0.05, help="share of accounts Meta disabled")
    parser.add_argument("--concurrency", type=int, default=10, help="META_MAX_CONCURRENCY")
    parser.add_argument("--limit", type=float, default=60.0, help="fail at this many seconds or more")
    return parser.parse_args(argv)


class Simulator:
    """The Graph API simulator in a child process (as Meta would be: another process, over HTTP)."""

    def __init__(self) -> None:
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        self._process = subprocess.Popen(
            [sys.executable, "-m", "devstack.meta_simulator", "--port", str(port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + SIMULATOR_START_SECONDS
        assert self._process.stdout is not None
        while time.monotonic() < deadline:
            line = self._process.stdout.readline()
            if not line:
                raise RuntimeError("the simulator exited before it listened")
            if "listening on" in line:
                return
        raise RuntimeError("the simulator did not start in time")

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def _seed_meta(control: SimulatorControl, args: argparse.Namespace, rng: random.Random) -> list[dict[str, Any]]:
    """Businesses and accounts on Meta's side; returns what our side should hold (one sync behind)."""
    businesses = [control.add_business(f"Business {n + 1}") for n in range(args.businesses)]
    seeds: list[AdAccountSeed] = []
    ours: list[dict[str, Any]] = []
    for n in range(args.accounts):
        business = businesses[n % len(businesses)]
        spent_before = rng.randrange(0, 1_000_000)
        disabled = rng.random() < args.status_changes
        seeds.append(
            AdAccountSeed(
                business_id=business.id,
                name=f"Account {n + 1}",
                spend_cap=2_000_000,
                amount_spent=spent_before + rng.randrange(1, 50_000),
                account_status=DISABLED if disabled else 1,
                disable_reason=RISK_PAYMENT if disabled else 0,
            )
        )
        ours.append({"business": business, "amount_spent_minor": spent_before})
    act_ids = control.add_ad_accounts(seeds)  # one control call for all of them
    for row, seed, act_id in zip(ours, seeds, act_ids, strict=True):
        row.update(meta_account_id=act_id, name=seed.name, spend_cap_minor=seed.spend_cap)
    return ours


async def _seed_ours(infrastructure: Infrastructure, accounts: list[dict[str, Any]]) -> None:
    async with infrastructure.unit_of_work() as uow:
        workspace_id = new_id()
        await uow.session.execute(
            insert(Workspace), [{"id": workspace_id, "name": "Benchmark", "status": WorkspaceStatus.ACTIVE}]
        )
        business_manager_ids: dict[str, uuid.UUID] = {}
        rows = []
        for account in accounts:
            business = account["business"]
            if business.id not in business_manager_ids:
                business_manager_ids[business.id] = new_id()
                rows.append(
                    {
                        "id": business_manager_ids[business.id],
                        "meta_business_id": business.id,
                        "name": business.name,
                        "ownership": BusinessManagerOwnership.PLATFORM,
                        "status": BusinessManagerStatus.ACTIVE,
                        "verification_status": BusinessVerificationStatus.VERIFIED,
                        "encrypted_token": infrastructure.cipher.encrypt(business.token),
                    }
                )
        await uow.session.execute(insert(BusinessManager), rows)
        await uow.session.execute(
            insert(Account),
            [
                {
                    "id": new_id(),
                    "workspace_id": workspace_id,
                    "business_manager_id": business_manager_ids[account["business"].id],
                    "meta_account_id": account["meta_account_id"],
                    "name": account["name"],
                    "currency": "USD",
                    "timezone": "America/Los_Angeles",
                    "spend_cap_minor": account["spend_cap_minor"],
                    "amount_spent_minor": account["amount_spent_minor"],
                    "status": AccountStatus.ACTIVE,
                    "meta_status": MetaAccountStatus.ACTIVE,
                    "disable_reason": "",
                }
                for account in accounts
            ],
        )


async def _timed_sync(
    infrastructure: Infrastructure, settings: Settings, control: SimulatorControl
) -> tuple[float, SyncSummary, Counters, Counters]:
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(30.0, connect=5.0),
        limits=httpx.Limits(max_connections=settings.meta_max_concurrency * 2),
    ) as http:
        meta = MetaGraphClient(http, base_url=settings.meta_graph_url, api_version=settings.meta_graph_api_version)
        calls_before = control.counters()
        started = time.perf_counter()
        summary = await sync_accounts(
            infrastructure.unit_of_work,
            infrastructure.meta_steps(meta, settings),
            concurrency=settings.meta_max_concurrency,
        )
        elapsed = time.perf_counter() - started
        return elapsed, summary, calls_before, control.counters()


def _report(title: str, elapsed: float, summary: SyncSummary, before: Counters, after: Counters) -> None:
    routes = {
        route: count - before.calls.by_route.get(route, 0)
        for route, count in after.calls.by_route.items()
        if count != before.calls.by_route.get(route, 0)
    }
    print(f"{title}: {elapsed:.2f} s")
    print(f"  Graph HTTP calls: {after.calls.http_calls - before.calls.http_calls} {routes}")
    print(f"  peak concurrent Graph calls (whole run so far): {after.calls.peak_in_flight}")
    print(f"  {asdict(summary)}")


async def _run(args: argparse.Namespace, settings: Settings, control: SimulatorControl) -> float:
    infrastructure = Infrastructure.build(settings)
    try:
        rng = random.Random(20261126)  # noqa: S311 - reproducible test data, not secrets
        started = time.perf_counter()
        accounts = _seed_meta(control, args, rng)
        await _seed_ours(infrastructure, accounts)
        print(
            f"seeded {args.businesses} businesses and {args.accounts} ad accounts on both sides "
            f"in {time.perf_counter() - started:.1f} s; Graph latency {args.latency_ms} ms per call, "
            f"META_MAX_CONCURRENCY={settings.meta_max_concurrency}"
        )
        control.set_latency(args.latency_ms)

        elapsed, summary, before, after = await _timed_sync(infrastructure, settings, control)
        async with infrastructure.unit_of_work() as uow:
            audited = await uow.session.scalar(select(func.count()).select_from(AuditLog))
        _report("sync with changes", elapsed, summary, before, after)
        print(f"  audit rows written: {audited}")

        steady, steady_summary, before, after = await _timed_sync(infrastructure, settings, control)
        _report("sync with nothing new", steady, steady_summary, before, after)
        return elapsed
    finally:
        await infrastructure.close()


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="adplane-bench-") as scratch:
        postgres = start_postgres(Path(scratch) / "postgres", ephemeral=True)
        simulator: Simulator | None = None
        try:
            settings = Settings(
                _env_file=None,
                environment=Environment.TEST,
                database_url=postgres.create_database("adplane_bench"),
                secret_key=SecretStr("benchmark-secret-key-that-is-long-enough"),
                meta_max_concurrency=args.concurrency,
                log_level="WARNING",
            )
            configure_logging(settings)
            migrations.upgrade(settings)
            simulator = Simulator()
            settings = settings.model_copy(update={"meta_graph_url": simulator.base_url})
            with SimulatorControl(simulator.base_url, timeout=120.0) as control:
                elapsed = asyncio.run(_run(args, settings, control))
        finally:
            if simulator is not None:
                simulator.stop()
            postgres.stop()
    if elapsed >= args.limit:
        print(f"FAIL: the sync took {elapsed:.2f} s, the budget is under {args.limit:.0f} s")
        return 1
    print(f"OK: under {args.limit:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
