"""Turns a failed Graph response into the exception the task layer acts on."""

from collections.abc import Mapping

from pydantic import ValidationError

from server.clients.meta.exceptions import (
    MetaApiError,
    MetaError,
    MetaPermissionError,
    MetaRateLimitError,
    MetaTokenError,
    MetaTransientError,
)
from server.clients.meta.usage import retry_after_seconds
from server.clients.meta.wire import GraphErrorBody, GraphErrorDetail

# 102: session key invalid; 190: access token expired, revoked or invalid (subcode says which).
TOKEN_ERROR_CODES = frozenset({102, 190})
PERMISSION_ERROR_CODES = frozenset({10, *range(200, 300)})
# 4 app, 17 user, 32 page, 613 custom limits; 8000x: the business use case limits (80004 ads management).
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, 80000, 80001, 80002, 80003, 80004, 80005, 80006, 80008, 80009, 80014})
# Ads API throttles reported under other codes: 2446079 ads management, 1487742 too many calls on an ad account.
RATE_LIMIT_SUBCODES = frozenset({2446079, 1487742})
# 1: unknown error, 2: service temporarily unavailable.
TRANSIENT_ERROR_CODES = frozenset({1, 2})


def error_from_response(status: int, body: str, headers: Mapping[str, str]) -> MetaError:
    """The exception for a non-2xx Graph response (also for one item of a batch response)."""
    try:
        detail = GraphErrorBody.model_validate_json(body).error
    except ValidationError:
        # Not Graph's error envelope, e.g. an HTML page from a proxy in between.
        if status >= 500:
            return MetaTransientError(f"Graph API answered HTTP {status}", http_status=status)
        return MetaApiError(f"Graph API answered HTTP {status} without an error body", http_status=status)

    kind = _error_kind(detail, status)
    if kind is MetaRateLimitError:
        return MetaRateLimitError(
            detail.message,
            retry_after=retry_after_seconds(headers),
            code=detail.code,
            subcode=detail.error_subcode,
            fbtrace_id=detail.fbtrace_id,
            error_type=detail.type,
            http_status=status,
        )
    return kind(
        detail.message,
        code=detail.code,
        subcode=detail.error_subcode,
        fbtrace_id=detail.fbtrace_id,
        error_type=detail.type,
        http_status=status,
    )


def _error_kind(detail: GraphErrorDetail, status: int) -> type[MetaError]:
    # Order matters: a throttle is also flagged `is_transient`, and is told apart by its code first.
    if detail.code in TOKEN_ERROR_CODES:
        return MetaTokenError
    if detail.code in PERMISSION_ERROR_CODES:
        return MetaPermissionError
    if detail.code in RATE_LIMIT_CODES or detail.error_subcode in RATE_LIMIT_SUBCODES:
        return MetaRateLimitError
    if detail.code in TRANSIENT_ERROR_CODES or detail.is_transient or status >= 500:
        return MetaTransientError
    return MetaApiError
