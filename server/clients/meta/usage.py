"""Meta's rate-limit headers, and slowing down before Meta starts refusing calls.

Graph reports how much of each quota a call used, in percent:
- `X-Business-Use-Case-Usage`: `{"<business id>": [{"type", "call_count", "total_cputime", "total_time",
  "estimated_time_to_regain_access" (minutes)}, ...]}`;
- `X-App-Usage`: `{"call_count", "total_cputime", "total_time"}` for the whole app;
- `X-Ad-Account-Usage`: `{"acc_id_util_pct", "reset_time_duration" (seconds), ...}` for the ad account
  the call addressed.
"""

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from server.metrics import META_THROTTLED_SECONDS, META_USAGE

BUSINESS_USAGE_HEADER = "X-Business-Use-Case-Usage"
APP_USAGE_HEADER = "X-App-Usage"
AD_ACCOUNT_USAGE_HEADER = "X-Ad-Account-Usage"

# When Meta throttles without saying for how long.
DEFAULT_RETRY_AFTER_SECONDS = 60.0
SLOWDOWN_THRESHOLD_PCT = 90.0
# While a quota is at or above the threshold, calls against it are spaced this far apart.
SLOWDOWN_SPACING_SECONDS = 1.0
# A reading older than this no longer slows anything down (Meta's windows are rolling).
USAGE_MEMORY_SECONDS = 300.0

APP_KEY = "app"


class _Usage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    call_count: float = 0
    total_cputime: float = 0
    total_time: float = 0

    def peak_pct(self) -> float:
        return max(self.call_count, self.total_cputime, self.total_time)


class _BusinessUsage(_Usage):
    type: str = ""
    estimated_time_to_regain_access: float = 0


class _AdAccountUsage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    acc_id_util_pct: float = 0
    reset_time_duration: float = 0


_business_usage_adapter = TypeAdapter(dict[str, list[_BusinessUsage]])


@dataclass(frozen=True)
class UsageReport:
    """The usage headers of one response, reduced to peak percentages per quota."""

    business_pct: dict[str, float] = field(default_factory=dict)
    app_pct: float | None = None
    ad_account_pct: float | None = None
    # Seconds until Meta lets calls through again, from any header that said so.
    regain_access_seconds: float = 0.0


def _json_header(headers: Mapping[str, str], name: str) -> str | None:
    # Header names are case-insensitive; httpx.Headers handles it, plain dicts (batch items) do not.
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def parse_usage(headers: Mapping[str, str]) -> UsageReport:
    """Reads the usage headers; a malformed header is ignored rather than failing the call."""
    business_pct: dict[str, float] = {}
    regain = 0.0
    app_pct: float | None = None
    ad_account_pct: float | None = None

    if raw := _json_header(headers, BUSINESS_USAGE_HEADER):
        try:
            by_business = _business_usage_adapter.validate_json(raw)
        except ValidationError:
            by_business = {}
        for business_id, entries in by_business.items():
            if entries:
                business_pct[business_id] = max(entry.peak_pct() for entry in entries)
                regain = max(regain, *(entry.estimated_time_to_regain_access * 60 for entry in entries))
    if raw := _json_header(headers, APP_USAGE_HEADER):
        try:
            app_pct = _Usage.model_validate_json(raw).peak_pct()
        except ValidationError:
            app_pct = None
    if raw := _json_header(headers, AD_ACCOUNT_USAGE_HEADER):
        try:
            account_usage = _AdAccountUsage.model_validate_json(raw)
        except ValidationError:
            pass
        else:
            ad_account_pct = account_usage.acc_id_util_pct
            regain = max(regain, account_usage.reset_time_duration)
    return UsageReport(
        business_pct=business_pct,
        app_pct=app_pct,
        ad_account_pct=ad_account_pct,
        regain_access_seconds=regain,
    )


def _record_usage(report: UsageReport) -> None:
    if report.app_pct is not None:
        META_USAGE.labels("app").set(report.app_pct)
    if report.business_pct:
        META_USAGE.labels("business").set(max(report.business_pct.values()))
    if report.ad_account_pct is not None:
        META_USAGE.labels("ad_account").set(report.ad_account_pct)


def retry_after_seconds(headers: Mapping[str, str], *, default: float = DEFAULT_RETRY_AFTER_SECONDS) -> float:
    """How long to wait after a rate-limit error: what Meta's headers say, else `default`."""
    regain = parse_usage(headers).regain_access_seconds
    if regain > 0:
        return regain
    if (raw := _json_header(headers, "Retry-After")) is not None:
        try:
            seconds = float(raw)
        except ValueError:
            seconds = 0.0
        if seconds > 0:
            return seconds
    return default


def token_key(token: str) -> str:
    # The throttle outlives calls; it keeps a fingerprint of each token, never the secret itself.
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def business_key(business_id: str) -> str:
    return f"business:{business_id}"


def ad_account_key(account_id: str) -> str:
    return f"ad_account:{account_id}"


class UsageThrottle:
    """Spaces calls out while Meta reports a quota at or above 90 %.

    The state is per process and per instance (one client, one throttle): replicas and worker processes
    each learn Meta's usage from their own responses. That is enough to stop one worker from running a
    business into the limit; Meta's rate-limit errors remain the authority, and the task layer backs
    off on them.

    A call is checked against the app, the ad account it addresses, the business it names, and the
    businesses Meta charged the same token for recently (a system-user token belongs to one business,
    so calls on its ad accounts and pixels count against that business).
    """

    def __init__(
        self,
        *,
        threshold_pct: float = SLOWDOWN_THRESHOLD_PCT,
        spacing_seconds: float = SLOWDOWN_SPACING_SECONDS,
        memory_seconds: float = USAGE_MEMORY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._threshold_pct = threshold_pct
        self._spacing = spacing_seconds
        self._memory = memory_seconds
        self._clock = clock
        self._sleep = sleep
        self._hot_since: dict[str, float] = {}
        self._next_slot: dict[str, float] = {}
        self._token_businesses: dict[str, frozenset[str]] = {}

    async def before_call(self, *, token: str, keys: Iterable[str]) -> None:
        delay = self._reserve(self._keys_for(token, keys))
        if delay > 0:
            META_THROTTLED_SECONDS.labels("client").inc(delay)
            await self._sleep(delay)

    def after_call(self, *, token: str, keys: Iterable[str], headers: Mapping[str, str]) -> None:
        report = parse_usage(headers)
        _record_usage(report)
        now = self._clock()
        if report.business_pct:
            self._token_businesses[token_key(token)] = frozenset(report.business_pct)
        readings: dict[str, float] = {business_key(b): pct for b, pct in report.business_pct.items()}
        if report.app_pct is not None:
            readings[APP_KEY] = report.app_pct
        if report.ad_account_pct is not None:
            for key in keys:
                if key.startswith("ad_account:"):
                    readings[key] = report.ad_account_pct
        for key, pct in readings.items():
            if pct >= self._threshold_pct:
                self._hot_since[key] = now
                # Even the next call waits a little, rather than only the ones after it.
                self._next_slot[key] = max(self._next_slot.get(key, now), now + self._spacing)
            else:
                self._hot_since.pop(key, None)
                self._next_slot.pop(key, None)

    def _keys_for(self, token: str, keys: Iterable[str]) -> set[str]:
        learned = self._token_businesses.get(token_key(token), frozenset())
        return {APP_KEY, *keys, *(business_key(b) for b in learned)}

    def _reserve(self, keys: set[str]) -> float:
        # No await between reading and writing the slots, so concurrent calls on one event loop each
        # get their own slot: they are spaced out rather than all released after the same pause.
        now = self._clock()
        hot = [key for key in keys if (since := self._hot_since.get(key)) is not None and now - since <= self._memory]
        if not hot:
            return 0.0
        start = max(now, *(self._next_slot.get(key, now) for key in hot))
        for key in hot:
            self._next_slot[key] = start + self._spacing
        return start - now
