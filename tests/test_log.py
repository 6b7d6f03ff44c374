"""The log writer: what is collapsed as a repeat and what is always written."""

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from server.config import LogFormat, Settings
from server.log import configure_logging, stop_logging
from tests.waits import wait_until


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """Configures logging as a process would (JSON, repeats collapsed per 0.3 s) into a buffer."""
    buffer = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stderr", buffer)
        configure_logging(Settings(_env_file=None, log_format=LogFormat.JSON, log_repeat_seconds=0.3))
        yield buffer
        stop_logging()
        structlog.reset_defaults()


def _records(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_repeats_are_counted_and_distinct_errors_and_info_lines_are_all_written(lines: io.StringIO) -> None:
    logger = structlog.get_logger("adplane.test")
    structlog.contextvars.bind_contextvars(request_id="req-1")
    try:
        for n in range(5):
            logger.info("rpc finished", n=n)
            logger.warning("dependency unavailable", exc_info=ConnectionRefusedError(111, "refused"))
        logger.warning("dependency unavailable", exc_info=TimeoutError("timed out"))
        logging.getLogger("taskiq.receiver").error("broker failed %s", "once")
    finally:
        structlog.contextvars.clear_contextvars()
    # Once the interval ends, the writer reports the count.
    wait_until(lambda: "dependency unavailable (repeated)" in lines.getvalue(), within=5, what="the repeat count")
    records = _records(lines)

    assert [r["n"] for r in records if r["event"] == "rpc finished"] == [0, 1, 2, 3, 4]
    full = [r for r in records if r["event"] == "dependency unavailable"]
    assert [str(r["exception"]).splitlines()[-1] for r in full] == [
        "ConnectionRefusedError: [Errno 111] refused",
        "TimeoutError: timed out",
    ]
    assert all(r["request_id"] == "req-1" for r in full)
    [repeats] = [r for r in records if r["event"] == "dependency unavailable (repeated)"]
    assert repeats["repeated"] == 4
    assert "exception" not in repeats
    # A standard library record keeps the context of the thread that logged it.
    [foreign] = [r for r in records if r["logger"] == "taskiq.receiver"]
    assert foreign["event"] == "broker failed once"
    assert foreign["request_id"] == "req-1"
