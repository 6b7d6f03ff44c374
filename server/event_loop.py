"""The event loop the long-running processes (server, worker, scheduler) run on: EVENT_LOOP."""

import asyncio
from collections.abc import Coroutine
from typing import Any

import uvloop

from server.config import EventLoop, Settings


def run[T](main: Coroutine[Any, Any, T], settings: Settings) -> T:
    """`asyncio.run` on uvloop's loop, or on asyncio's own with EVENT_LOOP=asyncio."""
    factory = uvloop.new_event_loop if settings.event_loop is EventLoop.UVLOOP else None
    return asyncio.run(main, loop_factory=factory)
