"""The request pipeline: small steps, composed around each method handler once, at start-up.

Every service is added to the server through `PipelineServer`, which wraps each method handler it
is given with the steps, outermost first, and registers the result. A call then runs straight
into its composed behaviour: no interceptor runs per call, no handler is built per call.

A step has one job (request id and logging, error mapping, authentication, authorization, ...).
It sees the method once, when it is composed, and decides there what its wrapper does for that
method (e.g. which access policy applies); per call it only runs that wrapper. Every step handles
unary methods and server-streaming methods (`unary` and `server_stream` are both abstract), so a
new step cannot forget streams. Client-streaming methods of adplane's own services are refused at
start-up; only infrastructure services (reflection) may have them, and they pass through.

To add a step: subclass `Step`, then put it in the list `server.app.pipeline_steps` returns.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, cast

import grpc

type Context = grpc.aio.ServicerContext[Any, Any]
type Metadata = tuple[tuple[str, str | bytes], ...]
type UnaryBehavior = Callable[[Any, Context], Awaitable[Any]]
type StreamBehavior = Callable[[Any, Context], AsyncIterator[Any]]
type Deserializer = Callable[[bytes], Any]


@dataclass(frozen=True)
class Method:
    """What a step may know about a method when it is composed."""

    # The full method name, `/adplane.v1.AccountService/GetAccount`.
    name: str
    # True for server-streaming methods (`server_stream` is applied), False for unary ones.
    response_streaming: bool

    @property
    def service(self) -> str:
        return self.name.lstrip("/").split("/", 1)[0]

    @property
    def short_name(self) -> str:
        """The method's own name, `GetAccount`."""
        return self.name.rsplit("/", 1)[-1]


# The metadata of the call this task serves, with the context it was read from.
_call_metadata: ContextVar[tuple[object, Metadata]] = ContextVar("adplane_call_metadata", default=(None, ()))


def call_metadata(context: Context) -> Metadata:
    """The call's metadata. grpc builds a new tuple on every `context.invocation_metadata()` (a cost
    that grows with the dozen headers a call through Envoy has: bench/README.md, "Measurements behind
    the code"); steps read it here, once per call."""
    owner, metadata = _call_metadata.get()
    if owner is not context:
        metadata = cast(Metadata, context.invocation_metadata() or ())
        _call_metadata.set((context, metadata))
    return metadata


class Step(ABC):
    """One concern applied around every method's behaviour."""

    @abstractmethod
    def unary(self, method: Method, behavior: UnaryBehavior) -> UnaryBehavior:
        """The behaviour of a unary method with this step around it (or `behavior` itself)."""

    @abstractmethod
    def server_stream(self, method: Method, behavior: StreamBehavior) -> StreamBehavior:
        """The behaviour of a server-streaming method with this step around it (or `behavior`)."""

    def request_deserializer(self, method: Method, deserialize: Deserializer) -> Deserializer:
        """How the request message is parsed; steps that care about unparsable bytes override it."""
        return deserialize


class UnsupportedMethodError(ValueError):
    """A method the pipeline cannot apply its steps to (client streaming)."""


def compose(
    name: str, handler: grpc.RpcMethodHandler[Any, Any], steps: Sequence[Step]
) -> grpc.RpcMethodHandler[Any, Any]:
    """`handler` with `steps` around its behaviour, the first step outermost."""
    if handler.request_streaming:
        raise UnsupportedMethodError(f"{name}: client-streaming methods cannot pass the request pipeline")
    method = Method(name=name, response_streaming=handler.response_streaming)
    deserialize = handler.request_deserializer
    if deserialize is not None:
        for step in reversed(steps):
            deserialize = step.request_deserializer(method, deserialize)
    if handler.response_streaming:
        # grpc's stubs type the behaviours as synchronous; on a grpc.aio server they are coroutine
        # functions (unary) and async generator functions or coroutines writing to the context.
        stream = _as_async_generator(cast(Callable[..., Any], handler.unary_stream))
        for step in reversed(steps):
            stream = step.server_stream(method, stream)
        return grpc.unary_stream_rpc_method_handler(
            cast(Any, stream), request_deserializer=deserialize, response_serializer=handler.response_serializer
        )
    unary = cast(UnaryBehavior, handler.unary_unary)
    for step in reversed(steps):
        unary = step.unary(method, unary)
    return grpc.unary_unary_rpc_method_handler(
        cast(Any, unary), request_deserializer=deserialize, response_serializer=handler.response_serializer
    )


def _as_async_generator(behavior: Callable[..., Any]) -> StreamBehavior:
    """A streaming behaviour as an async generator function, whichever of grpc.aio's two shapes it
    has: an async generator, or a coroutine that writes its messages with `context.write`."""
    if inspect.isasyncgenfunction(behavior):
        return cast(StreamBehavior, behavior)

    async def written(request: Any, context: Context) -> AsyncIterator[Any]:
        await behavior(request, context)
        return
        yield  # pragma: no cover - makes this an async generator that yields nothing itself

    return written


class PipelineServer:
    """Stands in for the grpc.aio server while services are added to it.

    The generated `add_*_to_server` functions hand their method handlers to
    `add_registered_method_handlers` (composed here, at once) and to `add_generic_rpc_handlers`
    (a generic handler answers a lookup with the composed handler, composing what it was not given
    beforehand once, on first use). Registered handlers take precedence in grpc.aio.
    """

    def __init__(self, server: grpc.aio.Server, steps: Sequence[Step]) -> None:
        self._server = server
        self._steps = tuple(steps)
        self._composed: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    @property
    def server(self) -> grpc.aio.Server:
        return self._server

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        composed = {name: self._compose(f"/{service_name}/{name}", h) for name, h in method_handlers.items()}
        self._server.add_registered_method_handlers(service_name, composed)

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers([_ComposedLookup(h, self._compose) for h in generic_rpc_handlers])

    def _compose(self, name: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        composed = self._composed.get(name)
        if composed is None:
            composed = self._composed[name] = compose(name, handler, self._steps)
        return composed

    def composed_methods(self) -> list[str]:
        return sorted(self._composed)


class _ComposedLookup(grpc.GenericRpcHandler):
    def __init__(
        self,
        inner: grpc.GenericRpcHandler,
        compose_once: Callable[[str, grpc.RpcMethodHandler[Any, Any]], grpc.RpcMethodHandler[Any, Any]],
    ) -> None:
        self._inner = inner
        self._compose_once = compose_once

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = self._inner.service(handler_call_details)
        return None if handler is None else self._compose_once(handler_call_details.method, handler)
