"""Every key adplane writes to Redis expires or is a stream with a bound: the login throttle's
counters, the watch events' stream and publication marks, the task stream and the task results."""

import datetime as dt
import uuid

from taskiq import BrokerMessage, TaskiqResult

from server.composition import Infrastructure
from server.requests.events import STREAM_KEY
from server.taskqueue.broker import QUEUE, ReclaimingRedisStreamBroker, create_broker

# Streams without a TTL, and what bounds them.
BOUNDED_STREAMS = {
    QUEUE: "a message is deleted when acknowledged; the retention run trims what acks left",
    STREAM_KEY: "MINID trimming to WATCH_RETENTION_SECONDS on every append",
}


async def test_every_key_written_expires_or_is_a_bounded_stream(infrastructure: Infrastructure) -> None:
    redis = infrastructure.redis
    publisher = infrastructure.request_event_publisher
    assert redis is not None
    assert publisher is not None
    settings = infrastructure.settings

    await infrastructure.login_throttle.admit(email="someone@example.com", address="203.0.113.9")
    await publisher.publish({"event": {"event_id": str(uuid.uuid4()), "kind": "changed"}})
    broker = create_broker(settings)
    assert isinstance(broker, ReclaimingRedisStreamBroker)
    await broker.startup()
    try:
        await broker.kick(BrokerMessage(task_id="t1", task_name="t", message=b"{}", labels={}))
        message = await anext(broker.listen())
        done = message.ack()
        assert done is not None
        await done
        await broker.result_backend.set_result("t1", TaskiqResult(is_err=False, return_value=1, execution_time=0.1))
    finally:
        await broker.shutdown()

    keys = {key.decode(): await redis.pttl(key) async for key in redis.scan_iter()}
    assert len(keys) >= 6, keys  # three throttle counters, the events stream and mark, the task stream, a result
    unbounded = {key for key, ttl in keys.items() if ttl < 0 and key not in BOUNDED_STREAMS}
    assert not unbounded, f"keys without a TTL or a bound: {sorted(unbounded)}"
    for stream in BOUNDED_STREAMS:
        assert await redis.type(stream) == b"stream"
    assert await redis.xlen(QUEUE) == 0
    result_ttl = max(ttl for key, ttl in keys.items() if "t1" in key)
    assert dt.timedelta(milliseconds=result_ttl) <= dt.timedelta(seconds=settings.task_result_ttl_seconds)
