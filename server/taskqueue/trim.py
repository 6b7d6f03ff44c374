"""Keeping the task stream bounded without ever trimming a message a worker still holds.

taskiq-redis acknowledges with XACK only, which clears the consumer group's pending entry and leaves
the message in the stream for ever; its `maxlen` option (XADD MAXLEN ~) would bound the stream by
count, whatever the messages' state. That loses work: a backlog longer than `maxlen` (workers down for
a while, the relay publishing on) trims messages no worker has read yet, and a message a worker holds
past TASK_REDELIVERY_SECONDS may be gone when another worker's XAUTOCLAIM comes for it (Redis drops
deleted entries from the pending list: the task is never run again).

So the stream is bounded by state, not by count:

- a worker deletes a message when it acknowledges it (XACK and XDEL in one MULTI,
  `ReclaimingRedisStreamBroker`): what stays is what was not delivered yet and what a worker holds.
  A message held by two workers (the first one slow, the second one reclaimed it) is deleted by
  whichever finishes first; the other already has it and its ack then changes nothing.
- `trim_acknowledged` (scheduled with the retention jobs) trims with MINID below the oldest message
  any consumer group still has pending and never past what the group has delivered: it clears what
  an ack without delete left behind (messages acknowledged before this code, a lost connection
  between the two), and nothing else.
"""

from typing import Any

import structlog
from redis.asyncio import Redis

logger = structlog.get_logger("adplane.taskqueue.trim")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _next_id(stream_id: str) -> str:
    """The smallest stream id after `stream_id` (`ms-seq`)."""
    milliseconds, _, sequence = stream_id.partition("-")
    return f"{milliseconds}-{int(sequence or 0) + 1}"


def _id_key(stream_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = stream_id.partition("-")
    return int(milliseconds), int(sequence or 0)


async def safe_trim_id(redis: Redis, stream: str) -> str | None:
    """The id below which every message of `stream` is acknowledged by every consumer group (held by
    no worker, waiting for none); None when there is no group (nothing was delivered)."""
    # The groups' delivery marks first, then their pending lists: a message delivered after the
    # mark was read is above it, and one delivered before it and still held shows in the pending
    # list read after it.
    groups = await redis.xinfo_groups(stream)
    if not groups:
        return None
    bounds: list[str] = []
    for group in groups:
        name = _text(group["name"])
        bounds.append(_next_id(_text(group["last-delivered-id"])))
        if int(group["pending"]):
            summary = await redis.xpending(stream, name)
            if summary["pending"]:
                bounds.append(_text(summary["min"]))
    return min(bounds, key=_id_key)


async def trim_acknowledged(redis: Redis, stream: str) -> int:
    """Delete the messages of `stream` every consumer group has acknowledged below its oldest pending
    one; how many."""
    try:
        below = await safe_trim_id(redis, stream)
    except Exception as error:
        if "no such key" in str(error).lower():  # no stream yet
            return 0
        raise
    if below is None:
        return 0
    trimmed = int(await redis.xtrim(stream, minid=below, approximate=False))
    if trimmed:
        logger.info("trimmed acknowledged task messages", count=trimmed, stream=stream, below=below)
    return trimmed
