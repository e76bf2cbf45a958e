"""The {sync} endpoint (SODA §5): the cutout in the HTTP response."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dali.http import Endpoint, read_params
from soda.cutouts import Cutouts
from soda.ops.pool import CutoutPool
from uws.ports import CallerResolver


def sync_endpoint(cutouts: Cutouts, identify: CallerResolver, pool: CutoutPool) -> Endpoint:
    async def sync(request: Request) -> Response:
        identity = await identify(request)
        limits = cutouts.limits(identity.user_id)
        parsed = cutouts.parse((await read_params(request)).pairs)
        targets = await pool.run(cutouts.plan, parsed)
        cutouts.check_sync(targets, parsed, limits)
        body = await pool.make(cutouts, targets, parsed, limits)
        if body is None:
            return Response(status_code=204)  # SODA §5.1: no pixels of the dataset
        name = targets[0].name if len(targets) == 1 else "cutouts"
        return Response(body, media_type=parsed.mime, headers={
            "Content-Disposition": f'inline; filename="{name}.{parsed.extension}"'})
    return sync
