"""The schedulers' lease in Redis: any number of `adplane scheduler` processes run, one sends the runs.

The lease is a key holding `<fence>:<scheduler id>` with a time to live (SCHEDULER_LEASE_SECONDS).
A scheduler without it tries to take it every third of the lease (SET NX PX inside a script that
also draws the fencing token, a counter that grows with every new holder); the holder extends it
at the same pace with a compare-and-extend script (PEXPIRE only while the key still holds its own
token). A holder that dies stops extending: the key expires after at most one lease, and another
scheduler takes it at its next try, so the handover takes at most 4/3 of SCHEDULER_LEASE_SECONDS
(13.3 s with the default 10 s). A scheduler stopped by SIGTERM deletes its lease (compare-and-delete),
so a rolling restart hands over at the others' next try, within a third of the lease.

Why a lease in Redis and not a PostgreSQL advisory lock: every scheduler already depends on Redis
(the runs go there), and a session-level advisory lock needs a direct, long-lived PostgreSQL session
(not PgBouncer's transaction pooling), which the scheduler has no other use for.

What keeps a run from going out twice is not the lease alone (a holder may stall past its lease,
and the next holder must not repeat what the old one sent). Each run has an identity, its schedule
and the minute it is due (the schedules are cron, one run a minute at most), and a scheduler sends
a run only after claiming that identity with one script that checks, atomically in Redis, that the
lease still holds its own fencing token and that nobody claimed the identity before (SET of a run
key, kept a day). So:
- a stalled ex-holder's claim fails (the lease holds another token): the fencing check happens
  where the run is gated, in Redis, not in the workers, whose effects (PostgreSQL, Meta's API) have
  no single store that could compare fencing tokens;
- the new holder's claim of a minute the old holder already sent fails (the identity is taken), so
  a handover in the middle of a minute sends nothing twice;
- a run the dead holder never claimed is claimed by the new holder: schedulers that do not hold
  the lease wait for a due run to be claimed (a minute, and longer than a handover) instead of
  skipping it.
The token travels with the run (labels `scheduled_run`, `scheduler_fence`) for operators.

Limits: a Redis failover that loses the lease and run keys (asynchronous replication) may let one
run go out twice, and a holder killed between its claim and its send loses that run; every periodic
task works from the current state (sync everything, expire what is stale), so either costs work,
not correctness, and the next run catches up.
"""

import asyncio
import contextlib
import datetime as dt
import uuid
from typing import cast

import structlog
from redis.asyncio import Redis

from server.metrics import SCHEDULER_LEASE_HELD
from server.outages import is_outage

logger = structlog.get_logger("adplane.scheduler")

# One hash tag: the scripts' keys live in the same slot of a Redis cluster.
LEASE_KEY = "{adplane:scheduler}:lease"
FENCE_KEY = "{adplane:scheduler}:fence"
RUN_KEY_PREFIX = "{adplane:scheduler}:run:"
RUN_KEY_TTL_MS = 24 * 3600 * 1000
# How long a scheduler without the lease waits for someone to claim a due run before leaving it to
# the next one: a minute, and always longer than a handover (4/3 of the lease).
WAIT_FOR_CLAIM_SECONDS = 60.0
CLAIM_RETRY_SECONDS = 0.5
OUTAGE_RETRY_SECONDS = 1.0

# KEYS: lease, fence. ARGV: scheduler id, lease ms. The new fencing token, or "" when held by another.
_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return ''
end
local token = redis.call('INCR', KEYS[2]) .. ':' .. ARGV[1]
redis.call('SET', KEYS[1], token, 'NX', 'PX', ARGV[2])
return token
"""
# KEYS: lease. ARGV: token, lease ms. 1 when extended, 0 when the lease is no longer ours.
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# KEYS: lease. ARGV: token. 1 when released.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
# KEYS: lease, run. ARGV: token, run key ms. 1 claimed; 0 claimed before (sent by someone); -1 not
# claimed, and the caller does not hold the lease.
_CLAIM = """
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
"""


def run_identity(schedule_id: str, due: dt.datetime) -> str:
    """A run's identity: its schedule and the minute it is due (UTC)."""
    return f"{schedule_id}@{due.astimezone(dt.UTC).strftime('%Y-%m-%dT%H:%MZ')}"


class SchedulerLease:
    def __init__(self, redis: Redis, *, lease_seconds: float, scheduler_id: str | None = None) -> None:
        self._redis = redis
        self.lease_ms = int(lease_seconds * 1000)
        self.scheduler_id = scheduler_id or uuid.uuid4().hex
        # Our fencing token while we believe we hold the lease; Redis has the last word (`claim`).
        self.token: str | None = None

    @property
    def renew_every(self) -> float:
        return self.lease_ms / 3000

    @property
    def handover_bound(self) -> float:
        """Seconds at most between the holder's death and another scheduler holding the lease."""
        return self.lease_ms / 1000 + self.renew_every

    async def try_hold(self) -> bool:
        """Take the lease when it is free, extend it when it is ours; whether we hold it now."""
        if self.token is not None:
            if await self._redis.eval(_EXTEND, 1, LEASE_KEY, self.token, self.lease_ms):
                return True
            logger.warning("scheduler lease lost", token=self.token)
            self.token = None
        token = await self._redis.eval(_ACQUIRE, 2, LEASE_KEY, FENCE_KEY, self.scheduler_id, self.lease_ms)
        if token:
            self.token = token.decode() if isinstance(token, bytes) else str(token)
            logger.info("scheduler lease taken; this scheduler sends the runs", token=self.token)
        SCHEDULER_LEASE_HELD.set(self.token is not None)
        return self.token is not None

    async def keep(self, stop: asyncio.Event) -> None:
        """Hold (or wait for) the lease until `stop`, then release it."""
        while not stop.is_set():
            try:
                await self.try_hold()
            except Exception as error:
                if not is_outage(error):
                    raise
                logger.warning("scheduler lease not renewed; redis unreachable", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.renew_every)
        await self.release()

    async def release(self) -> None:
        token, self.token = self.token, None
        SCHEDULER_LEASE_HELD.set(0)
        if token is None:
            return
        try:
            await self._redis.eval(_RELEASE, 1, LEASE_KEY, token)
            logger.info("scheduler lease released", token=token)
        except Exception as error:
            if not is_outage(error):
                raise

    async def claim(self, run: str, *, wait_for_claim: float | None = None) -> str | None:
        """The fencing token to send run `run` with, or None when it must not be sent here: someone
        claimed it before, or nobody did within `wait_for_claim` (default: a minute, or a handover
        and a little more when that is longer) while another scheduler held the lease. Waits
        through Redis outages."""
        if wait_for_claim is None:
            wait_for_claim = max(WAIT_FOR_CLAIM_SECONDS, self.handover_bound + 5)
        deadline = asyncio.get_running_loop().time() + wait_for_claim
        while True:
            token = self.token or ""
            try:
                outcome = cast(
                    int, await self._redis.eval(_CLAIM, 2, LEASE_KEY, RUN_KEY_PREFIX + run, token, RUN_KEY_TTL_MS)
                )
            except Exception as error:
                if not is_outage(error):
                    raise
                logger.warning("scheduled run not claimed; redis unreachable", run=run, exc_info=True)
                await asyncio.sleep(OUTAGE_RETRY_SECONDS)
                continue
            if outcome == 1:
                return token
            if outcome == 0:
                return None
            if asyncio.get_running_loop().time() >= deadline:
                logger.warning("scheduled run left to the next one: no scheduler held the lease", run=run)
                return None
            await asyncio.sleep(CLAIM_RETRY_SECONDS)
