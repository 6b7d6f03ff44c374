"""The Graph API client the workers use (`IMetaClient` over httpx)."""

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence

import httpx
from pydantic import BaseModel, ValidationError

from server.clients.meta.batching import batch_form, chunked, parse_batch_response
from server.clients.meta.currencies import currency_offset, minor_to_major
from server.clients.meta.exceptions import MetaApiError, MetaError, MetaTokenError, MetaTransientError
from server.clients.meta.graph_errors import error_from_response
from server.clients.meta.models import (
    MetaAccountTask,
    MetaAdAccount,
    MetaAdAccountReads,
    MetaBusiness,
    MetaPixel,
)
from server.clients.meta.timezones import meta_timezone_id
from server.clients.meta.usage import UsageThrottle, ad_account_key, business_key
from server.clients.meta.wire import BatchItemResponse, CreatedObject, Page, SuccessResponse
from server.config import GRAPH_API_VERSION
from server.metrics import META_DURATION, META_REQUESTS

GRAPH_BASE_URL = "https://graph.facebook.com"
# Objects per page of an edge (Graph's default is 25).
PAGE_SIZE = 100
MAX_CONCURRENT_BATCHES = 4

AD_ACCOUNT_FIELDS = "id,name,currency,timezone_name,account_status,disable_reason,spend_cap,amount_spent"
BUSINESS_FIELDS = "id,name,verification_status"
PIXEL_FIELDS = "id,name,last_fired_time"

_API_VERSION = re.compile(r"v\d+\.\d+")
_NUMERIC_ID = re.compile(r"\d+")
_AD_ACCOUNT_ID = re.compile(r"act_\d+")


def _numeric_id(value: str, what: str) -> str:
    # Ids become URL path segments; anything but digits could address another object.
    if not _NUMERIC_ID.fullmatch(value):
        raise ValueError(f"{what} must be a numeric Graph id, got {value!r}")
    return value


def _ad_account_id(value: str) -> str:
    if not _AD_ACCOUNT_ID.fullmatch(value):
        raise ValueError(f"ad account ids look like 'act_<digits>', got {value!r}")
    return value


def _parse[M: BaseModel](model: type[M], body: str | Mapping[str, object]) -> M:
    try:
        if isinstance(body, str):
            return model.model_validate_json(body)
        return model.model_validate(body)
    except ValidationError as error:
        raise MetaApiError(f"unexpected Graph API response for {model.__name__}: {error}") from error


class MetaGraphClient:
    """`IMetaClient` over an `httpx.AsyncClient`, against one pinned Graph API version.

    The httpx client is owned by the caller (the composition root), which sets its timeouts and
    connection limits. The token goes in the Authorization header, so it never appears in URLs or in
    Graph's `paging.next` links. Rate-limit and transient errors are raised, not retried: the task
    layer retries with backoff. Only a dropped connection is retried, once, and only where sending the
    request twice cannot do anything twice.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str = GRAPH_BASE_URL,
        api_version: str = GRAPH_API_VERSION,
        page_size: int = PAGE_SIZE,
        max_concurrent_batches: int = MAX_CONCURRENT_BATCHES,
        throttle: UsageThrottle | None = None,
    ) -> None:
        if not _API_VERSION.fullmatch(api_version):
            raise ValueError(f"Graph API versions look like 'v26.0', got {api_version!r}")
        self._http = http
        self._root = f"{base_url.rstrip('/')}/{api_version}"
        self._page_size = page_size
        self._max_concurrent_batches = max_concurrent_batches
        self._throttle = throttle or UsageThrottle()

    # Businesses

    async def get_business(self, business_id: str, *, token: str) -> MetaBusiness:
        business_id = _numeric_id(business_id, "business_id")
        body = await self._call(
            "GET",
            business_id,
            token=token,
            params={"fields": BUSINESS_FIELDS},
            idempotent=True,
            throttle_keys=[business_key(business_id)],
        )
        return _parse(MetaBusiness, body)

    # Ad accounts

    async def create_ad_account(
        self,
        business_id: str,
        *,
        name: str,
        currency: str,
        timezone_name: str,
        token: str,
    ) -> MetaAdAccount:
        business_id = _numeric_id(business_id, "business_id")
        timezone_id = meta_timezone_id(timezone_name)
        currency_offset(currency)  # rejects a malformed code before anything is created
        body = await self._call(
            "POST",
            f"{business_id}/adaccount",
            token=token,
            form={
                "name": name,
                "currency": currency,
                "timezone_id": str(timezone_id),
                # Graph requires these three; the agency's own business advertises, with no agency or
                # partner in between.
                "end_advertiser": business_id,
                "media_agency": "NONE",
                "partner": "NONE",
            },
            idempotent=False,
            throttle_keys=[business_key(business_id)],
        )
        created = _parse(CreatedObject, body)
        account_id = created.id if created.id.startswith("act_") else f"act_{created.id}"
        return await self._get_ad_account(account_id, token=token)

    async def find_ad_accounts(self, business_id: str, *, name: str, token: str) -> list[MetaAdAccount]:
        business_id = _numeric_id(business_id, "business_id")
        # Graph filters server side; the exact comparison below keeps the result right should an
        # edge ever ignore the filter or match loosely.
        filtering = json.dumps([{"field": "name", "operator": "EQUAL", "value": name}])
        return [
            account
            async for account in self._paginate(
                f"{business_id}/owned_ad_accounts",
                MetaAdAccount,
                token=token,
                params={"fields": AD_ACCOUNT_FIELDS, "filtering": filtering},
                throttle_keys=[business_key(business_id)],
            )
            if account.name == name
        ]

    async def get_ad_accounts(self, account_ids: Sequence[str], *, token: str) -> MetaAdAccountReads:
        unique_ids = list(dict.fromkeys(_ad_account_id(account_id) for account_id in account_ids))
        reads = MetaAdAccountReads()
        if not unique_ids:
            return reads
        semaphore = asyncio.Semaphore(self._max_concurrent_batches)

        async def read(chunk: Sequence[str]) -> MetaAdAccountReads:
            async with semaphore:
                return await self._read_batch(chunk, token=token)

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(read(chunk)) for chunk in chunked(unique_ids)]
        except ExceptionGroup as failure:
            # The first failed batch call cancels the others; callers get a Meta error, not a group.
            first = failure.exceptions[0]
            if isinstance(first, MetaError):
                raise first from None
            raise
        for task in tasks:
            chunk_reads = task.result()
            reads.accounts.update(chunk_reads.accounts)
            reads.errors.update(chunk_reads.errors)
        return reads

    def list_owned_ad_accounts(self, business_id: str, *, token: str) -> AsyncIterator[MetaAdAccount]:
        business_id = _numeric_id(business_id, "business_id")
        return self._paginate(
            f"{business_id}/owned_ad_accounts",
            MetaAdAccount,
            token=token,
            params={"fields": AD_ACCOUNT_FIELDS},
            throttle_keys=[business_key(business_id)],
        )

    async def update_spend_cap(self, account_id: str, spend_cap_minor: int, *, currency: str, token: str) -> None:
        account_id = _ad_account_id(account_id)
        body = await self._call(
            "POST",
            account_id,
            token=token,
            form={"spend_cap": minor_to_major(spend_cap_minor, currency)},
            idempotent=True,
            throttle_keys=[ad_account_key(account_id)],
        )
        self._require_success(body, f"spend cap update of {account_id}")

    async def assign_user(
        self,
        account_id: str,
        *,
        user_id: str,
        tasks: Sequence[MetaAccountTask],
        token: str,
    ) -> None:
        account_id = _ad_account_id(account_id)
        if not tasks:
            raise ValueError("assign_user needs at least one task; use unassign_user to remove access")
        body = await self._call(
            "POST",
            f"{account_id}/assigned_users",
            token=token,
            form={"user": _numeric_id(user_id, "user_id"), "tasks": json.dumps(list(tasks))},
            idempotent=True,
            throttle_keys=[ad_account_key(account_id)],
        )
        self._require_success(body, f"user assignment on {account_id}")

    async def unassign_user(self, account_id: str, *, user_id: str, token: str) -> None:
        account_id = _ad_account_id(account_id)
        body = await self._call(
            "DELETE",
            f"{account_id}/assigned_users",
            token=token,
            params={"user": _numeric_id(user_id, "user_id")},
            idempotent=True,
            throttle_keys=[ad_account_key(account_id)],
        )
        self._require_success(body, f"user removal from {account_id}")

    # Pixels

    async def create_pixel(self, business_id: str, *, name: str, token: str) -> MetaPixel:
        business_id = _numeric_id(business_id, "business_id")
        body = await self._call(
            "POST",
            f"{business_id}/adspixels",
            token=token,
            form={"name": name},
            idempotent=False,
            throttle_keys=[business_key(business_id)],
        )
        return MetaPixel(id=_parse(CreatedObject, body).id, name=name)

    def list_owned_pixels(self, business_id: str, *, token: str) -> AsyncIterator[MetaPixel]:
        business_id = _numeric_id(business_id, "business_id")
        return self._paginate(
            f"{business_id}/owned_pixels",
            MetaPixel,
            token=token,
            params={"fields": PIXEL_FIELDS},
            throttle_keys=[business_key(business_id)],
        )

    async def share_pixel(self, pixel_id: str, *, account_id: str, business_id: str, token: str) -> None:
        pixel_id = _numeric_id(pixel_id, "pixel_id")
        business_id = _numeric_id(business_id, "business_id")
        body = await self._call(
            "POST",
            f"{pixel_id}/shared_accounts",
            token=token,
            # This edge takes the account's digits, without "act_".
            form={"account_id": _ad_account_id(account_id).removeprefix("act_"), "business": business_id},
            idempotent=True,
            throttle_keys=[business_key(business_id), ad_account_key(account_id)],
        )
        self._require_success(body, f"sharing pixel {pixel_id} with {account_id}")

    async def unshare_pixel(self, pixel_id: str, *, account_id: str, business_id: str, token: str) -> None:
        pixel_id = _numeric_id(pixel_id, "pixel_id")
        business_id = _numeric_id(business_id, "business_id")
        body = await self._call(
            "DELETE",
            f"{pixel_id}/shared_accounts",
            token=token,
            params={"account_id": _ad_account_id(account_id).removeprefix("act_"), "business": business_id},
            idempotent=True,
            throttle_keys=[business_key(business_id), ad_account_key(account_id)],
        )
        self._require_success(body, f"unsharing pixel {pixel_id} from {account_id}")

    # Plumbing

    async def _get_ad_account(self, account_id: str, *, token: str) -> MetaAdAccount:
        body = await self._call(
            "GET",
            account_id,
            token=token,
            params={"fields": AD_ACCOUNT_FIELDS},
            idempotent=True,
            throttle_keys=[ad_account_key(account_id)],
        )
        return _parse(MetaAdAccount, body)

    async def _read_batch(self, account_ids: Sequence[str], *, token: str) -> MetaAdAccountReads:
        body = await self._call(
            "POST",
            "",
            token=token,
            form=batch_form([f"{account_id}?fields={AD_ACCOUNT_FIELDS}" for account_id in account_ids]),
            idempotent=True,
            throttle_keys=[],
        )
        try:
            items = parse_batch_response(body)
        except ValidationError as error:
            raise MetaApiError(f"unexpected Graph batch response: {error}") from error
        if len(items) != len(account_ids):
            raise MetaApiError(f"Graph answered {len(items)} of {len(account_ids)} batched requests")
        reads = MetaAdAccountReads()
        for account_id, item in zip(account_ids, items, strict=True):
            outcome = self._batch_item_outcome(item, account_id=account_id, token=token)
            if isinstance(outcome, MetaAdAccount):
                reads.accounts[account_id] = outcome
            else:
                reads.errors[account_id] = outcome
        return reads

    def _batch_item_outcome(
        self,
        item: BatchItemResponse | None,
        *,
        account_id: str,
        token: str,
    ) -> MetaAdAccount | MetaError:
        if item is None:
            return MetaTransientError(f"Graph did not run the batched read of {account_id}")
        headers = item.header_map()
        self._throttle.after_call(token=token, keys=[ad_account_key(account_id)], headers=headers)
        if not 200 <= item.code < 300:
            error = error_from_response(item.code, item.body, headers)
            if isinstance(error, MetaTokenError):
                raise error
            return error
        try:
            return _parse(MetaAdAccount, item.body)
        except MetaApiError as error:
            return error

    async def _paginate[M: BaseModel](
        self,
        path: str,
        model: type[M],
        *,
        token: str,
        params: Mapping[str, str],
        throttle_keys: Iterable[str],
    ) -> AsyncIterator[M]:
        keys = list(throttle_keys)
        cursor: str | None = None
        while True:
            page_params = {**params, "limit": str(self._page_size)}
            if cursor is not None:
                page_params["after"] = cursor
            body = await self._call("GET", path, token=token, params=page_params, idempotent=True, throttle_keys=keys)
            page = _parse(Page, body)
            for item in page.data:
                yield _parse(model, item)
            next_cursor = page.next_cursor()
            if next_cursor is None:
                return
            if next_cursor == cursor:
                raise MetaApiError(f"Graph returned the same page cursor twice for {path}")
            cursor = next_cursor

    @staticmethod
    def _require_success(body: str, what: str) -> None:
        if not _parse(SuccessResponse, body).success:
            raise MetaApiError(f"Graph did not confirm the {what}")

    async def _call(
        self,
        method: str,
        path: str,
        *,
        token: str,
        idempotent: bool,
        throttle_keys: Iterable[str],
        params: Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
    ) -> str:
        """One Graph call; returns the body of a 2xx answer, raises the matching MetaError otherwise."""
        keys = list(throttle_keys)
        await self._throttle.before_call(token=token, keys=keys)
        request = self._http.build_request(
            method,
            f"{self._root}/{path}",
            params=params,
            data=form,
            headers={"Authorization": f"Bearer {token}"},
        )
        operation = operation_name(method, path)
        started = time.perf_counter()
        try:
            response = await self._send(request, idempotent=idempotent)
        except MetaTransientError:
            META_REQUESTS.labels(operation, "unreachable").inc()
            raise
        finally:
            META_DURATION.labels(operation).observe(time.perf_counter() - started)
        self._throttle.after_call(token=token, keys=keys, headers=response.headers)
        if response.is_success:
            META_REQUESTS.labels(operation, "ok").inc()
            return response.text
        error = error_from_response(response.status_code, response.text, response.headers)
        META_REQUESTS.labels(operation, str(error.code) if error.code else f"http_{response.status_code}").inc()
        raise error

    async def _send(self, request: httpx.Request, *, idempotent: bool) -> httpx.Response:
        try:
            return await self._http.send(request)
        except httpx.ConnectError:
            pass  # the request never left: sending it again is always safe
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as error:
            # Typically a pooled keep-alive connection the server had closed. Meta may still have
            # acted on the request, so only requests that are safe to repeat go out again.
            if not idempotent:
                raise _unreachable(error) from error
        except httpx.TransportError as error:  # timeouts and the rest
            raise _unreachable(error) from error
        try:
            return await self._http.send(request)
        except httpx.TransportError as error:
            raise _unreachable(error) from error


_GRAPH_ID = re.compile(r"(act_)?\d+")


def operation_name(method: str, path: str) -> str:
    """A Graph call's kind with its ids left out, a metric label: `POST /{id}/adaccount`."""
    template = "/".join("{id}" if _GRAPH_ID.fullmatch(part) else part for part in path.split("/"))
    return f"{method} /{template}"


def _unreachable(error: httpx.TransportError) -> MetaTransientError:
    return MetaTransientError(f"Graph API call failed: {type(error).__name__}: {error}")
