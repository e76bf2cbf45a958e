"""Giving memory back to the system.

glibc's allocator keeps freed memory in its arenas (one per thread that allocated), so
a process that once decoded and encoded large cutouts stays large long after. After
large work, ``trim`` asks it to return what is free. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc
        return None


def trim() -> None:
    """Return the allocator's free memory to the system (glibc ``malloc_trim``)."""
    call = _malloc_trim()
    if call is not None:
        call(0)
