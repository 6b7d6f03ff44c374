"""Which Graph errors the task layer retries, and which it gives up on."""

import json

import pytest

from server.clients.meta import (
    MetaApiError,
    MetaError,
    MetaPermissionError,
    MetaRateLimitError,
    MetaTokenError,
    MetaTransientError,
)
from server.clients.meta.graph_errors import error_from_response


def _body(code: int, *, subcode: int | None = None, is_transient: bool = False) -> str:
    error: dict[str, object] = {"message": "boom", "type": "OAuthException", "code": code, "fbtrace_id": "AbC"}
    if subcode is not None:
        error["error_subcode"] = subcode
    if is_transient:
        error["is_transient"] = True
    return json.dumps({"error": error})


@pytest.mark.parametrize(
    ("status", "code", "subcode", "kind"),
    [
        (400, 190, 463, MetaTokenError),
        (400, 102, None, MetaTokenError),
        (400, 10, None, MetaPermissionError),
        (403, 200, None, MetaPermissionError),
        (400, 294, None, MetaPermissionError),
        (400, 4, None, MetaRateLimitError),
        (400, 17, 2446079, MetaRateLimitError),
        (400, 32, None, MetaRateLimitError),
        (400, 613, None, MetaRateLimitError),
        (400, 80004, 2446079, MetaRateLimitError),
        (400, 80004, None, MetaRateLimitError),
        (400, 100, 1487742, MetaRateLimitError),
        (500, 1, None, MetaTransientError),
        (503, 2, None, MetaTransientError),
        (500, 100, None, MetaTransientError),
        (400, 100, 33, MetaApiError),
        (400, 368, None, MetaApiError),
    ],
)
def test_graph_error_codes_map_to_exceptions(
    status: int, code: int, subcode: int | None, kind: type[MetaError]
) -> None:
    error = error_from_response(status, _body(code, subcode=subcode), {})

    assert type(error) is kind
    assert (error.code, error.subcode, error.fbtrace_id, error.http_status) == (code, subcode, "AbC", status)
    assert error.retryable is (kind in (MetaRateLimitError, MetaTransientError))


def test_graph_flagged_transient_errors_are_retryable() -> None:
    assert isinstance(error_from_response(400, _body(100, is_transient=True), {}), MetaTransientError)


def test_rate_limit_takes_its_wait_from_the_ad_account_header() -> None:
    headers = {"x-ad-account-usage": json.dumps({"acc_id_util_pct": 100, "reset_time_duration": 90})}

    error = error_from_response(400, _body(80004), headers)

    assert isinstance(error, MetaRateLimitError)
    assert error.retry_after == 90


@pytest.mark.parametrize(("status", "kind"), [(502, MetaTransientError), (404, MetaApiError)])
def test_answers_without_graph_envelope(status: int, kind: type[MetaError]) -> None:
    error = error_from_response(status, "<html>Bad Gateway</html>", {})

    assert type(error) is kind
    assert error.http_status == status
