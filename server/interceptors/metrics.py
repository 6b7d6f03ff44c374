"""RPC metrics: started, handled by code, duration and in flight, per method (`server.metrics`).

The label children of each method are bound once, when the step is composed around it, so a call
costs a few increments and no label lookup. The code is read from the context after the behaviour
returned or raised: this step sits outside error mapping, which has set the final code by then.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import Counter

from server.interceptors.pipeline import Context, Method, Step, StreamBehavior, UnaryBehavior
from server.interceptors.request_logging import code_name
from server.metrics import RPC_DURATION, RPCS_HANDLED, RPCS_IN_FLIGHT, RPCS_STARTED


class _MethodMetrics:
    def __init__(self, method: Method) -> None:
        labels = ("server_stream" if method.response_streaming else "unary", method.service, method.short_name)
        self._labels = labels
        self.started = RPCS_STARTED.labels(*labels)
        self.in_flight = RPCS_IN_FLIGHT.labels(*labels)
        self.duration = RPC_DURATION.labels(*labels)
        self._handled: dict[str, Counter] = {}

    def begin(self) -> float:
        self.started.inc()
        self.in_flight.inc()
        return time.perf_counter()

    def end(self, context: Context, started: float, *, cancelled: bool = False) -> None:
        self.duration.observe(time.perf_counter() - started)
        self.in_flight.dec()
        code = code_name(context, cancelled=cancelled)
        handled = self._handled.get(code)
        if handled is None:
            handled = self._handled[code] = RPCS_HANDLED.labels(*self._labels, code)
        handled.inc()


class RpcMetrics(Step):
    def unary(self, method: Method, behavior: UnaryBehavior) -> UnaryBehavior:
        metrics = _MethodMetrics(method)

        async def measured(request: Any, context: Context) -> Any:
            started = metrics.begin()
            cancelled = False
            try:
                return await behavior(request, context)
            except asyncio.CancelledError:
                cancelled = True
                raise
            finally:
                metrics.end(context, started, cancelled=cancelled)

        return measured

    def server_stream(self, method: Method, behavior: StreamBehavior) -> StreamBehavior:
        metrics = _MethodMetrics(method)

        async def measured(request: Any, context: Context) -> AsyncIterator[Any]:
            started = metrics.begin()
            cancelled = False
            try:
                async for response in behavior(request, context):
                    yield response
            except asyncio.CancelledError:
                cancelled = True
                raise
            finally:
                metrics.end(context, started, cancelled=cancelled)

        return measured
