"""Retrying a step of a task that failed for a transient reason.

Tasks call Meta; Meta throttles and has outages. The client never loops (see
`server.clients.meta.exceptions`); a task wraps one step in `retrying(...)`, which runs it again while
it fails with an error marked `retryable` (`MetaRateLimitError`, `MetaTransientError`, or any
exception class with a true `retryable` attribute), waiting in between:

- after a rate limit, as long as Meta said (`retry_after`), plus a little jitter so that the tasks
  throttled together do not all come back in the same instant;
- after any other transient error, an exponential back-off with jitter (1 s, 2 s, 4 s ... each drawn
  from the upper half of its range);
- never longer than `task_max_backoff_seconds`, and at most `task_max_attempts` runs in all.

A non-retryable error propagates at once; when the attempts run out, or Meta asks for a wait longer
than `task_max_backoff_seconds` (a long throttle is not slept through inside one task run: the
caller records when to come back instead), `RetriesExhausted` carries the last error and how long
Meta asked to wait. The step must be safe to run again (every task step is idempotent anyway).
"""

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from server.config import Settings
from server.metrics import META_THROTTLED_SECONDS, STEP_RETRIES

logger = structlog.get_logger("adplane.tasks.retry")

type Sleep = Callable[[float], Awaitable[None]]

# The first back-off after a transient error; it doubles with each attempt.
BASE_BACKOFF_SECONDS = 1.0
# Spread added on top of Meta's retry_after, as a share of it.
RATE_LIMIT_JITTER = 0.1


class RetriesExhausted(Exception):
    """A step kept failing with retryable errors until no attempt was left."""

    def __init__(self, attempts: int, last_error: BaseException) -> None:
        super().__init__(f"gave up after {attempts} attempts: {last_error}")
        self.attempts = attempts
        self.last_error = last_error
        # Seconds Meta asked to wait before the next call (its regain time), when it said.
        self.retry_after = meta_retry_after(last_error)


def meta_retry_after(error: BaseException) -> float | None:
    retry_after = getattr(error, "retry_after", None)
    return float(retry_after) if isinstance(retry_after, int | float) and retry_after > 0 else None


def is_retryable(error: BaseException) -> bool:
    """Whether running the step again can help (Meta errors and our own ones say so in `retryable`)."""
    return bool(getattr(error, "retryable", False))


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    max_backoff_seconds: float
    base_backoff_seconds: float = BASE_BACKOFF_SECONDS

    @classmethod
    def from_settings(cls, settings: Settings) -> "RetryPolicy":
        return cls(max_attempts=settings.task_max_attempts, max_backoff_seconds=settings.task_max_backoff_seconds)

    def backoff(self, attempt: int, error: BaseException, *, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based) failed with `error`."""
        draw = rng or random
        retry_after = getattr(error, "retry_after", None)
        if isinstance(retry_after, int | float) and retry_after > 0:
            delay = retry_after * (1 + draw.uniform(0, RATE_LIMIT_JITTER))
        else:
            ceiling = self.base_backoff_seconds * 2 ** (attempt - 1)
            delay = draw.uniform(ceiling / 2, ceiling)
        return min(delay, self.max_backoff_seconds)


async def retrying[T](
    step: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    what: str,
    sleep: Sleep = asyncio.sleep,
) -> T:
    """Run `step` until it succeeds, fails for good, or `policy.max_attempts` runs failed transiently.

    `what` names the step in the log lines (never put a token in it).
    """
    attempt = 1
    while True:
        try:
            return await step()
        except Exception as error:
            if not is_retryable(error):
                raise
            asked = meta_retry_after(error)
            if attempt >= policy.max_attempts or (asked is not None and asked > policy.max_backoff_seconds):
                logger.warning("giving up for this run", step=what, attempts=attempt, error=str(error))
                raise RetriesExhausted(attempt, error) from error
            delay = policy.backoff(attempt, error)
            STEP_RETRIES.labels("transient" if asked is None else "rate_limited").inc()
            if asked is not None:
                META_THROTTLED_SECONDS.labels("meta").inc(delay)
            logger.info("retrying", step=what, attempt=attempt, retry_in=round(delay, 3), error=str(error))
            await sleep(delay)
            attempt += 1
