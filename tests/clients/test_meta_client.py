"""MetaGraphClient against the Graph API simulator, over loopback HTTP."""

import time

import httpx
import pytest

from devstack.meta_simulator import FaultKind, SimulatorControl, SimulatorServer
from devstack.meta_simulator.schemas import AdAccountSeed, SeededBusiness
from server.clients.meta import (
    GRAPH_API_VERSION,
    IMetaClient,
    MetaApiError,
    MetaGraphClient,
    MetaPermissionError,
    MetaRateLimitError,
    MetaTokenError,
    MetaTransientError,
    MetaUnsupportedTimezoneError,
    UsageThrottle,
)

VERSION_ROOT = f"/{GRAPH_API_VERSION}"


def _seed_accounts(
    control: SimulatorControl, business: SeededBusiness, count: int, prefix: str = "Account"
) -> list[str]:
    return control.add_ad_accounts([AdAccountSeed(business_id=business.id, name=f"{prefix} {n}") for n in range(count)])


# Ad accounts


async def test_created_account_is_read_back_with_meta_timezone_id(
    meta: IMetaClient, control: SimulatorControl, business: SeededBusiness
) -> None:
    account = await meta.create_ad_account(
        business.id, name="Shoes DE", currency="EUR", timezone_name="Europe/Berlin", token=business.token
    )

    assert account.id.startswith("act_")
    assert (account.name, account.currency, account.timezone_name) == ("Shoes DE", "EUR", "Europe/Berlin")
    assert account.account_status_name == "active"
    assert (account.spend_cap, account.amount_spent) == (0, 0)
    stored = control.ad_account(account.id)
    assert stored["timezone_id"] == 47
    assert stored["business_id"] == business.id
    reads = await meta.get_ad_accounts([account.id], token=business.token)
    assert reads.accounts == {account.id: account}


async def test_unmapped_timezone_fails_before_calling_meta(
    meta: IMetaClient, control: SimulatorControl, business: SeededBusiness
) -> None:
    with pytest.raises(MetaUnsupportedTimezoneError) as raised:
        await meta.create_ad_account(
            business.id, name="Mars", currency="USD", timezone_name="Mars/Olympus_Mons", token=business.token
        )

    assert raised.value.timezone_name == "Mars/Olympus_Mons"
    assert not raised.value.retryable
    assert control.counters().calls.http_calls == 0


async def test_find_ad_accounts_matches_the_exact_name_within_the_business(
    meta: IMetaClient, control: SimulatorControl, business: SeededBusiness
) -> None:
    other = control.add_business("Other agency")
    wanted = control.add_ad_account(business.id, "Shoes")
    control.add_ad_account(business.id, "Shoes EU")
    control.add_ad_account(business.id, "shoes")
    control.add_ad_account(other.id, "Shoes")

    found = await meta.find_ad_accounts(business.id, name="Shoes", token=business.token)

    assert [account.id for account in found] == [wanted]
    assert await meta.find_ad_accounts(business.id, name="Boots", token=business.token) == []


@pytest.mark.parametrize(("accounts", "batch_calls"), [(120, 3), (100, 2), (101, 3)])
async def test_batched_read_takes_one_batch_call_per_50_accounts(
    meta: IMetaClient, control: SimulatorControl, business: SeededBusiness, accounts: int, batch_calls: int
) -> None:
    account_ids = _seed_accounts(control, business, accounts)

    reads = await meta.get_ad_accounts(account_ids, token=business.token)

    assert sorted(reads.accounts) == sorted(account_ids)
    assert reads.errors == {}
    calls = control.counters().calls
    assert (calls.http_calls, calls.batch_calls, calls.batched_requests) == (batch_calls, batch_calls, accounts)


async def test_batch_calls_run_a_few_at_a_time(
    http: httpx.AsyncClient, control: SimulatorControl, simulator: SimulatorServer, business: SeededBusiness
) -> None:
    account_ids = _seed_accounts(control, business, 200)
    control.set_latency(100)
    meta = MetaGraphClient(http, base_url=simulator.base_url, max_concurrent_batches=2)

    reads = await meta.get_ad_accounts(account_ids, token=business.token)

    assert len(reads.accounts) == 200
    calls = control.counters().calls
    assert (calls.batch_calls, calls.peak_in_flight) == (4, 2)


async def test_batched_read_reads_each_account_once(
    meta: IMetaClient, control: SimulatorControl, business: SeededBusiness
) -> None:
    account_id = control.add_ad_account(business.id, "Twice")

    reads = await meta.get_ad_accounts([account_id, account_id], token=business.token)

    assert list(reads.accounts) == [account_id]
    assert control.counters().calls.batched_requests == 1


async def test_batched_read_reports_accounts_it_could_not_read(
    meta: IMetaClient, control: SimulatorControl, business: SeededBusiness
) -> None:
    readable, throttled = _seed_accounts(control, business, 2)
    control.add_fault(FaultKind.RATE_LIMIT, code=80004, path_prefix=f"{VERSION_ROOT}/{throttled}", regain_minutes=2)

    reads = await meta.get_ad_accounts([readable, throttled, "act_999"], token=business.token)

    assert list(reads.accounts) == [readable]
    rate_limited = reads.errors[throttled]
    assert isinstance(rate_limited, MetaRateLimitError)
    assert rate_limited.retry_after == 120
    missing = reads.errors["act_999"]
    assert isinstance(missing, MetaApiError)
    assert (missing.code, missing.subcode, missing.retryable) == (100, 33, False)


async def test_failed_batch_call_raises_the_meta_error(
    meta: IMetaClient, control: SimulatorControl, business: SeededBusiness
) -> None:
    account_ids = _seed_accounts(control, business, 120)
    control.add_fault(FaultKind.SERVER_ERROR, path_prefix=f"{VERSION_ROOT}/")

    with pytest.raises(MetaTransientError):
        await meta.get_ad_accounts(account_ids, token=business.token)


async def test_batched_read_with_a_revoked_token_raises(
    meta: IMetaClient, control: SimulatorControl, business: SeededBusiness
) -> None:
    account_ids = _seed_accounts(control, business, 3)
    control.revoke_token(business.token)

    with pytest.raises(MetaTokenError):
        await meta.get_ad_accounts(account_ids, token=business.token)


async def test_listing_follows_cursors_over_250_accounts(
    meta: IMetaClient, control: SimulatorControl, business: SeededBusiness
) -> None:
    account_ids = _seed_accounts(control, business, 250)

    listed = [account.id async for account in meta.list_owned_ad_accounts(business.id, token=business.token)]

    assert listed == account_ids
    assert control.counters().calls.by_route["GET /{business_id}/owned_ad_accounts"] == 3


async def test_spend_cap_is_sent_in_whole_units_and_read_back_in_minor_units(
    meta: IMetaClient, control: SimulatorControl, business: SeededBusiness
) -> None:
    euros = control.add_ad_account(business.id, "EUR account", currency="EUR")
    yen = control.add_ad_account(business.id, "JPY account", currency="JPY", timezone_name="Asia/Tokyo")

    await meta.update_spend_cap(euros, 12_345, currency="EUR", token=business.token)
    await meta.update_spend_cap(yen, 5_000, currency="JPY", token=business.token)

    assert control.ad_account(euros)["spend_cap"] == 12_345
    assert control.ad_account(yen)["spend_cap"] == 5_000
    reads = await meta.get_ad_accounts([euros, yen], token=business.token)
    assert (reads.accounts[euros].spend_cap, reads.accounts[yen].spend_cap) == (12_345, 5_000)

    await meta.update_spend_cap(euros, 0, currency="EUR", token=business.token)
    assert control.ad_account(euros)["spend_cap"] == 0


async def test_account_status_and_spend_come_from_meta(
    meta: IMetaClient, control: SimulatorControl, business: SeededBusiness
) -> None:
    account_id = control.add_ad_account(business.id, "Flagged")
    control.change_ad_account(account_id, account_status=2, disable_reason=3, amount_spent=98_765)

    account = (await meta.get_ad_accounts([account_id], token=business.token)).accounts[account_id]

    assert (account.account_status_name, account.disable_reason_name) == ("disabled", "risk_payment")
    assert account.amount_spent == 98_765


async def test_users_are_assigned_and_unassigned(
    meta: IMetaClient, control: SimulatorControl, business: SeededBusiness
) -> None:
    account_id = control.add_ad_account(business.id, "Team account")

    await meta.assign_user(account_id, user_id="555", tasks=["ADVERTISE", "ANALYZE"], token=business.token)
    await meta.assign_user(account_id, user_id="555", tasks=["ADVERTISE", "ANALYZE"], token=business.token)

    assert control.ad_account(account_id)["assigned_users"] == {"555": ["ADVERTISE", "ANALYZE"]}

    await meta.unassign_user(account_id, user_id="555", token=business.token)
    assert control.ad_account(account_id)["assigned_users"] == {}


# Pixels


async def test_pixel_is_created_shared_and_unshared(
    meta: IMetaClient, control: SimulatorControl, business: SeededBusiness
) -> None:
    account_id = control.add_ad_account(business.id, "Shop")

    pixel = await meta.create_pixel(business.id, name="Shop pixel", token=business.token)
    owned = [p async for p in meta.list_owned_pixels(business.id, token=business.token)]
    assert [(p.id, p.name, p.last_fired_time) for p in owned] == [(pixel.id, "Shop pixel", None)]

    await meta.share_pixel(pixel.id, account_id=account_id, business_id=business.id, token=business.token)
    await meta.share_pixel(pixel.id, account_id=account_id, business_id=business.id, token=business.token)
    assert control.pixel(pixel.id)["shared_account_ids"] == [account_id.removeprefix("act_")]

    await meta.unshare_pixel(pixel.id, account_id=account_id, business_id=business.id, token=business.token)
    assert control.pixel(pixel.id)["shared_account_ids"] == []


async def test_pixel_last_fired_time_is_parsed(
    meta: IMetaClient, control: SimulatorControl, business: SeededBusiness
) -> None:
    control.add_pixel(business.id, "Fired", last_fired_time="2024-05-01T10:00:00+0000")

    (pixel,) = [p async for p in meta.list_owned_pixels(business.id, token=business.token)]

    assert pixel.last_fired_time is not None
    assert pixel.last_fired_time.isoformat() == "2024-05-01T10:00:00+00:00"


async def test_business_is_read(meta: IMetaClient, control: SimulatorControl) -> None:
    seeded = control.add_business("Client Co", verification_status="pending")

    business = await meta.get_business(seeded.id, token=seeded.token)

    assert (business.id, business.name, business.verification_status) == (seeded.id, "Client Co", "pending")


# Errors


async def test_rate_limit_error_waits_as_long_as_the_header_says(
    meta: IMetaClient, control: SimulatorControl, business: SeededBusiness
) -> None:
    control.add_fault(FaultKind.RATE_LIMIT, code=80004, regain_minutes=7)

    with pytest.raises(MetaRateLimitError) as raised:
        await meta.get_business(business.id, token=business.token)

    error = raised.value
    assert (error.code, error.subcode, error.retry_after, error.retryable) == (80004, 2446079, 420, True)
    assert error.fbtrace_id


async def test_rate_limit_error_without_a_regain_time_waits_the_default(
    meta: IMetaClient, control: SimulatorControl, business: SeededBusiness
) -> None:
    control.add_fault(FaultKind.RATE_LIMIT, code=17, regain_minutes=0)

    with pytest.raises(MetaRateLimitError) as raised:
        await meta.get_business(business.id, token=business.token)

    assert (raised.value.code, raised.value.retry_after) == (17, 60)


async def test_revoked_token_is_a_token_error_with_subcode_and_trace(
    meta: IMetaClient, control: SimulatorControl, business: SeededBusiness
) -> None:
    control.revoke_token(business.token)

    with pytest.raises(MetaTokenError) as raised:
        await meta.get_business(business.id, token=business.token)

    error = raised.value
    assert (error.code, error.subcode, error.retryable) == (190, 460, False)
    assert error.fbtrace_id
    assert business.token not in str(error)


@pytest.mark.parametrize(("status", "code"), [(500, 1), (503, 2)])
async def test_server_errors_are_transient(
    meta: IMetaClient, control: SimulatorControl, business: SeededBusiness, status: int, code: int
) -> None:
    control.add_fault(FaultKind.SERVER_ERROR, status=status)

    with pytest.raises(MetaTransientError) as raised:
        await meta.get_business(business.id, token=business.token)

    assert (raised.value.http_status, raised.value.code, raised.value.retryable) == (status, code, True)


async def test_acting_on_another_business_is_a_permission_error(
    meta: IMetaClient, control: SimulatorControl, business: SeededBusiness
) -> None:
    other = control.add_business("Someone else")

    with pytest.raises(MetaPermissionError) as raised:
        await meta.create_ad_account(
            other.id, name="Intruder", currency="USD", timezone_name="UTC", token=business.token
        )

    assert (raised.value.code, raised.value.retryable) == (200, False)
    assert control.counters().objects.ad_accounts == 0


async def test_injected_permission_error_code_10(
    meta: IMetaClient, control: SimulatorControl, business: SeededBusiness
) -> None:
    control.add_fault(FaultKind.PERMISSION, code=10)

    with pytest.raises(MetaPermissionError) as raised:
        await meta.get_business(business.id, token=business.token)

    assert raised.value.code == 10


async def test_injected_latency_delays_the_answer(
    meta: IMetaClient, control: SimulatorControl, business: SeededBusiness
) -> None:
    control.set_latency(300, path_prefix=f"{VERSION_ROOT}/{business.id}")

    started = time.monotonic()
    await meta.get_business(business.id, token=business.token)

    assert time.monotonic() - started >= 0.3


async def test_timeout_is_transient(
    control: SimulatorControl, simulator: SimulatorServer, business: SeededBusiness
) -> None:
    control.set_latency(1_000)

    async with httpx.AsyncClient(timeout=0.2) as http:
        meta = MetaGraphClient(http, base_url=simulator.base_url)
        with pytest.raises(MetaTransientError):
            await meta.get_business(business.id, token=business.token)


async def test_dropped_connection_is_retried_once_for_a_read(
    meta: IMetaClient, control: SimulatorControl, business: SeededBusiness
) -> None:
    control.add_fault(FaultKind.DISCONNECT)

    assert (await meta.get_business(business.id, token=business.token)).id == business.id
    assert control.counters().calls.http_calls == 2


async def test_dropped_connection_twice_is_transient(
    meta: IMetaClient, control: SimulatorControl, business: SeededBusiness
) -> None:
    control.add_fault(FaultKind.DISCONNECT, count=2)

    with pytest.raises(MetaTransientError):
        await meta.get_business(business.id, token=business.token)
    assert control.counters().calls.http_calls == 2


async def test_dropped_connection_is_not_retried_for_a_creation(
    meta: IMetaClient, control: SimulatorControl, business: SeededBusiness
) -> None:
    control.add_fault(FaultKind.DISCONNECT)

    with pytest.raises(MetaTransientError):
        await meta.create_pixel(business.id, name="Once", token=business.token)
    counters = control.counters()
    assert (counters.calls.http_calls, counters.objects.pixels) == (1, 0)


# Version and rate-limit headers


async def test_calls_go_to_the_pinned_version(
    http: httpx.AsyncClient, control: SimulatorControl, simulator: SimulatorServer, business: SeededBusiness
) -> None:
    await MetaGraphClient(http, base_url=simulator.base_url).get_business(business.id, token=business.token)
    pinned = MetaGraphClient(http, base_url=simulator.base_url, api_version="v25.0")
    await pinned.get_business(business.id, token=business.token)

    assert control.counters().calls.by_version == {GRAPH_API_VERSION: 1, "v25.0": 1}
    with pytest.raises(ValueError, match=r"v26\.0"):
        MetaGraphClient(http, api_version="21")


async def test_calls_slow_down_while_the_business_is_near_its_limit(
    http: httpx.AsyncClient, control: SimulatorControl, simulator: SimulatorServer, business: SeededBusiness
) -> None:
    now = [0.0]
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        now[0] += seconds

    throttle = UsageThrottle(spacing_seconds=1.0, clock=lambda: now[0], sleep=sleep)
    meta = MetaGraphClient(http, base_url=simulator.base_url, throttle=throttle)
    account_id = control.add_ad_account(business.id, "Busy")
    control.set_usage(business_pct=95)

    await meta.get_business(business.id, token=business.token)
    assert pauses == []
    await meta.get_business(business.id, token=business.token)
    # Calls on the business's ad accounts with its token count against the same business.
    await meta.update_spend_cap(account_id, 100, currency="USD", token=business.token)
    assert pauses == [1.0, 1.0]

    control.set_usage(business_pct=10)
    await meta.get_business(business.id, token=business.token)  # still paced: the last reading was 95 %
    await meta.get_business(business.id, token=business.token)
    assert pauses == [1.0, 1.0, 1.0]
