"""Error mapping: domain exceptions -> canonical gRPC codes with a google.rpc.Status.

Every error carries ErrorInfo (reason UPPER_SNAKE, domain "adplane"); validation errors add
BadRequest field violations. Anything unexpected becomes INTERNAL with a generic message and
its traceback is logged under the request id, never sent to the caller.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import asyncpg
import grpc
import sqlalchemy.exc
import structlog
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from server import exceptions as exc
from server.interceptors.pipeline import Context, Deserializer, Method, Step, StreamBehavior, UnaryBehavior
from server.outages import is_outage

logger = structlog.get_logger("adplane.errors")

ERROR_DOMAIN = "adplane"

# Most specific first: the first base class an exception is an instance of decides its code.
_CODES: list[tuple[type[exc.AdplaneException], int]] = [
    (exc.InvalidRequestException, code_pb2.INVALID_ARGUMENT),
    (exc.NotFoundException, code_pb2.NOT_FOUND),
    (exc.AlreadyExistsException, code_pb2.ALREADY_EXISTS),
    (exc.FailedPreconditionException, code_pb2.FAILED_PRECONDITION),
    (exc.ConflictException, code_pb2.ABORTED),
    (exc.UnauthenticatedException, code_pb2.UNAUTHENTICATED),
    (exc.PermissionDeniedException, code_pb2.PERMISSION_DENIED),
    (exc.ResourceExhaustedException, code_pb2.RESOURCE_EXHAUSTED),
    (exc.UnavailableException, code_pb2.UNAVAILABLE),
]

# When a caller should try again after an outage (PostgreSQL restarts in seconds; Redis in less).
OUTAGE_RETRY_AFTER = dt.timedelta(seconds=1)


def _unavailable() -> status_pb2.Status:
    """The database or Redis is out of reach: UNAVAILABLE with RetryInfo."""
    unavailable = exc.UnavailableException("a dependency is unavailable; retry later", retry_after=OUTAGE_RETRY_AFTER)
    return to_status(unavailable)


def _is_refused_input(error: Exception) -> bool:
    if isinstance(error, asyncpg.PostgresError):  # a direct unit of work's statement
        return str(error.sqlstate or "").startswith("22")
    if not isinstance(error, sqlalchemy.exc.DBAPIError) or error.orig is None:
        return False
    sqlstate = getattr(error.orig, "sqlstate", None) or getattr(error.orig.__cause__, "sqlstate", None)
    return str(sqlstate or "").startswith("22")


def _refused_input() -> status_pb2.Status:
    return to_status(
        exc.InvalidRequestException(
            [exc.FieldViolation(field="", description="a value is not acceptable text or number")],
            message="the request contains a value that cannot be stored",
            reason="INVALID_VALUE",
        )
    )


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def to_status(error: exc.AdplaneException) -> status_pb2.Status:
    code = next((c for base, c in _CODES if isinstance(error, base)), code_pb2.UNKNOWN)
    details = [_pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata))]
    if isinstance(error, exc.InvalidRequestException):
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description, reason=v.reason
                        )
                        for v in error.violations
                    ]
                )
            )
        )
    if isinstance(error, (exc.ResourceExhaustedException, exc.UnavailableException)) and error.retry_after is not None:
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromTimedelta(error.retry_after)
        details.append(_pack(retry))
    return status_pb2.Status(code=code, message=error.message, details=details)


# HTTP's name for RetryInfo (RFC 9110 10.2.3): whole seconds. Sent as metadata with every status that
# carries a RetryInfo; a refusal is trailers-only, so Envoy's transcoder makes it a response header of
# the 429 or 503 (gRPC callers read the RetryInfo).
RETRY_AFTER_KEY = "retry-after"


def retry_after_seconds(status: status_pb2.Status) -> int | None:
    """The RetryInfo of `status` in whole seconds, rounded up (at least 1); None without one."""
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            seconds: float = retry.retry_delay.ToTimedelta().total_seconds()
            return max(1, math.ceil(seconds))
    return None


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], status: status_pb2.Status) -> NoReturn:
    grpc_status = rpc_status.to_status(status)
    # Keep what earlier steps put in the trailers (the request id) next to the status details.
    trailing = (*(context.trailing_metadata() or ()), *grpc_status.trailing_metadata)
    retry_after = retry_after_seconds(status)
    if retry_after is not None:
        trailing = (*trailing, (RETRY_AFTER_KEY, str(retry_after)))
    await context.abort(grpc_status.code, grpc_status.details, trailing)
    raise AssertionError("context.abort returned")  # pragma: no cover - abort always raises


@dataclass(frozen=True)
class _Malformed:
    """Stands in for a request whose bytes did not parse, so the error becomes INVALID_ARGUMENT
    here instead of grpc's UNKNOWN with the parser's message."""

    error: str


def _tolerant(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as error:
            return _Malformed(type(error).__name__)

    return parse


def _malformed_request() -> status_pb2.Status:
    return to_status(
        exc.InvalidRequestException(
            [
                exc.FieldViolation(
                    field="", description="the request is not a valid message", reason="MALFORMED_REQUEST"
                )
            ],
            message="the request message could not be parsed",
            reason="MALFORMED_REQUEST",
        )
    )


def status_for(error: Exception) -> status_pb2.Status:
    """The google.rpc.Status a caller gets for `error` (ErrorMapping logs it; this does not)."""
    if isinstance(error, exc.AdplaneException):
        return to_status(error)
    if is_outage(error):
        return _unavailable()
    if _is_refused_input(error):
        return _refused_input()
    return status_pb2.Status(
        code=code_pb2.INTERNAL,
        message="internal error",
        details=[_pack(error_details_pb2.ErrorInfo(reason="INTERNAL", domain=ERROR_DOMAIN))],
    )


def _log(error: Exception) -> None:
    if isinstance(error, exc.AdplaneException):
        return
    if is_outage(error):
        # The log collapses the same error repeated: an outage writes one traceback and a count
        # per interval.
        logger.warning("dependency unavailable", exc_info=error)
    elif _is_refused_input(error):
        # Class 22 (data exception): a value the database refuses, e.g. a NUL in
        # text that validation let through. The caller's input, not our failure.
        logger.warning("input refused by the database", exc_info=error)
    else:
        logger.error("unhandled error", exc_info=error)


async def _map_error(context: Context, error: Exception) -> NoReturn:
    """Abort the call with the status `error` stands for; AbortError (a status chosen already) passes."""
    if isinstance(error, grpc.aio.AbortError):
        raise error
    _log(error)
    await abort_with(context, status_for(error))


class ErrorMapping(Step):
    """Outside authentication and authorization, so their refusals become the same google.rpc.Status
    as every other error; unparsable request bytes become INVALID_ARGUMENT here."""

    def request_deserializer(self, method: Method, deserialize: Deserializer) -> Deserializer:
        return _tolerant(deserialize)

    def unary(self, method: Method, behavior: UnaryBehavior) -> UnaryBehavior:
        async def mapped(request: Any, context: Context) -> Any:
            if isinstance(request, _Malformed):
                await abort_with(context, _malformed_request())
            try:
                return await behavior(request, context)
            except Exception as error:
                await _map_error(context, error)

        return mapped

    def server_stream(self, method: Method, behavior: StreamBehavior) -> StreamBehavior:
        async def mapped(request: Any, context: Context) -> AsyncIterator[Any]:
            if isinstance(request, _Malformed):
                await abort_with(context, _malformed_request())
            try:
                async for response in behavior(request, context):
                    yield response
            except Exception as error:
                await _map_error(context, error)

        return mapped
