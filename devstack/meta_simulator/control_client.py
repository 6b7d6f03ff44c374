"""`SimulatorControl`: the control API from Python, for tests and benchmarks in other processes too."""

from types import TracebackType
from typing import Self

import httpx
from pydantic import TypeAdapter

from devstack.meta_simulator.faults import FaultKind
from devstack.meta_simulator.schemas import (
    AdAccountSeed,
    BulkSeeded,
    Counters,
    FaultSetting,
    PixelSeed,
    SeededBusiness,
)

_businesses = TypeAdapter(list[SeededBusiness])
_ids = TypeAdapter(list[str])
_stored = TypeAdapter(dict[str, object])


class SimulatorControl:
    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        self._http = httpx.Client(base_url=f"{base_url.rstrip('/')}/_control", timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _request(self, method: str, path: str, body: object = None) -> bytes:
        response = self._http.request(method, path, json=body)
        response.raise_for_status()
        return response.content

    def reset(self) -> None:
        self._request("POST", "/reset")

    def counters(self) -> Counters:
        return Counters.model_validate_json(self._request("GET", "/counters"))

    def add_business(
        self,
        name: str,
        *,
        business_id: str | None = None,
        verification_status: str = "verified",
        token: str | None = None,
    ) -> SeededBusiness:
        body = {
            "businesses": [
                {"name": name, "id": business_id, "verification_status": verification_status, "token": token}
            ]
        }
        return _businesses.validate_json(self._request("POST", "/businesses", body))[0]

    def add_ad_accounts(self, accounts: list[AdAccountSeed]) -> list[str]:
        body = {"ad_accounts": [account.model_dump() for account in accounts]}
        return _ids.validate_json(self._request("POST", "/ad_accounts", body))

    def add_ad_account(self, business_id: str, name: str, **fields: object) -> str:
        return self.add_ad_accounts(
            [AdAccountSeed.model_validate({"business_id": business_id, "name": name, **fields})]
        )[0]

    def ad_account(self, account_id: str) -> dict[str, object]:
        return _stored.validate_json(self._request("GET", f"/ad_accounts/{account_id}"))

    def change_ad_account(self, account_id: str, **changes: object) -> dict[str, object]:
        return _stored.validate_json(self._request("POST", f"/ad_accounts/{account_id}", changes))

    def add_pixel(self, business_id: str, name: str, *, last_fired_time: str | None = None) -> str:
        seed = PixelSeed(business_id=business_id, name=name, last_fired_time=last_fired_time)
        return _ids.validate_json(self._request("POST", "/pixels", {"pixels": [seed.model_dump()]}))[0]

    def pixel(self, pixel_id: str) -> dict[str, object]:
        return _stored.validate_json(self._request("GET", f"/pixels/{pixel_id}"))

    def change_pixel(self, pixel_id: str, **changes: object) -> dict[str, object]:
        return _stored.validate_json(self._request("POST", f"/pixels/{pixel_id}", changes))

    def seed(self, *, businesses: int, ad_accounts: int, pixels: int = 0) -> BulkSeeded:
        body = {"businesses": businesses, "ad_accounts": ad_accounts, "pixels": pixels}
        return BulkSeeded.model_validate_json(self._request("POST", "/seed", body))

    def set_latency(self, ms: int, *, path_prefix: str | None = None) -> None:
        self._request("POST", "/latency", {"ms": ms, "path_prefix": path_prefix})

    def add_fault(
        self,
        kind: FaultKind,
        *,
        count: int = 1,
        path_prefix: str | None = None,
        status: int | None = None,
        code: int | None = None,
        subcode: int | None = None,
        message: str | None = None,
        regain_minutes: float = 5.0,
    ) -> None:
        setting = FaultSetting(
            kind=kind,
            count=count,
            path_prefix=path_prefix,
            status=status,
            code=code,
            subcode=subcode,
            message=message,
            regain_minutes=regain_minutes,
        )
        self._request("POST", "/faults", setting.model_dump(mode="json"))

    def clear_faults(self) -> None:
        self._request("DELETE", "/faults")

    def revoke_token(self, token: str) -> None:
        self._request("POST", "/tokens/revoke", {"token": token})

    def set_usage(
        self,
        *,
        app_pct: float | None = None,
        business_pct: float | None = None,
        ad_account_pct: float | None = None,
    ) -> None:
        self._request(
            "POST", "/usage", {"app_pct": app_pct, "business_pct": business_pct, "ad_account_pct": ad_account_pct}
        )
