"""Wrapping the behaviour of a grpc.aio method handler, which interceptors need to see results."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

import grpc

type UnaryBehavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


def wrap_unary_unary(
    handler: grpc.RpcMethodHandler[Any, Any] | None,
    wrap: Callable[[UnaryBehavior], UnaryBehavior],
    *,
    wrap_deserializer: Callable[[Callable[[bytes], Any]], Callable[[bytes], Any]] | None = None,
) -> grpc.RpcMethodHandler[Any, Any] | None:
    """Return `handler` with its unary-unary behaviour wrapped; other kinds pass through.

    Streaming handlers (health Watch, reflection) are left alone: adplane's own RPCs are unary.
    """
    if handler is None or handler.unary_unary is None:
        return handler
    # grpc's stubs type unary_unary as synchronous; on a grpc.aio server it is a coroutine function.
    behavior = cast(UnaryBehavior, handler.unary_unary)
    return grpc.unary_unary_rpc_method_handler(
        wrap(behavior),
        request_deserializer=(
            wrap_deserializer(handler.request_deserializer)
            if wrap_deserializer is not None and handler.request_deserializer is not None
            else handler.request_deserializer
        ),
        response_serializer=handler.response_serializer,
    )
