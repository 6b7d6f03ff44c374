"""Giving freed memory back to the operating system after a burst.

CPython frees objects to its allocators, and glibc's malloc keeps what was freed (in the main heap
and in the arenas of grpc's threads) for the next allocations: after a burst of work (a thousand
watch streams opening and closing) the process's resident memory stays near its peak although
nothing uses it. `malloc_trim(0)` returns those free pages; it costs a few milliseconds, so it runs
after a burst, not per call. Elsewhere than glibc it does nothing.
"""

import ctypes
import ctypes.util
import functools
import gc
from collections.abc import Callable
from typing import cast


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return cast(Callable[[int], int], trim)


def release_freed_memory() -> bool:
    """Collect garbage, then hand the allocator's free pages back; whether the allocator could."""
    gc.collect()
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
