"""Reads on a streaming replica (DATABASE_READ_URL), while it is close enough to the primary.

Which reads: the read-only units of work (Gets and Lists: the read pool's hot reads and the
autocommit session's), unless a unit asks for the primary (a watch's snapshot: a change committed
before the watch joined must be in it). Everything that writes, and callers' standing (the
principal resolver), stays on the primary.

The lag, in seconds: every DATABASE_READ_CHECK_INTERVAL_SECONDS the process samples the primary's
flushed WAL position and then the replica's replay position. The replica has replayed everything the
primary had written at the newest sample it has reached, so its data is at most `now - that
sample's time` old (`ReplicaLag`). Beyond DATABASE_READ_MAX_LAG_SECONDS, or when a probe fails, the
replica is skipped until a probe finds it close again. An idle primary is no lag (no new WAL).

Read-your-writes: after a caller's (a user's or an API key's) write commits, the process asks the
primary for its WAL insert position, at or past the commit's record, and remembers it for that
caller, in the process and in Redis (every process and node sees it). The caller's reads go to the
primary while the replica's replay position, as last probed, is behind it. The memory lasts
DATABASE_READ_MAX_LAG_SECONDS + two check intervals: by then either the replica has replayed the
write or it lags more than the bound and is skipped anyway. Without Redis (or when it fails) the
rule holds within the process. Writes by workers (no caller) are not tracked: a caller sees them
within the lag bound, like any other caller's.
"""

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable

import redis.exceptions
import structlog
from redis.asyncio import Redis
from sqlalchemy import select, text

from server.metrics import DB_REPLICA_LAG, DB_REPLICA_SKIPPED
from server.outages import is_outage
from server.read_pool import PreparedRead, ReadPool

logger = structlog.get_logger("adplane.read_replica")

# After a commit: the insert position is at or past the end of the commit's WAL record, even before
# the record is flushed (synchronous_commit = off).
_PRIMARY_POSITION = PreparedRead(select(text("CAST(pg_current_wal_insert_lsn() - '0/0'::pg_lsn AS bigint)")))
# For the lag: what the primary has flushed, all a standby can have (the insert position of an idle
# primary can stand past a page header that no replica ever "replays").
_PRIMARY_FLUSHED = PreparedRead(select(text("CAST(pg_current_wal_flush_lsn() - '0/0'::pg_lsn AS bigint)")))
_REPLAY_POSITION = PreparedRead(
    select(text("CAST(pg_last_wal_replay_lsn() - '0/0'::pg_lsn AS bigint)"), text("pg_is_in_recovery()"))
)
_WRITTEN_KEY = "adplane:written:{}"
# A WAL position past any real one: a replica promoted to primary has replayed everything it will;
# a write whose position could not be read keeps its caller on the primary for the whole memory.
_EVERYTHING = 2**63 - 1
# Keep the highest position of a caller's writes (two processes may commit for the same caller).
_REMEMBER_HIGHEST = """
local current = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) > current then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
"""


class ReplicaLag:
    """The replica's staleness from samples of the primary's WAL position (see the module's text)."""

    def __init__(self, *, keep_seconds: float) -> None:
        self._keep = keep_seconds
        self._samples: deque[tuple[float, int]] = deque()

    def measure(self, now: float, primary: int, replayed: int | None) -> float:
        """The lag in seconds, given the primary's position sampled at `now` and the replica's
        replay position read after it (None: not a standby, so nothing to replay)."""
        self._samples.append((now, primary))
        while len(self._samples) > 1 and now - self._samples[0][0] > self._keep:
            self._samples.popleft()
        if replayed is None or replayed >= primary:
            return 0.0
        reached = [at for at, position in self._samples if position <= replayed]
        return now - max(reached) if reached else math.inf


class ReplicaRouter:
    """Whether a read-only unit may read the replica; what each caller last wrote."""

    def __init__(
        self,
        primary: ReadPool,
        replica: ReadPool,
        *,
        max_lag_seconds: float,
        check_interval_seconds: float,
        redis: Redis | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._primary = primary
        self._replica = replica
        self._max_lag = max_lag_seconds
        self._interval = check_interval_seconds
        self._remember_seconds = max_lag_seconds + 2 * check_interval_seconds
        self._redis = redis
        self._remember_highest = redis.register_script(_REMEMBER_HIGHEST) if redis is not None else None
        self._clock = clock
        self._lag = ReplicaLag(keep_seconds=self._remember_seconds + check_interval_seconds)
        # The replica's replay position at the last probe that found it usable; -1: not usable.
        self._replayed = -1
        self.lag_seconds = math.inf
        # caller -> (position of its last write, monotonic time the memory ends)
        self._written: dict[str, tuple[int, float]] = {}
        self._monitor: asyncio.Task[None] | None = None
        self._checked = asyncio.Event()
        self._closed = False
        DB_REPLICA_SKIPPED.inc()  # until a probe finds the replica close

    @property
    def usable(self) -> bool:
        return self._replayed >= 0

    async def start(self) -> None:
        """Measure the lag now and from now on (else from the first read)."""
        self._ensure_monitor()
        async with asyncio.timeout(self._interval * 5 + 5):
            await self._checked.wait()

    async def close(self) -> None:
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            monitor.cancel()
            await asyncio.gather(monitor, return_exceptions=True)
        await self._replica.close()
        if not self._closed and not self.usable:
            DB_REPLICA_SKIPPED.dec()  # this process counts no more
        self._closed = True

    def skip(self) -> None:
        """The replica failed a read: skip it until the next probe finds it usable."""
        if self.usable:
            DB_REPLICA_SKIPPED.inc()
        self._replayed = -1

    async def replica_for(self, caller: str | None) -> bool:
        """Whether `caller`'s read may go to the replica."""
        self._ensure_monitor()
        replayed = self._replayed
        if replayed < 0:
            return False
        if caller is None:
            return True
        written = self._written.get(caller)
        if written is not None:
            if self._clock() > written[1]:
                del self._written[caller]
            elif written[0] > replayed:
                return False
        if self._redis is None:
            return True
        try:
            shared = await self._redis.get(_WRITTEN_KEY.format(caller))
        except redis.exceptions.RedisError:
            return False  # cannot tell: the primary is always right
        return shared is None or int(shared) <= replayed

    async def remember_write(self, caller: str) -> None:
        """After `caller`'s write committed: its reads stay on the primary until the replica has it."""
        try:
            position = await self._primary.one(_PRIMARY_POSITION, {})
            lsn = int(position[0]) if position is not None else _EVERYTHING
        except Exception as error:
            # The write has committed: its call must not fail now, its caller reads the primary.
            logger.warning("position of a caller's write unknown", error=repr(error))
            lsn = _EVERYTHING
        self._written[caller] = (lsn, self._clock() + self._remember_seconds)
        if self._remember_highest is None:
            return
        try:
            await self._remember_highest(
                keys=[_WRITTEN_KEY.format(caller)], args=[lsn, math.ceil(self._remember_seconds * 1000)]
            )
        except redis.exceptions.RedisError as error:
            logger.warning("caller's write not shared through Redis", error=repr(error))

    def _ensure_monitor(self) -> None:
        if self._monitor is None:
            self._monitor = asyncio.get_running_loop().create_task(self._measure_forever())

    async def _measure_forever(self) -> None:
        while True:
            await self._measure()
            self._checked.set()
            if len(self._written) > 10_000:
                now = self._clock()
                self._written = {caller: entry for caller, entry in self._written.items() if entry[1] >= now}
            await asyncio.sleep(self._interval)

    async def _measure(self) -> None:
        was_usable = self.usable
        try:
            await self._probe(was_usable)
        finally:
            DB_REPLICA_LAG.set(self.lag_seconds)

    async def _probe(self, was_usable: bool) -> None:
        try:
            async with asyncio.timeout(max(self._interval, 1.0)):
                primary = await self._primary.one(_PRIMARY_FLUSHED, {})
                now = self._clock()
                replica = await self._replica.one(_REPLAY_POSITION, {})
        except Exception as error:
            self.skip()
            self.lag_seconds = math.inf
            if not (isinstance(error, TimeoutError) or is_outage(error)):
                logger.exception("read replica skipped: its probe failed")
            elif was_usable:
                logger.warning("read replica skipped: not answering", error=repr(error))
            return
        assert primary is not None
        assert replica is not None
        replayed = None if not replica[1] else int(replica[0] or 0)
        self.lag_seconds = self._lag.measure(now, int(primary[0]), replayed)
        if self.lag_seconds > self._max_lag:
            self.skip()
            if was_usable:
                logger.warning("read replica skipped: lagging", lag_seconds=self.lag_seconds)
            return
        self._replayed = _EVERYTHING if replayed is None else replayed
        if not was_usable:
            DB_REPLICA_SKIPPED.dec()
        if not was_usable:
            logger.info("read replica in use", lag_seconds=self.lag_seconds)
