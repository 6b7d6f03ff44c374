"""Bodies of the control API (`/_control/...`), shared by its handlers and `SimulatorControl`."""

from pydantic import BaseModel, ConfigDict, Field

from devstack.meta_simulator.faults import FaultKind


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BusinessSeed(_Body):
    name: str
    id: str | None = Field(default=None, pattern=r"^\d+$")
    verification_status: str = "verified"
    # Default: "sim-token-<business id>".
    token: str | None = None


class BusinessesSeed(_Body):
    businesses: list[BusinessSeed]


class SeededBusiness(BaseModel):
    id: str
    name: str
    token: str


class AdAccountSeed(_Body):
    business_id: str
    name: str
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    timezone_name: str = "America/Los_Angeles"
    account_status: int = 1
    disable_reason: int = 0
    spend_cap: int = Field(default=0, ge=0)  # Meta's minor units
    amount_spent: int = Field(default=0, ge=0)


class AdAccountsSeed(_Body):
    ad_accounts: list[AdAccountSeed]


class AdAccountChange(_Body):
    """What Meta may change on its side, for sync tests."""

    name: str | None = None
    account_status: int | None = None
    disable_reason: int | None = None
    spend_cap: int | None = Field(default=None, ge=0)
    amount_spent: int | None = Field(default=None, ge=0)


class PixelSeed(_Body):
    business_id: str
    name: str
    last_fired_time: str | None = None


class PixelsSeed(_Body):
    pixels: list[PixelSeed]


class PixelChange(_Body):
    name: str | None = None
    last_fired_time: str | None = None


class BulkSeed(_Body):
    """Generated businesses, with ad accounts and pixels spread evenly over them (for benchmarks)."""

    businesses: int = Field(default=20, ge=1, le=10_000)
    ad_accounts: int = Field(default=10_000, ge=0, le=1_000_000)
    pixels: int = Field(default=0, ge=0, le=1_000_000)


class BulkSeeded(BaseModel):
    businesses: list[SeededBusiness]
    ad_accounts: int
    pixels: int


class LatencySetting(_Body):
    """Delay before answering each Graph call under `path_prefix` (all calls if None); 0 removes the rule."""

    ms: int = Field(ge=0, le=60_000)
    path_prefix: str | None = None


class FaultSetting(_Body):
    kind: FaultKind
    count: int = Field(default=1, ge=1)
    path_prefix: str | None = None
    status: int | None = Field(default=None, ge=400, le=599)
    code: int | None = None
    subcode: int | None = None
    message: str | None = None
    regain_minutes: float = Field(default=5.0, ge=0)


class TokenRevocation(_Body):
    token: str


class UsageSetting(_Body):
    """Percentages reported from now on in X-App-Usage, X-Business-Use-Case-Usage and X-Ad-Account-Usage."""

    app_pct: float | None = Field(default=None, ge=0)
    business_pct: float | None = Field(default=None, ge=0)
    ad_account_pct: float | None = Field(default=None, ge=0)


class ObjectCounts(BaseModel):
    businesses: int
    ad_accounts: int
    pixels: int
    pixel_shares: int
    assigned_users: int
    revoked_tokens: int


class CallCounts(BaseModel):
    http_calls: int
    batch_calls: int
    batched_requests: int
    by_route: dict[str, int]
    by_version: dict[str, int]
    peak_in_flight: int
    faults_served: int


class Counters(BaseModel):
    objects: ObjectCounts
    calls: CallCounts
