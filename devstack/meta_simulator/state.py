"""The simulator's Meta: businesses, ad accounts, pixels and tokens, in memory.

One lock guards everything (`with state.lock:`); the HTTP server runs a thread per connection.
Each business has one system-user token, which may act on that business's objects only.
"""

import itertools
import threading
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

from devstack.meta_simulator.faults import FaultPlan
from devstack.meta_simulator.schemas import CallCounts, Counters, ObjectCounts
from server.clients.meta.currencies import OFFSET_ONE_CURRENCIES
from server.clients.meta.timezones import META_TIMEZONE_IDS

TIMEZONE_NAMES = {timezone_id: name for name, timezone_id in META_TIMEZONE_IDS.items()}
ACCOUNT_TASKS = frozenset({"MANAGE", "ADVERTISE", "ANALYZE", "DRAFT", "AA_ANALYZE"})

# Where generated ids start, per kind: long digit strings like Meta's, and never colliding.
_FIRST_IDS = {"business": 100_000_000_000_001, "ad_account": 200_000_000_000_001, "pixel": 300_000_000_000_001}


def currency_units(currency: str) -> int:
    """Meta's offset: minor units per whole unit of the currency."""
    return 1 if currency in OFFSET_ONE_CURRENCIES else 100


def major_to_minor(value: str, currency: str) -> int | None:
    """`"123.45", "USD"` -> 12345; None if it is not a non-negative amount in whole minor units."""
    try:
        amount = Decimal(value) * currency_units(currency)
    except ArithmeticError:
        return None
    if not amount.is_finite() or amount < 0 or amount != amount.to_integral_value():
        return None
    return int(amount)


@dataclass
class Business:
    id: str
    name: str
    verification_status: str
    token: str

    def graph_fields(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "verification_status": self.verification_status}


@dataclass
class AdAccount:
    id: str  # "act_<digits>"
    business_id: str
    name: str
    currency: str
    timezone_id: int
    account_status: int = 1
    disable_reason: int = 0
    spend_cap: int = 0  # Meta's minor units, 0 = none
    amount_spent: int = 0
    assigned_users: dict[str, list[str]] = field(default_factory=dict)

    @property
    def account_id(self) -> str:
        return self.id.removeprefix("act_")

    def graph_fields(self) -> dict[str, object]:
        # Money as numeric strings, as Graph sends it.
        return {
            "id": self.id,
            "account_id": self.account_id,
            "name": self.name,
            "currency": self.currency,
            "timezone_id": self.timezone_id,
            "timezone_name": TIMEZONE_NAMES.get(self.timezone_id, "UTC"),
            "account_status": self.account_status,
            "disable_reason": self.disable_reason,
            "spend_cap": str(self.spend_cap),
            "amount_spent": str(self.amount_spent),
            "business": {"id": self.business_id},
        }

    def control_fields(self) -> dict[str, object]:
        fields = self.graph_fields()
        fields.update(
            spend_cap=self.spend_cap,
            amount_spent=self.amount_spent,
            business_id=self.business_id,
            assigned_users={user: list(tasks) for user, tasks in self.assigned_users.items()},
        )
        return fields


@dataclass
class Pixel:
    id: str
    business_id: str
    name: str
    last_fired_time: str | None = None  # as Graph writes it: "2024-05-01T10:00:00+0000"
    shared_account_ids: list[str] = field(default_factory=list)  # digits, without "act_"

    def graph_fields(self) -> dict[str, object]:
        fields: dict[str, object] = {"id": self.id, "name": self.name, "owner_business": {"id": self.business_id}}
        if self.last_fired_time is not None:
            fields["last_fired_time"] = self.last_fired_time
        return fields

    def control_fields(self) -> dict[str, object]:
        return {**self.graph_fields(), "business_id": self.business_id, "shared_account_ids": self.shared_account_ids}


@dataclass
class CallCounters:
    """Graph calls the simulator answered. Control API calls are not counted."""

    http_calls: int = 0  # HTTP requests to the Graph API, a batch counting once
    batch_calls: int = 0
    batched_requests: int = 0  # requests inside batch calls
    # Every Graph request, top level or batched, by "METHOD /template" (e.g. "GET /{ad_account_id}").
    by_route: Counter[str] = field(default_factory=Counter)
    by_version: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    peak_in_flight: int = 0  # the most HTTP calls being answered at the same time


class SimulatorState:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.businesses: dict[str, Business] = {}
            self.business_by_token: dict[str, str] = {}
            self.revoked_tokens: set[str] = set()
            self.ad_accounts: dict[str, AdAccount] = {}
            self.pixels: dict[str, Pixel] = {}
            # Creation order, which is the order edges list objects in.
            self.owned_ad_accounts: dict[str, list[str]] = {}
            self.owned_pixels: dict[str, list[str]] = {}
            self.faults = FaultPlan()
            self.calls = CallCounters()
            self._ids = {kind: itertools.count(first) for kind, first in _FIRST_IDS.items()}

    def _new_id(self, kind: str) -> str:
        return str(next(self._ids[kind]))

    def add_business(
        self,
        *,
        name: str,
        business_id: str | None = None,
        verification_status: str = "verified",
        token: str | None = None,
    ) -> Business:
        with self.lock:
            business_id = business_id or self._new_id("business")
            if business_id in self.businesses:
                raise ValueError(f"business {business_id} exists")
            token = token or f"sim-token-{business_id}"
            if token in self.business_by_token:
                raise ValueError("token already belongs to another business")
            business = Business(business_id, name, verification_status, token)
            self.businesses[business_id] = business
            self.business_by_token[token] = business_id
            self.owned_ad_accounts[business_id] = []
            self.owned_pixels[business_id] = []
            return business

    def add_ad_account(
        self,
        *,
        business_id: str,
        name: str,
        currency: str = "USD",
        timezone_id: int = 1,
        account_status: int = 1,
        disable_reason: int = 0,
        spend_cap: int = 0,
        amount_spent: int = 0,
    ) -> AdAccount:
        with self.lock:
            if business_id not in self.businesses:
                raise ValueError(f"no business {business_id}")
            account = AdAccount(
                id=f"act_{self._new_id('ad_account')}",
                business_id=business_id,
                name=name,
                currency=currency,
                timezone_id=timezone_id,
                account_status=account_status,
                disable_reason=disable_reason,
                spend_cap=spend_cap,
                amount_spent=amount_spent,
            )
            self.ad_accounts[account.id] = account
            self.owned_ad_accounts[business_id].append(account.id)
            return account

    def add_pixel(self, *, business_id: str, name: str, last_fired_time: str | None = None) -> Pixel:
        with self.lock:
            if business_id not in self.businesses:
                raise ValueError(f"no business {business_id}")
            pixel = Pixel(self._new_id("pixel"), business_id, name, last_fired_time)
            self.pixels[pixel.id] = pixel
            self.owned_pixels[business_id].append(pixel.id)
            return pixel

    def revoke_token(self, token: str) -> None:
        with self.lock:
            self.revoked_tokens.add(token)

    def counters(self) -> Counters:
        with self.lock:
            return Counters(
                objects=ObjectCounts(
                    businesses=len(self.businesses),
                    ad_accounts=len(self.ad_accounts),
                    pixels=len(self.pixels),
                    pixel_shares=sum(len(pixel.shared_account_ids) for pixel in self.pixels.values()),
                    assigned_users=sum(len(account.assigned_users) for account in self.ad_accounts.values()),
                    revoked_tokens=len(self.revoked_tokens),
                ),
                calls=CallCounts(
                    http_calls=self.calls.http_calls,
                    batch_calls=self.calls.batch_calls,
                    batched_requests=self.calls.batched_requests,
                    by_route=dict(self.calls.by_route),
                    by_version=dict(self.calls.by_version),
                    peak_in_flight=self.calls.peak_in_flight,
                    faults_served=self.faults.served,
                ),
            )
