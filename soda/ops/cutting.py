"""The inside of a cutting process (``soda.ops.pool``): the cutout pipeline over the
service's index, and nothing else of the runtime (no jobs, no broker, no web).

The parent plans a request (index lookups) and sends the targets; a cutting process
reads their pixels and encodes the file. The index is opened read-only in spirit: a
cutting process asks it only for neighbouring images (cuts across image edges).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from conf import Settings
from soda.cutouts import CutoutLimits, Cutouts, SodaRequest, Target
from soda.index.catalogue import IndexCatalogue
from soda.ops.database import open_database
from soda.surveys.registry import load_datasets

log = logging.getLogger(__name__)

_cutouts: Cutouts | None = None
# Bodies this large leave freed arenas behind in glibc's allocator; give them back.
_TRIM_AFTER_BYTES = 16 * 2**20


def start(settings: Settings) -> None:
    """The process initializer: the cutout pipeline of these settings."""
    global _cutouts
    from soda.ops import logs

    logs.configure(settings.ops.log_level, settings.ops.effective_log_format)
    ops = settings.ops
    db = open_database(ops.effective_database_url, connect_timeout=ops.database_connect_timeout_seconds,
                       statement_timeout=ops.database_statement_timeout_seconds)
    _cutouts = Cutouts(load_datasets(settings, IndexCatalogue(db)), settings)


def make(targets: Sequence[Target], request: SodaRequest, limits: CutoutLimits) -> tuple[bytes | None, float]:
    """The file of ``targets`` and the seconds it took (the parent observes them)."""
    assert _cutouts is not None, "start() runs first, as the pool's initializer"
    started = time.perf_counter()
    body = _cutouts.make(targets, request, limits)
    seconds = time.perf_counter() - started
    if body is not None and len(body) >= _TRIM_AFTER_BYTES:
        _cutouts.trim_memory()
    return body, seconds
