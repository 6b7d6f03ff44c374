"""What the control API can make the simulator do wrong: latency, failing calls, reported usage."""

import json
from dataclasses import dataclass
from enum import StrEnum

from devstack.meta_simulator.errors import GraphError

# Meta's wording for the throttles, by code.
RATE_LIMIT_MESSAGES = {
    4: "(#4) Application request limit reached",
    17: "(#17) User request limit reached",
    32: "(#32) Page request limit reached",
    613: "(#613) Calls to this api have exceeded the rate limit.",
    80004: "There have been too many calls to this ad-account. Wait a bit and try again.",
}
ADS_MANAGEMENT_THROTTLE_SUBCODE = 2446079


class FaultKind(StrEnum):
    SERVER_ERROR = "server_error"  # HTTP 5xx with code 1 (or 2 for 503)
    RATE_LIMIT = "rate_limit"  # code 17/80004/..., with X-Business-Use-Case-Usage saying when to retry
    PERMISSION = "permission"  # code 200 (or `code`)
    GRAPH_ERROR = "graph_error"  # any `status`, `code`, `subcode`, `message`
    DISCONNECT = "disconnect"  # closes the connection without answering


@dataclass
class Fault:
    kind: FaultKind
    remaining: int
    # Matches calls whose path (e.g. "/v26.0/act_123") starts with it; None matches every call.
    path_prefix: str | None = None
    status: int | None = None
    code: int | None = None
    subcode: int | None = None
    message: str | None = None
    # estimated_time_to_regain_access of a rate limit; 0 leaves it out of the header.
    regain_minutes: float = 5.0

    def matches(self, path: str, *, in_batch: bool) -> bool:
        if self.kind is FaultKind.DISCONNECT and in_batch:
            return False  # a request inside a batch has no connection of its own
        return self.path_prefix is None or path.startswith(self.path_prefix)

    def error(self, *, business_id: str | None) -> GraphError:
        match self.kind:
            case FaultKind.SERVER_ERROR:
                status = self.status or 500
                unavailable = status == 503
                return GraphError(
                    status,
                    self.code or (2 if unavailable else 1),
                    self.message
                    or ("Service temporarily unavailable" if unavailable else "An unknown error has occurred."),
                    is_transient=True,
                )
            case FaultKind.RATE_LIMIT:
                code = self.code or 17
                default_subcode = ADS_MANAGEMENT_THROTTLE_SUBCODE if code in (17, 80004) else None
                headers = {}
                if business_id is not None:
                    headers["X-Business-Use-Case-Usage"] = business_usage_header(
                        business_id, pct=100.0, regain_minutes=self.regain_minutes
                    )
                return GraphError(
                    self.status or 400,
                    code,
                    self.message or RATE_LIMIT_MESSAGES.get(code, f"(#{code}) Rate limit reached"),
                    subcode=self.subcode if self.subcode is not None else default_subcode,
                    is_transient=True,
                    headers=headers,
                )
            case FaultKind.PERMISSION:
                code = self.code or 200
                return GraphError(
                    self.status or 403,
                    code,
                    self.message or f"(#{code}) Requires business_management permission to manage the object",
                    subcode=self.subcode,
                )
            case FaultKind.GRAPH_ERROR | FaultKind.DISCONNECT:
                return GraphError(
                    self.status or 400, self.code or 100, self.message or "Injected error", subcode=self.subcode
                )


@dataclass
class LatencyRule:
    milliseconds: int
    path_prefix: str | None = None

    def matches(self, path: str) -> bool:
        return self.path_prefix is None or path.startswith(self.path_prefix)


@dataclass
class UsageLevels:
    """The percentages every Graph answer reports in its usage headers."""

    app_pct: float = 1.0
    business_pct: float = 1.0
    ad_account_pct: float = 1.0


class FaultPlan:
    """Pending faults and latency rules. Not thread-safe: the state's lock guards it."""

    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self.latency: list[LatencyRule] = []
        self.usage = UsageLevels()
        self.served = 0

    def take(self, path: str, *, in_batch: bool) -> Fault | None:
        """The first pending fault for this call, counted as used."""
        for fault in self.faults:
            if fault.matches(path, in_batch=in_batch):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.faults.remove(fault)
                self.served += 1
                return fault
        return None

    def latency_ms(self, path: str) -> int:
        return sum(rule.milliseconds for rule in self.latency if rule.matches(path))

    def set_latency(self, milliseconds: int, path_prefix: str | None) -> None:
        self.latency = [rule for rule in self.latency if rule.path_prefix != path_prefix]
        if milliseconds > 0:
            self.latency.append(LatencyRule(milliseconds, path_prefix))


def business_usage_header(business_id: str, *, pct: float, regain_minutes: float = 0.0) -> str:
    entry: dict[str, object] = {
        "type": "ads_management",
        "call_count": pct,
        "total_cputime": pct,
        "total_time": pct,
    }
    if regain_minutes:
        entry["estimated_time_to_regain_access"] = regain_minutes
    return json.dumps({business_id: [entry]})


def usage_headers(levels: UsageLevels, *, business_id: str | None, ad_account_id: str | None) -> dict[str, str]:
    pct = levels.app_pct
    headers = {"X-App-Usage": json.dumps({"call_count": pct, "total_cputime": pct, "total_time": pct})}
    if business_id is not None:
        headers["X-Business-Use-Case-Usage"] = business_usage_header(business_id, pct=levels.business_pct)
    if ad_account_id is not None:
        headers["X-Ad-Account-Usage"] = json.dumps(
            {
                "acc_id_util_pct": levels.ad_account_pct,
                "reset_time_duration": 0,
                "ads_api_access_tier": "standard_access",
            }
        )
    return headers
