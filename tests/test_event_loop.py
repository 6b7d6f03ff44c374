"""EVENT_LOOP picks the loop the server, worker and scheduler run on."""

import asyncio

import pytest
import uvloop

from server import event_loop
from server.config import EventLoop, Settings


async def _running_loop() -> type[asyncio.AbstractEventLoop]:
    return type(asyncio.get_running_loop())


@pytest.mark.parametrize(
    ("choice", "expected"),
    [(EventLoop.UVLOOP, uvloop.Loop), (EventLoop.ASYNCIO, asyncio.SelectorEventLoop)],
)
def test_runs_on_the_chosen_loop(choice: EventLoop, expected: type[asyncio.AbstractEventLoop]) -> None:
    settings = Settings(_env_file=None, event_loop=choice)
    assert issubclass(event_loop.run(_running_loop(), settings), expected)


def test_uvloop_is_the_default() -> None:
    assert Settings(_env_file=None).event_loop is EventLoop.UVLOOP


def test_an_unknown_loop_is_refused() -> None:
    with pytest.raises(ValueError, match="event_loop"):
        Settings(_env_file=None, event_loop="trio")
