"""Background work stays in the trace of the call that caused it (in-memory exporter).

The call's transaction writes an outbox row; the relay publishes it in a span under the call and
hands that span's context and the call's request id to the task in the message's labels; the task
middleware runs the task in a span under the publication.
"""

import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from taskiq import TaskiqMessage, TaskiqResult

from server.composition import Infrastructure
from server.outbox.relay import OutboxRelay
from server.taskqueue.tracing import TaskTracing
from server.tracing import REQUEST_ID_KEY, tracer

_EXPORTER = InMemorySpanExporter()


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """The process's tracer provider (set once: OpenTelemetry allows no other) with a memory exporter."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


class Recorder:
    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, Any], dict[str, str]]] = []

    async def __call__(self, topic: str, payload: dict[str, Any], labels: Mapping[str, str]) -> None:
        self.published.append((topic, payload, dict(labels)))


async def test_a_task_runs_in_the_trace_of_the_call_that_wrote_its_outbox_row(
    infrastructure: Infrastructure, exporter: InMemorySpanExporter
) -> None:
    topic = f"test.traced.{uuid.uuid4().hex[:8]}"
    with (
        tracer.start_as_current_span("approve call") as call,
        structlog.contextvars.bound_contextvars(request_id="req-123"),
    ):
        async with infrastructure.unit_of_work() as uow:
            await uow.outbox.add(topic, {"n": 1})

    recorder = Recorder()
    relay = OutboxRelay(infrastructure.unit_of_work, recorder, batch_size=100, poll_seconds=0.01)
    while not any(published[0] == topic for published in recorder.published):
        assert await relay.relay_once() > 0
    _, payload, labels = next(published for published in recorder.published if published[0] == topic)
    assert payload["n"] == 1
    assert labels[REQUEST_ID_KEY] == "req-123"

    middleware = TaskTracing()
    message = TaskiqMessage(task_id="t-1", task_name="tests.traced", labels=labels, args=[payload], kwargs={})
    middleware.pre_execute(message)
    with tracer.start_as_current_span("graph call"):
        assert structlog.contextvars.get_contextvars()["origin_request_id"] == "req-123"
    middleware.post_execute(message, TaskiqResult(is_err=False, return_value=None, execution_time=0.1))
    assert "origin_request_id" not in structlog.contextvars.get_contextvars()

    spans = {span.name: span for span in exporter.get_finished_spans()}
    publish, task, graph = spans[f"outbox publish {topic}"], spans["task tests.traced"], spans["graph call"]
    trace_id = call.get_span_context().trace_id
    assert {publish.context.trace_id, task.context.trace_id, graph.context.trace_id} == {trace_id}
    assert publish.parent is not None
    assert publish.parent.span_id == call.get_span_context().span_id
    assert task.parent is not None
    assert task.parent.span_id == publish.context.span_id
    assert graph.parent is not None
    assert graph.parent.span_id == task.context.span_id
    assert labels["traceparent"].split("-")[2] == format(publish.context.span_id, "016x")


async def test_without_a_trace_the_task_still_gets_the_request_id(
    infrastructure: Infrastructure, exporter: InMemorySpanExporter
) -> None:
    topic = f"test.untraced.{uuid.uuid4().hex[:8]}"
    with structlog.contextvars.bound_contextvars(request_id="req-456"):
        async with infrastructure.unit_of_work() as uow:
            await uow.outbox.add(topic, {})
    recorder = Recorder()
    relay = OutboxRelay(infrastructure.unit_of_work, recorder, batch_size=100, poll_seconds=0.01)
    while not any(published[0] == topic for published in recorder.published):
        assert await relay.relay_once() > 0
    _, _, labels = next(published for published in recorder.published if published[0] == topic)
    assert labels[REQUEST_ID_KEY] == "req-456"
