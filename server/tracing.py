"""OpenTelemetry tracing: off unless the standard OTEL_* variables ask for it.

Tracing is on when OTEL_TRACES_EXPORTER names an exporter (`otlp`, `console`) or an OTLP endpoint
is set (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), and OTEL_SDK_DISABLED is
not `true`. Everything else comes from the SDK's own variables: the OTLP exporter (http/protobuf)
from OTEL_EXPORTER_OTLP_*, batching from OTEL_BSP_*, sampling from OTEL_TRACES_SAMPLER(_ARG), the
resource from OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (service.name defaults to
`adplane-<component>`).

The maintained instrumentations do the spans: the grpc.aio server (the caller's `traceparent`,
which Envoy passes on, is the parent), SQLAlchemy, httpx (Graph API calls) and, in the server, redis.
Background work keeps the trace: an outbox row stores the context of the transaction that wrote it
(`outbox_context`), the relay publishes the row in a span of that trace and hands its context to
the task in the message's labels, and the task runs in a span under it (`server.taskqueue.tracing`).

Periodic background chatter (readiness probes, the relay's polling, health checks) runs with
instrumentation suppressed, so that only work shows up as traces.
"""

import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext

import structlog
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.utils import is_instrumentation_enabled, suppress_instrumentation
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from sqlalchemy.ext.asyncio import AsyncEngine

logger = structlog.get_logger("adplane.tracing")

tracer = trace.get_tracer("adplane")

# The key under which an outbox row and a task message carry the x-request-id of the call that
# caused the work (W3C trace context travels under its own keys, `traceparent` and `tracestate`).
REQUEST_ID_KEY = "x-request-id"

# The provider this process configured (at most one: OpenTelemetry's global can be set once).
_configured: list[TracerProvider] = []


def tracing_requested(environ: Mapping[str, str] = os.environ) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER")
    if exporters is not None:
        return exporters.strip().lower() not in ("", "none")
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def configure_tracing(component: str) -> bool:
    """Set up the SDK and the instrumentations for this process, when asked to; whether it did."""
    if _configured or not tracing_requested():
        return bool(_configured)
    defaults = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: f"adplane-{component}"}
    provider = TracerProvider(resource=Resource.create(defaults))
    for exporter in _exporters():
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _configured.append(provider)

    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor  # noqa: PLC0415

    HTTPXClientInstrumentor().instrument()
    if component == "server":
        from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorServer, filters  # noqa: PLC0415
        from opentelemetry.instrumentation.redis import RedisInstrumentor  # noqa: PLC0415

        # Envoy checks every server's health every 2 s: not traces anyone wants.
        server_instrumentor = GrpcAioInstrumentorServer(filter_=filters.negate(filters.health_check()))  # type: ignore[no-untyped-call]
        server_instrumentor.instrument()
        # In the server redis calls happen inside RPCs; the worker's broker polls redis every second.
        RedisInstrumentor().instrument()
    logger.info("tracing on", component=component)
    return True


def _exporters() -> list[SpanExporter]:
    names = [name.strip().lower() for name in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    exporters: list[SpanExporter] = []
    for name in names:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415

            exporters.append(OTLPSpanExporter())
        elif name == "console":
            exporters.append(ConsoleSpanExporter())
        elif name not in ("", "none"):
            raise ValueError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (adplane ships otlp and console)")
    return exporters


def trace_engine(engine: AsyncEngine) -> None:
    """SQL spans for `engine`'s statements, when tracing is on."""
    if not _configured:
        return
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor  # noqa: PLC0415

    # The instrumentation declares SQLAlchemy < 2.1 and would refuse 2.1; it only listens to the
    # engine's cursor events, which 2.1 keeps (tests/e2e/test_tracing.py sees the statements).
    SQLAlchemyInstrumentor().instrument(engine=engine.sync_engine, tracer_provider=_configured[0], skip_dep_check=True)


_NO_SPAN = nullcontext()


def database_span(statement: str) -> AbstractContextManager[object]:
    """A client span around a statement run outside SQLAlchemy (`server.read_pool`), named and
    attributed as SQLAlchemy's instrumentation names its own; nothing when tracing is off."""
    if not _configured or not is_instrumentation_enabled():
        return _NO_SPAN
    return tracer.start_as_current_span(
        statement.split(None, 1)[0],
        kind=trace.SpanKind.CLIENT,
        attributes={"db.system": "postgresql", "db.statement": statement},
    )


def shutdown_tracing() -> None:
    """Export what is still buffered (at the end of a process)."""
    for provider in _configured:
        provider.shutdown()


def outbox_context() -> dict[str, str]:
    """What background work caused now should carry: the trace context and the request id."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    if isinstance(request_id, str):
        carrier[REQUEST_ID_KEY] = request_id
    return carrier


def extract(carrier: Mapping[str, str]) -> Context:
    return propagate.extract(dict(carrier))


@contextmanager
def untraced() -> Iterator[None]:
    """Instrumentations record nothing inside (polling, probes)."""
    with suppress_instrumentation():
        yield
