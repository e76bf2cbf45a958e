"""Bounds on blocking WAIT requests (UWS §2.2.1.2): per caller and in total.

A blocking WAIT holds a connection and a place among the server's open connections for up
to ``wait_max_seconds``. Thousands of them starve every other request, so each caller may
hold only a few at once, and a job list only so many in all. A WAIT beyond a bound is not
refused: UWS lets the server return before the wait is over, so it gets the job document
at once, and the client asks again (as it would after any early return).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator


class WaitSlots:
    """Counts the WAITs in progress, in one event loop (no lock needed); 0 means no bound."""

    def __init__(self, per_caller: int, total: int) -> None:
        self.per_caller = per_caller
        self.total = total
        self._held: Counter[str] = Counter()
        self._all = 0

    @contextlib.contextmanager
    def slot(self, caller: str) -> Iterator[bool]:
        """Yields whether ``caller`` may wait now; a granted place is given back on exit."""
        if (self.total and self._all >= self.total) or (
                self.per_caller and self._held[caller] >= self.per_caller):
            yield False
            return
        self._held[caller] += 1
        self._all += 1
        try:
            yield True
        finally:
            self._all -= 1
            self._held[caller] -= 1
            if not self._held[caller]:
                del self._held[caller]
