"""The control API (`/_control/...`, JSON): seeding, fault injection and counters, for tests and benchmarks.

| method and path | body | answer |
| --- | --- | --- |
| `GET /_control/counters` | | `Counters` |
| `POST /_control/reset` | | everything cleared |
| `POST /_control/businesses` | `BusinessesSeed` | `[SeededBusiness]` (with tokens) |
| `POST /_control/ad_accounts` | `AdAccountsSeed` | `["act_..."]` |
| `GET /_control/ad_accounts/{act}` | | the account as stored (money as ints, assigned users) |
| `POST /_control/ad_accounts/{act}` | `AdAccountChange` | the account after the change |
| `POST /_control/pixels` | `PixelsSeed` | `["<pixel id>"]` |
| `GET /_control/pixels/{id}` | | the pixel as stored (shared account ids) |
| `POST /_control/pixels/{id}` | `PixelChange` | the pixel after the change |
| `POST /_control/seed` | `BulkSeed` | `BulkSeeded` |
| `POST /_control/latency` | `LatencySetting` | |
| `POST /_control/faults` | `FaultSetting` | |
| `GET /_control/faults` | | the pending faults |
| `DELETE /_control/faults` | | pending faults dropped |
| `POST /_control/tokens/revoke` | `TokenRevocation` | |
| `POST /_control/usage` | `UsageSetting` | |
"""

import dataclasses
import re
from collections.abc import Callable

from pydantic import BaseModel, ValidationError

from devstack.meta_simulator.faults import Fault
from devstack.meta_simulator.schemas import (
    AdAccountChange,
    AdAccountsSeed,
    BulkSeed,
    BulkSeeded,
    BusinessesSeed,
    FaultSetting,
    LatencySetting,
    PixelChange,
    PixelsSeed,
    SeededBusiness,
    TokenRevocation,
    UsageSetting,
)
from devstack.meta_simulator.state import SimulatorState
from server.clients.meta.timezones import META_TIMEZONE_IDS

CONTROL_PREFIX = "/_control"


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _parse[M: BaseModel](model: type[M], payload: object) -> M:
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        raise ControlError(400, str(error)) from error


class ControlApi:
    def __init__(self, state: SimulatorState) -> None:
        self.state = state

    def handle(self, method: str, path: str, payload: object) -> tuple[int, object]:
        """`payload` is the decoded JSON body (None without one); answers (status, JSON body)."""
        route = path.removeprefix(CONTROL_PREFIX).rstrip("/")
        fixed: dict[tuple[str, str], Callable[[object], object]] = {
            ("GET", "/counters"): lambda _: self.state.counters().model_dump(),
            ("POST", "/reset"): self._reset,
            ("POST", "/businesses"): self._add_businesses,
            ("POST", "/ad_accounts"): self._add_ad_accounts,
            ("POST", "/pixels"): self._add_pixels,
            ("POST", "/seed"): self._seed,
            ("POST", "/latency"): self._set_latency,
            ("POST", "/faults"): self._add_fault,
            ("GET", "/faults"): self._faults,
            ("DELETE", "/faults"): self._clear_faults,
            ("POST", "/tokens/revoke"): self._revoke_token,
            ("POST", "/usage"): self._set_usage,
        }
        try:
            if handler := fixed.get((method, route)):
                return 200, handler(payload)
            if match := re.fullmatch(r"/ad_accounts/(act_\d+)", route):
                return 200, self._ad_account(method, match[1], payload)
            if match := re.fullmatch(r"/pixels/(\d+)", route):
                return 200, self._pixel(method, match[1], payload)
            raise ControlError(404, f"no control endpoint {method} {path}")
        except ControlError as error:
            return error.status, {"error": error.message}
        except ValueError as error:
            return 400, {"error": str(error)}

    def _reset(self, _: object) -> object:
        self.state.reset()
        return {}

    def _add_businesses(self, payload: object) -> object:
        seed = _parse(BusinessesSeed, payload)
        created = [
            self.state.add_business(
                name=business.name,
                business_id=business.id,
                verification_status=business.verification_status,
                token=business.token,
            )
            for business in seed.businesses
        ]
        return [SeededBusiness(id=b.id, name=b.name, token=b.token).model_dump() for b in created]

    def _add_ad_accounts(self, payload: object) -> object:
        seed = _parse(AdAccountsSeed, payload)
        created = []
        for account in seed.ad_accounts:
            timezone_id = META_TIMEZONE_IDS.get(account.timezone_name)
            if timezone_id is None:
                raise ControlError(400, f"time zone {account.timezone_name} has no Meta id")
            created.append(
                self.state.add_ad_account(
                    business_id=account.business_id,
                    name=account.name,
                    currency=account.currency,
                    timezone_id=timezone_id,
                    account_status=account.account_status,
                    disable_reason=account.disable_reason,
                    spend_cap=account.spend_cap,
                    amount_spent=account.amount_spent,
                ).id
            )
        return created

    def _add_pixels(self, payload: object) -> object:
        seed = _parse(PixelsSeed, payload)
        return [
            self.state.add_pixel(
                business_id=pixel.business_id, name=pixel.name, last_fired_time=pixel.last_fired_time
            ).id
            for pixel in seed.pixels
        ]

    def _seed(self, payload: object) -> object:
        seed = _parse(BulkSeed, payload or {})
        with self.state.lock:
            start = len(self.state.businesses)
            businesses = [self.state.add_business(name=f"Business {start + n + 1}") for n in range(seed.businesses)]
            for n in range(seed.ad_accounts):
                owner = businesses[n % len(businesses)]
                self.state.add_ad_account(business_id=owner.id, name=f"{owner.name} account {n // len(businesses) + 1}")
            for n in range(seed.pixels):
                owner = businesses[n % len(businesses)]
                self.state.add_pixel(business_id=owner.id, name=f"{owner.name} pixel {n // len(businesses) + 1}")
        return BulkSeeded(
            businesses=[SeededBusiness(id=b.id, name=b.name, token=b.token) for b in businesses],
            ad_accounts=seed.ad_accounts,
            pixels=seed.pixels,
        ).model_dump()

    def _ad_account(self, method: str, account_id: str, payload: object) -> object:
        with self.state.lock:
            account = self.state.ad_accounts.get(account_id)
            if account is None:
                raise ControlError(404, f"no ad account {account_id}")
            if method == "POST":
                for name, value in _parse(AdAccountChange, payload).model_dump(exclude_none=True).items():
                    setattr(account, name, value)
            elif method != "GET":
                raise ControlError(405, f"{method} is not allowed here")
            return account.control_fields()

    def _pixel(self, method: str, pixel_id: str, payload: object) -> object:
        with self.state.lock:
            pixel = self.state.pixels.get(pixel_id)
            if pixel is None:
                raise ControlError(404, f"no pixel {pixel_id}")
            if method == "POST":
                for name, value in _parse(PixelChange, payload).model_dump(exclude_none=True).items():
                    setattr(pixel, name, value)
            elif method != "GET":
                raise ControlError(405, f"{method} is not allowed here")
            return pixel.control_fields()

    def _set_latency(self, payload: object) -> object:
        setting = _parse(LatencySetting, payload)
        with self.state.lock:
            self.state.faults.set_latency(setting.ms, setting.path_prefix)
        return {}

    def _add_fault(self, payload: object) -> object:
        setting = _parse(FaultSetting, payload)
        fault = Fault(
            kind=setting.kind,
            remaining=setting.count,
            path_prefix=setting.path_prefix,
            status=setting.status,
            code=setting.code,
            subcode=setting.subcode,
            message=setting.message,
            regain_minutes=setting.regain_minutes,
        )
        with self.state.lock:
            self.state.faults.faults.append(fault)
        return {}

    def _faults(self, _: object) -> object:
        with self.state.lock:
            return [dataclasses.asdict(fault) for fault in self.state.faults.faults]

    def _clear_faults(self, _: object) -> object:
        with self.state.lock:
            self.state.faults.faults.clear()
        return {}

    def _revoke_token(self, payload: object) -> object:
        self.state.revoke_token(_parse(TokenRevocation, payload).token)
        return {}

    def _set_usage(self, payload: object) -> object:
        setting = _parse(UsageSetting, payload)
        with self.state.lock:
            usage = self.state.faults.usage
            for name, value in setting.model_dump(exclude_none=True).items():
                setattr(usage, name, value)
        return {}
