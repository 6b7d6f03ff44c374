"""Request id, one log line per RPC with its outcome and duration."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import structlog

from server.interceptors.handlers import UnaryBehavior, wrap_unary_unary

logger = structlog.get_logger("adplane.rpc")

REQUEST_ID_KEY = "x-request-id"


def _request_id(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str:
    for key, value in metadata or ():
        if key == REQUEST_ID_KEY and isinstance(value, str) and 0 < len(value) <= 128:
            return value
    return uuid.uuid4().hex


class RequestLoggingInterceptor(grpc.aio.ServerInterceptor):
    """Binds request_id (Envoy's x-request-id when present) and method to the log context."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        request_id = _request_id(handler_call_details.invocation_metadata)
        handler = await continuation(handler_call_details)

        def wrap(behavior: UnaryBehavior) -> UnaryBehavior:
            async def logged(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                structlog.contextvars.clear_contextvars()
                structlog.contextvars.bind_contextvars(request_id=request_id, method=method)
                await context.send_initial_metadata(((REQUEST_ID_KEY, request_id),))
                started = time.perf_counter()
                try:
                    return await behavior(request, context)
                finally:
                    code = context.code() or grpc.StatusCode.OK
                    if not isinstance(code, grpc.StatusCode):
                        code = grpc.StatusCode(code) if code in grpc.StatusCode else code
                    logger.info(
                        "rpc",
                        code=getattr(code, "name", str(code)),
                        duration_ms=round((time.perf_counter() - started) * 1000, 2),
                    )

            return logged

        return wrap_unary_unary(handler, wrap)
