"""The header limit for direct gRPC callers, answered like every other error.

Through Envoy a header block over MAX_REQUEST_HEADERS_KB gets 431 (REST) before it reaches the
server. A direct gRPC caller meets the server's own limit, `Settings.server_max_metadata_bytes`.
grpc core enforces its limits while it parses the headers, before any application code runs, and
answers with a message of its own that lists every header by name and size. So grpc core's limits
are set higher (`CORE_LIMIT_FACTOR` times, `core_metadata_limit`) and this step enforces ours:
RESOURCE_EXHAUSTED (REQUEST_HEADERS_TOO_LARGE) with a fixed message. A block above grpc core's
limit still gets grpc core's answer: there is no hook before it.
"""

from collections.abc import AsyncIterator, Awaitable
from typing import Any

from server.exceptions import ResourceExhaustedException
from server.interceptors.pipeline import Context, Method, Step, StreamBehavior, UnaryBehavior, call_metadata

# grpc core refuses header blocks this many times larger than ours itself.
CORE_LIMIT_FACTOR = 4
# What HTTP/2 (HPACK) counts for each header besides its name and value, as grpc core does.
ENTRY_OVERHEAD_BYTES = 32


def core_metadata_limit(limit_bytes: int) -> int:
    """grpc core's limit (soft and hard alike) when ours is `limit_bytes`."""
    return CORE_LIMIT_FACTOR * limit_bytes


class RequestHeadersTooLargeException(ResourceExhaustedException):
    reason = "REQUEST_HEADERS_TOO_LARGE"

    def __init__(self) -> None:
        super().__init__("the request headers are larger than the limit")


def metadata_size(method: Method, metadata: tuple[tuple[str, str | bytes], ...]) -> int:
    """The header block's size as grpc core counts it: the metadata the call carries, and its path
    (the other pseudo-headers and grpc's own headers are a few dozen bytes more)."""
    size = len(method.name) + ENTRY_OVERHEAD_BYTES
    for key, value in metadata:
        size += len(key) + len(value) + ENTRY_OVERHEAD_BYTES
    return size


class HeaderLimit(Step):
    """Inside ErrorMapping, which turns the refusal into the call's status."""

    def __init__(self, limit_bytes: int) -> None:
        self._limit = limit_bytes

    def _check(self, method: Method, context: Context) -> None:
        if metadata_size(method, call_metadata(context)) > self._limit:
            raise RequestHeadersTooLargeException()

    def unary(self, method: Method, behavior: UnaryBehavior) -> UnaryBehavior:
        def limited(request: Any, context: Context) -> Awaitable[Any]:
            # Checked, then the call's own coroutine handed back: no coroutine of its own per call.
            self._check(method, context)
            return behavior(request, context)

        return limited

    def server_stream(self, method: Method, behavior: StreamBehavior) -> StreamBehavior:
        def limited(request: Any, context: Context) -> AsyncIterator[Any]:
            # Checked when the stream starts (the step outside iterates it); no layer per message.
            self._check(method, context)
            return behavior(request, context)

        return limited
