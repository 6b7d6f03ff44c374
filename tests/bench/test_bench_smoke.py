"""A quick smoke of `make bench`'s pieces (the benchmark itself is not a test): the COPY seed, the
keyset measurement, the gRPC framing h2load is fed, the parsing of h2load's and wrk's output, the
tables, the write bench's waiting requests and its check of the approvals."""

import argparse
import os
import struct
import uuid

from sqlalchemy import func, select

from bench import keyset, loadgen, read_rpc, retention, soak, write_rpc
from bench.dataset import seed
from server.accounts.models import Account
from server.auth.principal import Principal, PrincipalKind, current_principal, set_current_principal
from server.composition import Infrastructure


def test_grpc_frame_is_length_prefixed() -> None:
    frame = loadgen.grpc_frame(b"abc")
    assert frame[0] == 0
    assert struct.unpack(">I", frame[1:5]) == (3,)
    assert frame[5:] == b"abc"


def test_h2load_log_lines_become_latencies_and_errors() -> None:
    durations, errors = loadgen.parse_h2load_log("1700000000000000\t200\t1500\n1700000000000001\t503\t250000\nnoise\n")
    assert durations == [1.5, 250.0]
    assert errors == 1


def test_percentiles_and_the_table() -> None:
    ordered = [float(n) for n in range(1, 101)]
    assert loadgen.percentile(ordered, 0.5) == 51.0
    assert loadgen.percentile(ordered, 0.99) == 100.0
    result = loadgen.LoadResult(requests=1000, errors=0, seconds=10, p50=2.0, p99=9.0)
    row = read_rpc.Row(label="GetAccount, gRPC", result=result, server_cpu=1.0, envoy_cpu=0.5, per_process=[0.4, 0.5])
    table = read_rpc.markdown([row], title="today")
    assert "| GetAccount, gRPC | 100 | 2.0 | 9.0 | 1.00 | 0.50 | 0.80 | 0 |" in table.splitlines()


async def test_seed_and_keyset_measurement(infrastructure: Infrastructure) -> None:
    dataset = await seed(
        infrastructure.settings.database_url, infrastructure.tokens, workspaces=3, accounts_per_workspace=7
    )
    assert dataset.account_count == 21
    assert {len(ids) for ids in dataset.accounts.values()} == {7}
    async with infrastructure.unit_of_work() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(Account)) == 21
    member = dataset.members[0]
    assert infrastructure.tokens.decode_access(member.access_token).user_id == member.user_id

    costs = await keyset._costs(infrastructure, member.workspace_id, rows=7, repeats=2)
    assert [cost.page for cost in costs] == [1, 1]  # 7 accounts: one page
    assert {cost.statements for cost in costs} == {1}


def test_keyset_report_compares_the_deep_page_with_page_one_of_its_own_workspace() -> None:
    costs = [
        keyset.PageCost(rows=1_000, page=1, statements=1, median_ms=0.5),
        keyset.PageCost(rows=1_000, page=20, statements=1, median_ms=0.55),
        keyset.PageCost(rows=1_000_000, page=1, statements=1, median_ms=1.0),
        keyset.PageCost(rows=1_000_000, page=200, statements=2, median_ms=1.5),
    ]
    lines = keyset.report(costs).splitlines()
    assert "1,000 accounts: page 20 / page 1 = 1.10x, same statements" in lines
    assert "1,000,000 accounts: page 200 / page 1 = 1.50x, DIFFERENT statements" in lines
    assert lines[-1].endswith("slowest / fastest page: 3.00x")


def test_the_soak_report_judges_the_targets() -> None:
    args = argparse.Namespace(change_every=3.0, cycles=10)
    watchers = [
        soak.Watcher(kind=soak.BUSY, transport="grpc", changes=2),
        soak.Watcher(kind=soak.QUIET, transport="sse"),
    ]
    watchers[1].heartbeats, watchers[1].longest_silence = 4, 15.2
    results = soak.Results(watchers=watchers, latencies_ms=[5.0, 7.0], changes_made=2, cycles=10)
    results.rss_kib = [(0.0, 100_000), (60.0, 120_000)]

    kept = soak.report(results, before_kib=100_000, after_kib=105_000, seconds=60, cpu=6, args=args)
    assert kept.met
    assert not kept.broken
    assert "changes delivered: 2 of 2 expected (2 changes x 1 watchers)" in kept.lines
    assert any(
        line.startswith("heartbeats of the 1 quiet watchers: 4 (4-4 each); longest silence 15.2 s")
        for line in kept.lines
    )

    grown = soak.report(results, before_kib=100_000, after_kib=120_000, seconds=60, cpu=6, args=args)
    watchers[0].ended = "UNAVAILABLE: gone"
    ended = soak.report(results, before_kib=100_000, after_kib=100_000, seconds=60, cpu=6, args=args)
    assert (grown.met, grown.broken) == (False, False)
    assert (ended.met, ended.broken) == (False, True)
    assert "streams that ended unasked: 1 (first: UNAVAILABLE: gone)" in ended.lines
    assert soak.resident_kib(os.getpid()) > 0


async def test_the_retention_snapshot_and_report(infrastructure: Infrastructure) -> None:
    assert infrastructure.redis is not None
    before = await retention.snapshot("before", infrastructure, infrastructure.redis)
    assert set(before.rows) == set(retention.TABLES)
    assert before.sizes["audit_logs"] > 0  # the partitions' size, not the empty parent's
    drive = retention.Drive(tasks_sent=10, approvals=2, completed=2, seconds=1.0, deleted={"outbox_messages": 4})
    table = retention.report([before, before], drive)
    assert table.splitlines()[0] == "| | before | before |"
    assert "| task stream: length, memory | 0, 0 KiB | 0, 0 KiB |" in table
    assert table.endswith("Retention deleted: outbox_messages 4")


async def test_the_write_bench_prepares_waiting_requests_and_checks_approvals(infrastructure: Infrastructure) -> None:
    dataset = await seed(
        infrastructure.settings.database_url, infrastructure.tokens, workspaces=2, accounts_per_workspace=1
    )
    manager_id = await write_rpc._business_manager(infrastructure.settings.database_url)
    waiting = await write_rpc.prepare_waiting(infrastructure.settings.database_url, dataset, manager_id, 5)
    assert len(set(waiting)) == 5
    set_current_principal(Principal(kind=PrincipalKind.USER, id=uuid.uuid4(), superuser=True))
    try:
        async with infrastructure.unit_of_work(direct=True) as uow:
            approved = await uow.requests.approve_request(
                waiting[0], actor=current_principal(), idempotency_key="smoke"
            )
    finally:
        set_current_principal(None)
    assert approved.payload.type == "account_creation"
    assert await write_rpc.check_approvals(infrastructure.settings.database_url) == (1, 1, 1)


def test_the_write_table_and_the_machine_figures() -> None:
    result = loadgen.LoadResult(requests=1000, errors=0, seconds=10, p50=2.0, p99=9.0)
    row = read_rpc.Row(label="ApproveRequest, REST", result=result, server_cpu=2.0, envoy_cpu=0.5, per_process=[1, 1])
    table = write_rpc.markdown([write_rpc.WriteRow(row, busy=0.95)], title="today")
    assert "| ApproveRequest, REST | 100 | 2.0 | 9.0 | 2.00 | 0.50 | 95 % | 0 |" in table.splitlines()
    busy, total = loadgen.machine_ticks()
    assert 0 <= busy <= total
    assert loadgen.busy_share((0, 0), (3, 4)) == 0.75
