"""Iterate over every item of a keyset-paginated List RPC, one page at a time."""

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Protocol


class _PagedRequest(Protocol):
    page_token: str

    def __deepcopy__(self, memo: Any = None) -> Any: ...


def pages[Request: _PagedRequest](method: Callable[[Request], Any], request: Request, items: str) -> Iterator[Any]:
    """Every element of the `items` field of each page, following `next_page_token`."""
    request = request.__deepcopy__()
    while True:
        response = method(request)
        yield from getattr(response, items)
        if not response.next_page_token:
            return
        request.page_token = response.next_page_token


async def apages[Request: _PagedRequest](
    method: Callable[[Request], Awaitable[Any]], request: Request, items: str
) -> AsyncIterator[Any]:
    """`pages` for asyncio stubs."""
    request = request.__deepcopy__()
    while True:
        response = await method(request)
        for item in getattr(response, items):
            yield item
        if not response.next_page_token:
            return
        request.page_token = response.next_page_token
