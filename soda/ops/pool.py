"""The pool that runs CPU-bound cutting and encoding, apart from everything else.

Starlette runs blocking calls (database, tokens) on anyio's shared thread pool; a flood
of cutouts there would slow WAIT, logins and job pages. Cutouts get this pool of their
own, bounded and sized from the settings; it is the one place to change should cutting
move to processes.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class CutoutPool:
    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cutout")

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` in the pool; the caller's context (the request id of logs) goes along."""
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await asyncio.wrap_future(self._executor.submit(call))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
