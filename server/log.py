"""Structured logging: JSON lines in production, readable console lines in development.

Every record carries the context variables bound by the request interceptor (request_id,
method), so one RPC's lines can be found together.

Logging never blocks serving: the calling thread (the event loop) only stamps a record and puts it
on a queue; a writer thread renders it (tracebacks included, as plain text) and writes it, so a
slow terminal or a full pipe stalls that thread, not the RPCs. The same error repeated (same
logger, event and exception) is written once per LOG_REPEAT_SECONDS; the writer then adds one line
saying how many more times it happened, instead of a traceback per occurrence.
"""

import atexit
import datetime as dt
import logging
import logging.handlers
import queue
import sys
import threading
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import structlog

from server.config import LogFormat, Settings

# Level at which identical records start being collapsed (INFO lines, one per RPC, never are).
_COLLAPSE_FROM = logging.WARNING
_STOP = object()


def configure_logging(settings: Settings) -> None:
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    rendering: list[structlog.types.Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if settings.effective_log_format is LogFormat.JSON:
        rendering += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        # Plain tracebacks: the rich formatter spends about a second per traceback. Never local
        # variables either: they would print secrets (tokens, passwords) held there.
        rendering.append(
            structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback)
        )

    structlog.configure(
        # Drop records below LOG_LEVEL first, before any processor spends time on them; what runs
        # here runs on the caller's thread and is cheap (no rendering).
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            timestamper,
            _capture_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    # The standard library's records (grpc, sqlalchemy, alembic, taskiq) go through the same renderer.
    output = logging.StreamHandler(sys.stderr)
    output.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                _merge_captured_context,
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                _timestamp_from_record,
            ],
            processors=rendering,
        )
    )
    writer = LogWriter(output, repeat_seconds=settings.log_repeat_seconds)
    stop_logging()
    root = logging.getLogger()
    root.handlers[:] = [_Enqueue(writer)]
    root.setLevel(settings.log_level.upper())
    writer.start()
    atexit.register(writer.stop)


def stop_logging() -> None:
    """Writes what is queued and stops the writer thread of `configure_logging` (at exit, in tests)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _Enqueue):
            handler.writer.stop()
            root.removeHandler(handler)


def _capture_exc_info(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """`exc_info=True` means "the exception being handled", which only this thread knows."""
    exc_info = event_dict.get("exc_info")
    if exc_info is True:
        event_dict["exc_info"] = sys.exc_info()
    elif isinstance(exc_info, BaseException):
        event_dict["exc_info"] = (type(exc_info), exc_info, exc_info.__traceback__)
    return event_dict


def _merge_captured_context(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    record = event_dict.get("_record")
    for key, value in getattr(record, "context", {}).items():
        event_dict.setdefault(key, value)
    return event_dict


def _timestamp_from_record(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """When the record was made, not when the writer thread got to it."""
    record = event_dict.get("_record")
    created = record.created if isinstance(record, logging.LogRecord) else time.time()
    event_dict["timestamp"] = _iso(created)
    return event_dict


def _iso(timestamp: float) -> str:
    # As TimeStamper(fmt="iso", utc=True) writes it.
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat().replace("+00:00", "Z")


class _Enqueue(logging.Handler):
    """Hands records to the writer thread without formatting them."""

    def __init__(self, writer: "LogWriter") -> None:
        super().__init__()
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        if not isinstance(record.msg, dict):
            # A standard library record: merge its arguments now (they may change later) and keep
            # the context variables of this thread, which the writer thread does not see.
            record.msg, record.args = record.getMessage(), None
            record.context = structlog.contextvars.get_contextvars()
        if self.writer.running:
            self.writer.queue.put(record)
        else:  # before start or after stop (at exit): nobody would write it
            self.writer.write(record)


@dataclass
class _Repeats:
    first: logging.LogRecord
    since: float
    count: int = 0


class LogWriter:
    """The thread that renders and writes records, collapsing repeated errors."""

    def __init__(self, handler: logging.Handler, *, repeat_seconds: float) -> None:
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._handler = handler
        self._repeat_seconds = repeat_seconds
        self._repeats: dict[tuple[str, ...], _Repeats] = {}
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._stopping = False

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stopping

    def stop(self) -> None:
        """Writes what is queued (and pending repeat counts), then ends the thread."""
        if self._thread.is_alive():
            self._stopping = True
            self.queue.put(_STOP)
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            try:
                record = self.queue.get(timeout=min(self._repeat_seconds, 1.0))
            except queue.Empty:
                record = None
            if record is _STOP:
                self._report_repeats(everything=True)
                self._handler.flush()
                return
            if record is not None and self._admit(record):
                self.write(record)
            self._report_repeats(everything=False)

    def write(self, record: logging.LogRecord) -> None:
        try:
            self._handler.handle(record)
        except Exception:
            self._handler.handleError(record)

    def _admit(self, record: logging.LogRecord) -> bool:
        """False for a record repeating one written less than repeat_seconds ago (it is counted)."""
        if record.levelno < _COLLAPSE_FROM:
            return True
        key = _repeat_key(record)
        repeats = self._repeats.get(key)
        if repeats is None:
            self._repeats[key] = _Repeats(first=record, since=time.monotonic())
            return True
        repeats.count += 1
        return False

    def _report_repeats(self, *, everything: bool) -> None:
        now = time.monotonic()
        for key, repeats in list(self._repeats.items()):
            if not everything and now - repeats.since < self._repeat_seconds:
                continue
            del self._repeats[key]
            if repeats.count:
                self.write(_repeated(repeats, seconds=now - repeats.since))


def _repeat_key(record: logging.LogRecord) -> tuple[str, ...]:
    if isinstance(record.msg, dict):
        event, exc_info = str(record.msg.get("event")), record.msg.get("exc_info")
    else:
        event, exc_info = str(record.msg), record.exc_info
    error = exc_info[1] if isinstance(exc_info, tuple) else None
    return (record.name, record.levelname, event, type(error).__name__, str(error)[:200])


def _repeated(repeats: _Repeats, *, seconds: float) -> logging.LogRecord:
    """One line for the occurrences that were not written: the first one's fields, no traceback."""
    first = repeats.first
    record = logging.makeLogRecord(first.__dict__)
    record.created = time.time()
    if isinstance(first.msg, dict):
        fields = {key: value for key, value in first.msg.items() if key not in ("exc_info", "timestamp")}
        if "request_id" in fields:  # the line stands for many calls
            fields["first_request_id"] = fields.pop("request_id")
        fields["timestamp"] = _iso(record.created)
        fields["repeated"] = repeats.count
        fields["within_seconds"] = round(seconds, 1)
        fields["event"] = f"{fields.get('event')} (repeated)"
        record.msg = fields
    else:
        record.msg = f"{first.msg} (repeated {repeats.count} times in {seconds:.0f}s)"
        record.exc_info = None
        record.exc_text = None
    return record
