"""Reading Server-Sent Events the way a browser does: one event per blank-line-terminated block,
its `event:` (default "message") and its `data:` lines joined."""

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Event:
    name: str
    data: dict[str, Any]


async def events(response: httpx.Response) -> AsyncIterator[Event]:
    """The events of a streaming response, until its body ends."""
    name, data = "message", []
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            name = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data.append(line.removeprefix("data:").removeprefix(" "))
        elif not line and data:
            yield Event(name=name, data=json.loads("\n".join(data)))
            name, data = "message", []
