"""Request id, one log line per RPC with its outcome and duration.

Cheap per call: the request id and method are bound with two context-variable sets (each RPC
runs in a task of its own, so nothing is left to clear), the id travels back in the trailing
metadata (sent with the status, no extra write; through Envoy the response header is Envoy's),
and the outcome line is only built when INFO is enabled for `adplane.rpc`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
import structlog

from server.interceptors.pipeline import Context, Method, Step, StreamBehavior, UnaryBehavior, call_metadata

LOGGER_NAME = "adplane.rpc"
logger = structlog.get_logger(LOGGER_NAME)
_stdlib_logger = logging.getLogger(LOGGER_NAME)

REQUEST_ID_KEY = "x-request-id"


# A caller's id is used (logged, returned) only in this conservative form; any other value is
# replaced by a fresh id, so a hostile header can neither break the reply nor flood the log.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def _request_id(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    for key, value in metadata or ():
        if key == REQUEST_ID_KEY and isinstance(value, str) and REQUEST_ID_PATTERN.fullmatch(value):
            return value
    return uuid.uuid4().hex


def code_name(context: Context, *, cancelled: bool = False) -> str:
    """The call's status code as logged and counted. grpc.aio reports the code a handler set or
    aborted with (a grpc.StatusCode), and before that its own "ok" (the integer 0); anything else is
    logged as it is rather than guessed at. A call whose deadline passed, or that its client or the
    server's shutdown cancelled, ends with its handler cancelled (`cancelled`) and no code set: it did
    not succeed."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if code:
        return str(code)
    if cancelled:
        remaining = context.time_remaining()
        expired = remaining is not None and remaining <= 0
        return (grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED).name
    return grpc.StatusCode.OK.name


def _begin(method: Method, context: Context) -> float:
    """Bind request_id (Envoy's x-request-id when present) and method, and return the id to the caller."""
    request_id = _request_id(call_metadata(context))
    structlog.contextvars.bind_contextvars(request_id=request_id, method=method.name)
    context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
    return time.perf_counter()


def _end(context: Context, started: float, *, cancelled: bool = False) -> None:
    if _stdlib_logger.isEnabledFor(logging.INFO):
        code = code_name(context, cancelled=cancelled)
        logger.info("rpc", code=code, duration_ms=round((time.perf_counter() - started) * 1000, 2))


class RequestLogging(Step):
    def unary(self, method: Method, behavior: UnaryBehavior) -> UnaryBehavior:
        async def logged(request: Any, context: Context) -> Any:
            started = _begin(method, context)
            cancelled = False
            try:
                return await behavior(request, context)
            except asyncio.CancelledError:
                cancelled = True
                raise
            finally:
                _end(context, started, cancelled=cancelled)

        return logged

    def server_stream(self, method: Method, behavior: StreamBehavior) -> StreamBehavior:
        async def logged(request: Any, context: Context) -> AsyncIterator[Any]:
            started = _begin(method, context)
            cancelled = False
            try:
                async for response in behavior(request, context):
                    yield response
            except asyncio.CancelledError:
                cancelled = True
                raise
            finally:
                _end(context, started, cancelled=cancelled)

        return logged
