"""The retry helper: what it retries, how long it waits, when it gives up."""

import random
from collections.abc import Awaitable, Callable

import pytest

from server.clients.meta.exceptions import (
    MetaApiError,
    MetaPermissionError,
    MetaRateLimitError,
    MetaTokenError,
    MetaTransientError,
)
from server.taskqueue.retry import RetriesExhausted, RetryPolicy, is_retryable, retrying


class Recorder:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def failing(errors: list[Exception], result: str = "done") -> tuple[list[int], Callable[[], Awaitable[str]]]:
    calls: list[int] = []

    async def step() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return result

    return calls, step


def test_only_errors_marked_retryable_are_retried() -> None:
    assert is_retryable(MetaTransientError("5xx"))
    assert is_retryable(MetaRateLimitError("slow down", retry_after=3))
    assert not is_retryable(MetaTokenError("expired", code=190))
    assert not is_retryable(MetaPermissionError("no", code=200))
    assert not is_retryable(MetaApiError("bad parameter", code=100))
    assert not is_retryable(RuntimeError("bug"))


def test_transient_backoff_doubles_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(max_attempts=10, max_backoff_seconds=5.0, base_backoff_seconds=1.0)
    rng = random.Random(7)  # noqa: S311 - jitter, not a secret
    error = MetaTransientError("5xx")
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0)]:
        delays = [policy.backoff(attempt, error, rng=rng) for _ in range(50)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 1  # jittered, not a fixed value
    assert all(policy.backoff(8, error, rng=rng) <= 5.0 for _ in range(50))


def test_a_rate_limit_waits_as_long_as_meta_says_up_to_the_cap() -> None:
    policy = RetryPolicy(max_attempts=5, max_backoff_seconds=120.0)
    rng = random.Random(1)  # noqa: S311 - jitter, not a secret
    delays = [policy.backoff(1, MetaRateLimitError("slow", retry_after=30), rng=rng) for _ in range(50)]
    assert all(30 <= delay <= 33 for delay in delays)
    assert policy.backoff(1, MetaRateLimitError("slow", retry_after=3600), rng=rng) == 120.0


async def test_retries_transient_errors_until_success() -> None:
    sleep = Recorder()
    calls, step = failing([MetaTransientError("a"), MetaRateLimitError("b", retry_after=0.5)])
    policy = RetryPolicy(max_attempts=3, max_backoff_seconds=10)
    assert await retrying(step, policy=policy, what="test", sleep=sleep) == "done"
    assert len(calls) == 3
    assert len(sleep.delays) == 2
    assert 0.5 <= sleep.delays[1] <= 0.55


async def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    sleep = Recorder()
    last = MetaTransientError("still down")
    calls, step = failing([MetaTransientError("down"), MetaTransientError("down"), last, MetaTransientError("x")])
    with pytest.raises(RetriesExhausted) as exhausted:
        await retrying(step, policy=RetryPolicy(max_attempts=3, max_backoff_seconds=1), what="t", sleep=sleep)
    assert exhausted.value.attempts == 3
    assert exhausted.value.last_error is last
    assert len(calls) == 3
    assert len(sleep.delays) == 2


async def test_a_permanent_error_is_raised_at_once() -> None:
    sleep = Recorder()
    calls, step = failing([MetaTransientError("down"), MetaTokenError("revoked", code=190)])
    with pytest.raises(MetaTokenError):
        await retrying(step, policy=RetryPolicy(max_attempts=5, max_backoff_seconds=1), what="t", sleep=sleep)
    assert len(calls) == 2
    assert len(sleep.delays) == 1
