"""The {sync} endpoint (SODA §5): the cutout in the HTTP response."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from starlette.requests import Request
from starlette.responses import Response

from dali.http import Endpoint, client_address, read_params
from dali.timestamps import utcnow
from soda.audit.records import AuditLog, Served, format_name
from soda.cutouts import Cutouts, Target, cutout_count
from soda.ops.pool import CutoutPool
from soda.request.model import SodaRequest
from uws.ports import Caller, CallerResolver

log = logging.getLogger(__name__)


def sync_endpoint(cutouts: Cutouts, identify: CallerResolver, pool: CutoutPool,
                  audit: AuditLog | None, trust_forwarded: bool) -> Endpoint:
    """``audit``: one record per answered request (200 or 204); errors are not recorded."""
    async def sync(request: Request) -> Response:
        started = time.perf_counter()
        identity = await identify(request)
        limits = cutouts.limits(identity.user_id)
        parsed = cutouts.parse((await read_params(request)).pairs)
        targets = await pool.run(cutouts.plan, parsed)
        cutouts.check_sync(targets, parsed, limits)
        body = await pool.make(cutouts, targets, parsed, limits)
        if audit is not None:
            _record(audit, lambda: served(request, identity, parsed, targets, body, started, trust_forwarded))
        if body is None:
            return Response(status_code=204)  # SODA §5.1: no pixels of the dataset
        name = targets[0].name if len(targets) == 1 else "cutouts"
        return Response(body, media_type=parsed.mime, headers={
            "Content-Disposition": f'inline; filename="{name}.{parsed.extension}"'})
    return sync


def _record(audit: AuditLog, made: Callable[[], Served]) -> None:
    """The answer is made: its audit record never turns it into an error."""
    try:
        audit.record(made())
    except Exception:  # noqa: BLE001
        log.exception("the audit record of a /sync answer could not be made")


def served(request: Request, identity: Caller, parsed: SodaRequest, targets: Sequence[Target],
           body: bytes | None, started: float, trust_forwarded: bool) -> Served:
    """The audit record of one answer: its survey is that of its first image."""
    survey = next((t.images[0].survey for t in targets if t.images), "")
    return Served(utcnow(), identity.user_id, "sync", survey, format_name(parsed.extension),
                  cutout_count(targets) if body is not None else 0, len(body) if body is not None else 0,
                  latency_ms=(time.perf_counter() - started) * 1000, status=200 if body is not None else 204,
                  client=client_address(request, trust_forwarded))
