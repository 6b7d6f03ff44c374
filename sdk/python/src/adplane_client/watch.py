"""Watch streams that outlive a connection: resume from the last `resume_token` after a drop.

    for event in watch(stub.WatchWorkspaceRequests, WatchWorkspaceRequestsRequest(workspace_id=...)):
        if isinstance(event, Reload):
            requests.clear()  # a new snapshot follows
            continue
        ...  # event is a WatchWorkspaceRequestsResponse

`awatch` is the same for asyncio stubs. After UNAVAILABLE (the server went away or shut down),
RESOURCE_EXHAUSTED (the client read too slowly) or a connection that broke without a status, the
method is called again with the last `resume_token` received, after a back-off with jitter (at
least the server's RetryInfo delay): no change is missed or repeated. An expired token
(RESUME_TOKEN_EXPIRED) and a stream cut inside its snapshot start over from a new snapshot, which
`Reload` announces. Any other error ends the watch.
"""

import asyncio
import random
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from adplane_client.errors import AdplaneError

RESUME_TOKEN_EXPIRED = "RESUME_TOKEN_EXPIRED"  # noqa: S105 (an ErrorInfo reason, not a secret)
INITIAL_DELAY = 0.25
MAX_DELAY = 15.0
_RESUMABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
# What gRPC reports when the connection or the HTTP/2 stream is cut (e.g. Envoy resetting the stream of
# a server process that died): INTERNAL or UNKNOWN without the ErrorInfo adplane puts on every error.
_BROKEN = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})


@dataclass(frozen=True)
class Reload:
    """Forget what the watch delivered so far: a new snapshot follows. `cause` says why (the token
    expired, or the stream broke inside its snapshot)."""

    cause: AdplaneError


class _WatchRequest(Protocol):
    resume_token: str

    def __deepcopy__(self, memo: Any = None) -> Any: ...


class OnRetry(Protocol):
    def __call__(self, error: AdplaneError, attempt: int, delay: float, /) -> None: ...


def backoff_delay(attempt: int, *, initial: float = INITIAL_DELAY, maximum: float = MAX_DELAY) -> float:
    """ "Full jitter": a random wait below the exponential ceiling, so clients cut off together do not
    come back together."""
    return random.uniform(0, min(maximum, initial * 2**attempt))  # noqa: S311 (not for secrets)


def is_resumable(error: AdplaneError) -> bool:
    """UNAVAILABLE, RESOURCE_EXHAUSTED, or a stream that broke without a status from adplane."""
    return error.status in _RESUMABLE or (error.status in _BROKEN and not error.reason)


class _Watch:
    """What the sync and asyncio loops share: the token, whether the caller holds state, attempts."""

    def __init__(self, request: _WatchRequest, *, initial: float, maximum: float, on_retry: OnRetry | None) -> None:
        self._request = request
        self.token = request.resume_token
        # Whether the caller holds state from this stream that a new snapshot must replace.
        self.delivered = bool(self.token)
        self.attempt = 0
        self._initial, self._maximum, self._on_retry = initial, maximum, on_retry

    def request(self) -> Any:
        request = self._request.__deepcopy__()
        request.resume_token = self.token
        return request

    def received(self, message: Any) -> None:
        if message.resume_token:  # snapshot parts but the last carry none
            self.token = message.resume_token
        self.delivered = True
        self.attempt = 0

    def ended(self, error: AdplaneError) -> tuple[Reload | None, float | None]:
        """What to yield, and how long to wait before watching again (None: re-raise `error`)."""
        if error.reason == RESUME_TOKEN_EXPIRED:
            self.token = ""
            reload, self.delivered = (Reload(error) if self.delivered else None), False
            return reload, 0.0
        if not is_resumable(error):
            return None, None
        reload = None
        if not self.token and self.delivered:  # cut off inside the snapshot: it starts over
            reload, self.delivered = Reload(error), False
        delay = max(backoff_delay(self.attempt, initial=self._initial, maximum=self._maximum), error.retry_delay or 0)
        self.attempt += 1
        if self._on_retry is not None:
            self._on_retry(error, self.attempt, delay)
        return reload, delay


def _ended_cleanly() -> AdplaneError:
    # Watches do not end by themselves: a stream that closed without an error is resumed like a drop.
    return AdplaneError(status=grpc.StatusCode.UNAVAILABLE, message="the watch ended without a status")


def watch[Response](
    method: Callable[[Any], Iterable[Response]],
    request: _WatchRequest,
    *,
    initial_delay: float = INITIAL_DELAY,
    max_delay: float = MAX_DELAY,
    on_retry: OnRetry | None = None,
) -> Iterator[Response | Reload]:
    """Every message of a watch (a sync stub's Watch... method), across reconnections."""
    state = _Watch(request, initial=initial_delay, maximum=max_delay, on_retry=on_retry)
    while True:
        call = method(state.request())
        try:
            for message in call:
                state.received(message)
                yield message
            error = _ended_cleanly()
        except grpc.RpcError as failure:
            error = failure if isinstance(failure, AdplaneError) else AdplaneError.from_rpc_error(failure)
        finally:
            cancel = getattr(call, "cancel", None)
            if cancel is not None:
                cancel()  # a no-op once the call has ended; stops it when the caller stopped reading
        reload, delay = state.ended(error)
        if delay is None:
            raise error
        if reload is not None:
            yield reload
        time.sleep(delay)


async def awatch[Response](
    method: Callable[[Any], AsyncIterable[Response]],
    request: _WatchRequest,
    *,
    initial_delay: float = INITIAL_DELAY,
    max_delay: float = MAX_DELAY,
    on_retry: OnRetry | None = None,
) -> AsyncIterator[Response | Reload]:
    """`watch` for asyncio stubs (`connect_async`)."""
    state = _Watch(request, initial=initial_delay, maximum=max_delay, on_retry=on_retry)
    while True:
        call = method(state.request())
        try:
            async for message in call:
                state.received(message)
                yield message
            error = _ended_cleanly()
        except grpc.RpcError as failure:
            error = failure if isinstance(failure, AdplaneError) else AdplaneError.from_rpc_error(failure)
        finally:
            cancel = getattr(call, "cancel", None)
            if cancel is not None:
                cancel()
        reload, delay = state.ended(error)
        if delay is None:
            raise error
        if reload is not None:
            yield reload
        await asyncio.sleep(delay)
