"""The event loop the long-running processes (server, worker, scheduler) run on: EVENT_LOOP."""

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop

from server.config import EventLoop, Settings


def loop_factory(settings: Settings) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop, or None for asyncio's default."""
    return uvloop.new_event_loop if settings.event_loop is EventLoop.UVLOOP else None


def run[T](main: Coroutine[Any, Any, T], settings: Settings) -> T:
    return asyncio.run(main, loop_factory=loop_factory(settings))
