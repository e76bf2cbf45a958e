"""An archive answered over HTTP: Content-Length, one byte range, ETag and If-Range.

RFC 9110 §14 (ranges) and §13.1.5 (If-Range):

- ``Range: bytes=a-b``, ``bytes=a-`` and ``bytes=-n`` (one range) → 206 with
  Content-Range; a first byte at or past the end (or ``-0``) → 416 with
  ``Content-Range: bytes */size``;
- several ranges, another unit, or a header that does not parse → the whole archive
  (200): §14.2 lets a server ignore Range, and a client always gets correct bytes;
- ``If-Range`` honours the Range only when it is our current ETag (strong comparison;
  no dates: there is no Last-Modified), else the whole archive (200);
- HEAD: the same status and headers, no body.

The body is read from the files in pieces (``uws.archive.CHUNK``) on Starlette's thread
pool as the client takes them: memory stays bounded whatever the archive's size.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from uws.archive import Archive

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


class Unsatisfiable(Exception):
    """The range starts past the end of the representation."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one byte range asked for, as (start, stop) with stop exclusive; None for the
    whole; raises Unsatisfiable."""
    if header is None:
        return None
    match = _RANGE.match(header)
    if match is None:  # several ranges, another unit, or not a range at all
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # bytes=-n: the last n bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable
        return max(size - suffix, 0), size
    start = int(first)
    stop = int(last) + 1 if last else size
    if last and stop <= start:
        return None  # bytes=5-3 is invalid: ignored (§14.1.1)
    if start >= size:
        raise Unsatisfiable
    return start, min(stop, size)


def archive_response(request: Request, archive: Archive, filename: str) -> Response:
    headers = {"Accept-Ranges": "bytes", "ETag": archive.etag,
               "Content-Disposition": f'attachment; filename="{filename}"'}
    if_range = request.headers.get("if-range")
    asked = request.headers.get("range") if if_range is None or if_range.strip() == archive.etag else None
    try:
        span = parse_range(asked, archive.size)
    except Unsatisfiable:
        return Response(f"range not satisfiable: the archive has {archive.size} bytes\n", status_code=416,
                        media_type="text/plain",
                        headers={**headers, "Content-Range": f"bytes */{archive.size}"})
    start, stop = span if span is not None else (0, archive.size)
    status = 200
    if span is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{archive.size}"
    headers["Content-Length"] = str(stop - start)
    if request.method == "HEAD":
        return Response(b"", status_code=status, media_type=archive.media_type, headers=headers)
    # A sync iterator: Starlette reads it on its thread pool, one piece at a time.
    return StreamingResponse(archive.read(start, stop), status_code=status, media_type=archive.media_type,
                             headers=headers)
