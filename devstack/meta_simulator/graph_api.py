"""The Graph API endpoints the client uses, answered from `SimulatorState`.

Requests and answers follow Graph: a version prefix (`/v26.0/...`), the token in the Authorization
header (`Bearer` or `OAuth`) or an `access_token` parameter, `fields` choosing what a read returns,
money as numeric strings, cursor paging (`paging.cursors.after`, and `paging.next` on every page but
the last), `{"success": true}` for edge writes, Graph's error envelope, and usage headers on every answer.

Endpoints (`{business}`, `{act}`, `{pixel}` are ids):
- `GET /{business}`, `GET /{act}`, `GET /{pixel}` with `fields`;
- `POST /{business}/adaccount` (name, currency, timezone_id, end_advertiser, media_agency, partner);
- `POST /{act}` (`spend_cap` in whole currency units, `name`);
- `GET /{business}/owned_ad_accounts` with `fields`, `limit`, `after` and
  `filtering=[{"field": "name", "operator": "EQUAL" | "CONTAIN", "value": "..."}]`;
- `GET|POST|DELETE /{act}/assigned_users` (`user`, `tasks` as a JSON list; GET needs `business`);
- `POST /{business}/adspixels` (name), `GET /{business}/owned_pixels`;
- `GET|POST|DELETE /{pixel}/shared_accounts` (`account_id` digits, `business`);
- `POST /` with `batch=[{"method", "relative_url", "body"?}, ...]` (at most 50).
A token acts for its own business only: reading another business's object answers as if it did not
exist (code 100, subcode 33), writing to it answers code 200.
"""

import base64
import binascii
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit

from devstack.meta_simulator.errors import (
    GraphError,
    invalid_parameter,
    invalid_token,
    missing_token,
    permission_denied,
    revoked_token,
    unknown_object,
    unknown_path,
)
from devstack.meta_simulator.faults import FaultKind, usage_headers
from devstack.meta_simulator.state import (
    ACCOUNT_TASKS,
    TIMEZONE_NAMES,
    AdAccount,
    Business,
    Pixel,
    SimulatorState,
    major_to_minor,
)

MAX_BATCH_SIZE = 50
DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 500
_VERSION = re.compile(r"v\d+\.\d+")
_DIGITS = re.compile(r"\d+")

AD_ACCOUNT_FIELDS = frozenset(
    {
        "id",
        "account_id",
        "name",
        "currency",
        "timezone_id",
        "timezone_name",
        "account_status",
        "disable_reason",
        "spend_cap",
        "amount_spent",
        "business",
    }
)
BUSINESS_FIELDS = frozenset({"id", "name", "verification_status"})
PIXEL_FIELDS = frozenset({"id", "name", "last_fired_time", "owner_business"})
ASSIGNED_USER_FIELDS = frozenset({"id", "tasks"})


@dataclass(frozen=True)
class GraphRequest:
    method: str
    path: str  # "/v26.0/act_1/assigned_users"
    params: dict[str, str]  # query string and form body together, as Graph reads them
    token: str | None
    host: str  # for the absolute `paging.next` links
    in_batch: bool = False


@dataclass
class GraphReply:
    status: int
    body: object
    headers: dict[str, str] = field(default_factory=dict)
    disconnect: bool = False


# The Graph API versions Meta serves as this simulator was last brought up to date; calls to any other
# fail as Meta fails calls to a retired version.
SERVED_VERSIONS = frozenset({"v25.0", "v26.0"})


def _split_path(path: str) -> tuple[str, list[str]]:
    segments = [segment for segment in path.split("/") if segment]
    if not segments or not _VERSION.fullmatch(segments[0]):
        raise GraphError(400, 2500, f"Unknown path components: {path} (a version such as /v26.0 is required)")
    if segments[0] not in SERVED_VERSIONS:
        raise GraphError(400, 2635, f"(#2635) You are calling a deprecated version of the Graph API: {segments[0]}")
    return segments[0], segments[1:]


def _encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"position:{position}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, position = text.partition(":")
        if kind != "position":
            raise ValueError(cursor)
        return int(position)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid_parameter("Invalid cursor") from None


def _select(
    obj: dict[str, object], fields_param: str | None, *, known: frozenset[str], default: Sequence[str]
) -> dict[str, object]:
    requested = [name for name in fields_param.split(",") if name] if fields_param else list(default)
    for name in requested:
        if name not in known:
            raise invalid_parameter(f"Tried accessing nonexisting field ({name})")
    selected: dict[str, object] = {"id": obj["id"]}
    selected.update({name: obj[name] for name in requested if name in obj})
    return selected


def _required(params: dict[str, str], name: str) -> str:
    value = params.get(name, "")
    if not value:
        raise invalid_parameter(f"The parameter {name} is required")
    return value


class GraphApi:
    def __init__(self, state: SimulatorState) -> None:
        self.state = state

    def handle(self, request: GraphRequest) -> GraphReply:
        if request.in_batch:
            return self._answer(request)
        calls = self.state.calls
        with self.state.lock:
            calls.in_flight += 1
            calls.peak_in_flight = max(calls.peak_in_flight, calls.in_flight)
        try:
            return self._answer(request)
        finally:
            with self.state.lock:
                calls.in_flight -= 1

    def _answer(self, request: GraphRequest) -> GraphReply:
        try:
            version, segments = _split_path(request.path)
        except GraphError as error:
            return _error_reply(error, {})
        state = self.state
        with state.lock:
            self._count(request, version, segments)
            fault = state.faults.take(request.path, in_batch=request.in_batch)
            delay_ms = 0 if request.in_batch else state.faults.latency_ms(request.path)
            caller = state.business_by_token.get(request.token or "")
            addressed_account = segments[0] if segments and segments[0].startswith("act_") else None
            headers = usage_headers(state.faults.usage, business_id=caller, ad_account_id=addressed_account)
        if delay_ms:
            time.sleep(delay_ms / 1000)  # a thread per connection: other calls go on meanwhile
        if fault is not None:
            if fault.kind is FaultKind.DISCONNECT:
                return GraphReply(0, None, disconnect=True)
            return _error_reply(fault.error(business_id=caller), headers)
        try:
            with state.lock:
                business_id = self._authenticate(request.token)
            if not segments and request.method == "POST":
                body = self._batch(request, version)
            else:
                with state.lock:
                    body = self._route(request, business_id, segments)
        except GraphError as error:
            return _error_reply(error, headers)
        return GraphReply(200, body, headers)

    def _count(self, request: GraphRequest, version: str, segments: list[str]) -> None:
        calls = self.state.calls
        if request.in_batch:
            calls.batched_requests += 1
        else:
            calls.http_calls += 1
            calls.by_version[version] += 1
            if not segments and request.method == "POST":
                calls.batch_calls += 1
                return
        calls.by_route[f"{request.method} {self._route_template(segments)}"] += 1

    def _route_template(self, segments: list[str]) -> str:
        if not segments:
            return "/"
        head = segments[0]
        if head.startswith("act_"):
            name = "{ad_account_id}"
        elif head in self.state.businesses:
            name = "{business_id}"
        elif head in self.state.pixels:
            name = "{pixel_id}"
        else:
            name = "{id}"
        return "/" + "/".join([name, *segments[1:]])

    def _authenticate(self, token: str | None) -> str:
        if not token:
            raise missing_token()
        if token in self.state.revoked_tokens:
            raise revoked_token()
        business_id = self.state.business_by_token.get(token)
        if business_id is None:
            raise invalid_token()
        return business_id

    def _route(self, request: GraphRequest, caller: str, segments: list[str]) -> object:
        method = request.method
        routes: dict[tuple[str, str], Callable[[GraphRequest, str, str], object]] = {
            ("GET", ""): self._get_node,
            ("POST", ""): self._update_node,
            ("POST", "adaccount"): self._create_ad_account,
            ("GET", "owned_ad_accounts"): self._list_owned_ad_accounts,
            ("GET", "assigned_users"): self._list_assigned_users,
            ("POST", "assigned_users"): self._assign_user,
            ("DELETE", "assigned_users"): self._unassign_user,
            ("POST", "adspixels"): self._create_pixel,
            ("GET", "owned_pixels"): self._list_owned_pixels,
            ("GET", "shared_accounts"): self._list_shared_accounts,
            ("POST", "shared_accounts"): self._share_pixel,
            ("DELETE", "shared_accounts"): self._unshare_pixel,
        }
        if not segments or len(segments) > 2:
            raise unknown_path(request.path)
        node_id, edge = segments[0], (segments[1] if len(segments) == 2 else "")
        handler = routes.get((method, edge))
        if handler is None:
            if edge and any(known_edge == edge for _, known_edge in routes):
                raise unknown_object(node_id, method)
            raise unknown_path(request.path)
        return handler(request, caller, node_id)

    # Lookups: another business's object reads as missing and refuses writes.

    def _own_business(self, business_id: str, caller: str, method: str) -> Business:
        business = self.state.businesses.get(business_id)
        if business is None:
            raise unknown_object(business_id, method)
        if business_id != caller:
            raise permission_denied()
        return business

    def _ad_account(self, account_id: str, caller: str, method: str) -> AdAccount:
        account = self.state.ad_accounts.get(account_id)
        if account is None or (account.business_id != caller and method == "GET"):
            raise unknown_object(account_id, method)
        if account.business_id != caller:
            raise permission_denied()
        return account

    def _pixel(self, pixel_id: str, caller: str, method: str) -> Pixel:
        pixel = self.state.pixels.get(pixel_id)
        if pixel is None or (pixel.business_id != caller and method == "GET"):
            raise unknown_object(pixel_id, method)
        if pixel.business_id != caller:
            raise permission_denied()
        return pixel

    # Nodes

    def _get_node(self, request: GraphRequest, caller: str, node_id: str) -> object:
        fields = request.params.get("fields")
        if node_id.startswith("act_"):
            account = self._ad_account(node_id, caller, "GET")
            return _select(account.graph_fields(), fields, known=AD_ACCOUNT_FIELDS, default=("id", "account_id"))
        if node_id in self.state.businesses:
            if node_id != caller:
                raise unknown_object(node_id, "GET")
            business = self.state.businesses[node_id]
            return _select(business.graph_fields(), fields, known=BUSINESS_FIELDS, default=("id", "name"))
        pixel = self._pixel(node_id, caller, "GET")
        return _select(pixel.graph_fields(), fields, known=PIXEL_FIELDS, default=("id", "name"))

    def _update_node(self, request: GraphRequest, caller: str, node_id: str) -> object:
        if not node_id.startswith("act_"):
            raise unknown_object(node_id, "POST")
        account = self._ad_account(node_id, caller, "POST")
        if "spend_cap" in request.params:
            spend_cap = major_to_minor(request.params["spend_cap"], account.currency)
            if spend_cap is None:
                raise invalid_parameter("Invalid parameter: spend_cap must be a non-negative amount")
            account.spend_cap = spend_cap
        if "name" in request.params:
            account.name = _required(request.params, "name")
        return {"success": True}

    # Ad accounts

    def _create_ad_account(self, request: GraphRequest, caller: str, node_id: str) -> object:
        business = self._own_business(node_id, caller, "POST")
        params = request.params
        name = _required(params, "name")
        currency = _required(params, "currency")
        if not re.fullmatch(r"[A-Z]{3}", currency):
            raise invalid_parameter("Invalid parameter: currency")
        timezone_id = _required(params, "timezone_id")
        if not _DIGITS.fullmatch(timezone_id) or int(timezone_id) not in TIMEZONE_NAMES:
            raise invalid_parameter("Invalid parameter: timezone_id")
        for required in ("end_advertiser", "media_agency", "partner"):
            _required(params, required)
        account = self.state.add_ad_account(
            business_id=business.id, name=name, currency=currency, timezone_id=int(timezone_id)
        )
        return {
            "id": account.id,
            "account_id": account.account_id,
            "business_id": business.id,
            "end_advertiser_id": params["end_advertiser"],
            "media_agency_id": params["media_agency"],
            "partner_id": params["partner"],
        }

    def _list_owned_ad_accounts(self, request: GraphRequest, caller: str, node_id: str) -> object:
        business = self._own_business(node_id, caller, "GET")
        accounts = [self.state.ad_accounts[account_id] for account_id in self.state.owned_ad_accounts[business.id]]
        accounts = _filter_by_name(accounts, request.params.get("filtering"))
        fields = request.params.get("fields")
        data = [
            _select(account.graph_fields(), fields, known=AD_ACCOUNT_FIELDS, default=("id", "account_id"))
            for account in accounts
        ]
        return _page(request, data)

    def _list_assigned_users(self, request: GraphRequest, caller: str, node_id: str) -> object:
        account = self._ad_account(node_id, caller, "GET")
        self._own_business(_required(request.params, "business"), caller, "GET")
        fields = request.params.get("fields")
        data = [
            _select({"id": user, "tasks": tasks}, fields, known=ASSIGNED_USER_FIELDS, default=("id", "tasks"))
            for user, tasks in account.assigned_users.items()
        ]
        return _page(request, data)

    def _assign_user(self, request: GraphRequest, caller: str, node_id: str) -> object:
        account = self._ad_account(node_id, caller, "POST")
        user = _required(request.params, "user")
        if not _DIGITS.fullmatch(user):
            raise invalid_parameter("Invalid parameter: user")
        try:
            tasks = json.loads(_required(request.params, "tasks"))
        except json.JSONDecodeError:
            raise invalid_parameter("Invalid parameter: tasks must be a JSON list") from None
        if not isinstance(tasks, list) or not tasks or not all(task in ACCOUNT_TASKS for task in tasks):
            raise invalid_parameter(f"Invalid parameter: tasks must be a non-empty list of {sorted(ACCOUNT_TASKS)}")
        account.assigned_users[user] = list(dict.fromkeys(tasks))
        return {"success": True}

    def _unassign_user(self, request: GraphRequest, caller: str, node_id: str) -> object:
        account = self._ad_account(node_id, caller, "DELETE")
        account.assigned_users.pop(_required(request.params, "user"), None)
        return {"success": True}

    # Pixels

    def _create_pixel(self, request: GraphRequest, caller: str, node_id: str) -> object:
        business = self._own_business(node_id, caller, "POST")
        pixel = self.state.add_pixel(business_id=business.id, name=_required(request.params, "name"))
        return {"id": pixel.id}

    def _list_owned_pixels(self, request: GraphRequest, caller: str, node_id: str) -> object:
        business = self._own_business(node_id, caller, "GET")
        fields = request.params.get("fields")
        data = [
            _select(self.state.pixels[pixel_id].graph_fields(), fields, known=PIXEL_FIELDS, default=("id", "name"))
            for pixel_id in self.state.owned_pixels[business.id]
        ]
        return _page(request, data)

    def _list_shared_accounts(self, request: GraphRequest, caller: str, node_id: str) -> object:
        pixel = self._pixel(node_id, caller, "GET")
        data: list[dict[str, object]] = [
            {"id": f"act_{account_id}", "account_id": account_id} for account_id in pixel.shared_account_ids
        ]
        return _page(request, data)

    def _share_target(self, request: GraphRequest, caller: str, node_id: str, method: str) -> tuple[Pixel, str]:
        pixel = self._pixel(node_id, caller, method)
        account_id = _required(request.params, "account_id")
        if not _DIGITS.fullmatch(account_id) or f"act_{account_id}" not in self.state.ad_accounts:
            raise invalid_parameter("Invalid parameter: account_id must be an existing ad account id without act_")
        if _required(request.params, "business") != pixel.business_id:
            raise permission_denied()
        return pixel, account_id

    def _share_pixel(self, request: GraphRequest, caller: str, node_id: str) -> object:
        pixel, account_id = self._share_target(request, caller, node_id, "POST")
        if account_id not in pixel.shared_account_ids:
            pixel.shared_account_ids.append(account_id)
        return {"success": True}

    def _unshare_pixel(self, request: GraphRequest, caller: str, node_id: str) -> object:
        pixel, account_id = self._share_target(request, caller, node_id, "DELETE")
        if account_id in pixel.shared_account_ids:
            pixel.shared_account_ids.remove(account_id)
        return {"success": True}

    # Batch

    def _batch(self, request: GraphRequest, version: str) -> object:
        try:
            entries = json.loads(_required(request.params, "batch"))
        except json.JSONDecodeError:
            raise invalid_parameter("The parameter batch must be a JSON array") from None
        if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
            raise invalid_parameter("The parameter batch must be a JSON array of requests")
        if len(entries) > MAX_BATCH_SIZE:
            raise invalid_parameter(f"Too many requests in batch message. Maximum batch size is {MAX_BATCH_SIZE}")
        include_headers = request.params.get("include_headers", "true") != "false"
        results: list[object] = []
        for entry in entries:
            reply = self.handle(self._batched_request(request, version, entry))
            item: dict[str, object] = {"code": reply.status, "body": json.dumps(reply.body)}
            if include_headers:
                item["headers"] = [{"name": name, "value": value} for name, value in reply.headers.items()]
            results.append(item)
        return results

    @staticmethod
    def _batched_request(request: GraphRequest, version: str, entry: dict[str, object]) -> GraphRequest:
        relative_url = entry.get("relative_url")
        if not isinstance(relative_url, str):
            raise invalid_parameter("Each batched request needs a relative_url")
        url = urlsplit(relative_url)
        path = url.path.lstrip("/")
        if not _VERSION.match(path):
            path = f"{version}/{path}"
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        body = entry.get("body")
        if isinstance(body, str):
            params.update(parse_qsl(body, keep_blank_values=True))
        method = entry.get("method", "GET")
        return GraphRequest(
            method=str(method).upper(),
            path=f"/{path}",
            params=params,
            token=request.token,
            host=request.host,
            in_batch=True,
        )


def _filter_by_name(accounts: list[AdAccount], filtering: str | None) -> list[AdAccount]:
    if not filtering:
        return accounts
    try:
        rules = json.loads(filtering)
    except json.JSONDecodeError:
        raise invalid_parameter("Invalid parameter: filtering must be a JSON array") from None
    if not isinstance(rules, list):
        raise invalid_parameter("Invalid parameter: filtering must be a JSON array")
    for rule in rules:
        if not isinstance(rule, dict) or rule.get("field") != "name" or not isinstance(rule.get("value"), str):
            raise invalid_parameter("Filtering field is invalid: only name can be filtered on")
        value = rule["value"]
        match rule.get("operator"):
            case "EQUAL":
                accounts = [account for account in accounts if account.name == value]
            case "CONTAIN":
                accounts = [account for account in accounts if value.lower() in account.name.lower()]
            case operator:
                raise invalid_parameter(f"Filtering operator {operator} is not supported")
    return accounts


def _page(request: GraphRequest, data: list[dict[str, object]]) -> dict[str, object]:
    params = request.params
    try:
        limit = int(params.get("limit", DEFAULT_PAGE_SIZE))
    except ValueError:
        raise invalid_parameter("Invalid parameter: limit") from None
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    start = _decode_cursor(params["after"]) + 1 if "after" in params else 0
    page = data[start : start + limit]
    body: dict[str, object] = {"data": page}
    if page:
        last = start + len(page) - 1
        paging: dict[str, object] = {"cursors": {"before": _encode_cursor(start), "after": _encode_cursor(last)}}
        if last + 1 < len(data):
            query = {name: value for name, value in params.items() if name != "access_token"}
            query["after"] = _encode_cursor(last)
            paging["next"] = f"http://{request.host}{request.path}?{urlencode(query)}"
        body["paging"] = paging
    return body


def _error_reply(error: GraphError, headers: dict[str, str]) -> GraphReply:
    return GraphReply(error.status, error.body(), {**headers, **error.headers})
