"""Graph batch requests: many GETs in one HTTP call, at most 50 per call."""

import json
from collections.abc import Sequence

from pydantic import TypeAdapter

from server.clients.meta.wire import BatchItemResponse

MAX_BATCH_SIZE = 50

# Graph answers null for a request in the batch it did not get to (e.g. the batch ran out of time).
_batch_response_adapter = TypeAdapter(list[BatchItemResponse | None])


def chunked[T](items: Sequence[T], size: int = MAX_BATCH_SIZE) -> list[Sequence[T]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def batch_form(relative_urls: Sequence[str]) -> dict[str, str]:
    """The form fields of a batch call of GET requests (relative to the version root)."""
    if len(relative_urls) > MAX_BATCH_SIZE:
        raise ValueError(f"a Graph batch holds at most {MAX_BATCH_SIZE} requests, got {len(relative_urls)}")
    batch = [{"method": "GET", "relative_url": url} for url in relative_urls]
    return {"batch": json.dumps(batch, separators=(",", ":")), "include_headers": "true"}


def parse_batch_response(body: str) -> list[BatchItemResponse | None]:
    return _batch_response_adapter.validate_json(body)
