"""Meta's usage headers, and pacing calls while a quota is nearly used up."""

import json

from server.clients.meta.usage import UsageThrottle, ad_account_key, business_key, parse_usage, retry_after_seconds

TOKEN = "token-of-business-1"


def _business_usage(business_id: str, pct: float, regain_minutes: float = 0) -> dict[str, str]:
    entry = {"type": "ads_management", "call_count": pct, "total_cputime": 1, "total_time": 1}
    if regain_minutes:
        entry["estimated_time_to_regain_access"] = regain_minutes
    return {"X-Business-Use-Case-Usage": json.dumps({business_id: [entry]})}


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def test_usage_headers_are_reduced_to_peak_percentages() -> None:
    headers = {
        **_business_usage("1", 42),
        "X-App-Usage": json.dumps({"call_count": 5, "total_cputime": 71, "total_time": 3}),
        "X-Ad-Account-Usage": json.dumps({"acc_id_util_pct": 12.5, "reset_time_duration": 0}),
    }

    report = parse_usage(headers)

    assert (report.business_pct, report.app_pct, report.ad_account_pct) == ({"1": 42}, 71, 12.5)


def test_malformed_usage_headers_are_ignored() -> None:
    report = parse_usage({"X-Business-Use-Case-Usage": "{not json", "X-App-Usage": "[]"})

    assert (report.business_pct, report.app_pct) == ({}, None)


def test_retry_after_prefers_what_meta_says() -> None:
    assert retry_after_seconds(_business_usage("1", 100, regain_minutes=3)) == 180
    assert retry_after_seconds({"Retry-After": "12"}) == 12
    assert retry_after_seconds({}) == 60
    assert retry_after_seconds({}, default=5) == 5


async def test_calls_are_spaced_while_a_business_is_hot_and_released_after() -> None:
    fake = FakeTime()
    throttle = UsageThrottle(spacing_seconds=2.0, clock=fake.clock, sleep=fake.sleep)
    keys = [business_key("1")]

    await throttle.before_call(token=TOKEN, keys=keys)
    throttle.after_call(token=TOKEN, keys=keys, headers=_business_usage("1", 91))
    await throttle.before_call(token=TOKEN, keys=keys)
    await throttle.before_call(token=TOKEN, keys=keys)
    assert fake.pauses == [2.0, 2.0]

    throttle.after_call(token=TOKEN, keys=keys, headers=_business_usage("1", 40))
    await throttle.before_call(token=TOKEN, keys=keys)
    assert fake.pauses == [2.0, 2.0]


async def test_another_business_and_another_token_are_not_slowed() -> None:
    fake = FakeTime()
    throttle = UsageThrottle(clock=fake.clock, sleep=fake.sleep)
    throttle.after_call(token=TOKEN, keys=[business_key("1")], headers=_business_usage("1", 99))

    await throttle.before_call(token="token-of-business-2", keys=[business_key("2")])

    assert fake.pauses == []


async def test_the_tokens_business_is_learned_for_calls_on_its_objects() -> None:
    fake = FakeTime()
    throttle = UsageThrottle(spacing_seconds=1.0, clock=fake.clock, sleep=fake.sleep)
    throttle.after_call(token=TOKEN, keys=[business_key("1")], headers=_business_usage("1", 95))

    await throttle.before_call(token=TOKEN, keys=[ad_account_key("act_7")])

    assert fake.pauses == [1.0]


async def test_ad_account_and_app_usage_slow_down_too() -> None:
    fake = FakeTime()
    throttle = UsageThrottle(spacing_seconds=1.0, clock=fake.clock, sleep=fake.sleep)
    account = ad_account_key("act_7")
    throttle.after_call(token=TOKEN, keys=[account], headers={"X-Ad-Account-Usage": '{"acc_id_util_pct": 93}'})

    await throttle.before_call(token=TOKEN, keys=[ad_account_key("act_8")])
    await throttle.before_call(token=TOKEN, keys=[account])
    assert fake.pauses == [1.0]

    throttle.after_call(token=TOKEN, keys=[], headers={"X-App-Usage": '{"call_count": 90}'})
    await throttle.before_call(token="any-other-token", keys=[])
    assert fake.pauses == [1.0, 1.0]


async def test_old_readings_are_forgotten() -> None:
    fake = FakeTime()
    throttle = UsageThrottle(memory_seconds=300, clock=fake.clock, sleep=fake.sleep)
    throttle.after_call(token=TOKEN, keys=[], headers=_business_usage("1", 99))

    fake.now += 301
    await throttle.before_call(token=TOKEN, keys=[business_key("1")])

    assert fake.pauses == []
