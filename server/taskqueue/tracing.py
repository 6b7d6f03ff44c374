"""A task runs in the trace of the call that caused it, with that call's request id in its logs.

The outbox relay publishes a task message with the trace context and the request id in its labels
(`server.outbox.relay`); this middleware opens the task's span under that context before the task
runs, keeps it current while it runs (so its SQL and Graph API calls are its children), and binds
`origin_request_id` for its log lines. Without tracing configured the span is a no-op and only the
request id is bound.
"""

from typing import Any

import structlog
from opentelemetry import context, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from taskiq import TaskiqMessage, TaskiqMiddleware, TaskiqResult

from server.tracing import REQUEST_ID_KEY, extract, tracer


class TaskTracing(TaskiqMiddleware):
    def __init__(self) -> None:
        super().__init__()
        # Task id -> its span and the context token to restore; pre_execute and post_execute of one
        # message run in the same asyncio task.
        self._open: dict[str, tuple[trace.Span, object]] = {}

    def pre_execute(self, message: TaskiqMessage) -> TaskiqMessage:
        labels = {key: value for key, value in message.labels.items() if isinstance(value, str)}
        span = tracer.start_span(
            f"task {message.task_name}",
            context=extract(labels),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "taskiq",
                "messaging.operation.type": "process",
                "messaging.destination.name": message.task_name,
                "messaging.message.id": message.task_id,
            },
        )
        token = context.attach(trace.set_span_in_context(span))
        self._open[message.task_id] = (span, token)
        if request_id := labels.get(REQUEST_ID_KEY):
            structlog.contextvars.bind_contextvars(origin_request_id=request_id)
        return message

    def post_execute(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        opened = self._open.pop(message.task_id, None)
        structlog.contextvars.unbind_contextvars("origin_request_id")
        if opened is None:
            return
        span, token = opened
        if result.is_err:
            error = result.error
            if isinstance(error, BaseException):
                span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.end()
        context.detach(token)  # type: ignore[arg-type]
