"""The naive baseline: what a straightforward cutout service does per request.

Open the file, ``Cutout2D`` every image HDU around the position, write the cutouts to a
FITS file in memory, answer it. No caches, no limits. Served on its own by

    CUTOUT_NAIVE_FILE=tile.fits uvicorn --factory --app-dir bench naive_server:create_app

(GET /cutout?RA=deg&DEC=deg&SIZE=arcmin); ``naive_cutout`` is also timed in-process by
the engine section of bench/run.py.
"""

from __future__ import annotations

import io
import os
import warnings

import astropy.units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import Cutout2D
from astropy.wcs import WCS, FITSFixedWarning


def naive_cutout(path: str, ra: float, dec: float, arcmin: float) -> bytes:
    position = SkyCoord(ra, dec, unit="deg")
    out = fits.HDUList([fits.PrimaryHDU()])
    with fits.open(path) as hdul, warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        for hdu in hdul[1:]:
            cut = Cutout2D(hdu.data, position, arcmin * u.arcmin, wcs=WCS(hdu.header), mode="trim")
            header = hdu.header.copy()
            header.update(cut.wcs.to_header())
            out.append(fits.ImageHDU(cut.data, header, name=hdu.name))
        buffer = io.BytesIO()
        out.writeto(buffer)
    return buffer.getvalue()


def create_app():  # type: ignore[no-untyped-def]
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    path = os.environ["CUTOUT_NAIVE_FILE"]

    def cutout(request: Request) -> Response:  # sync: Starlette runs it in its thread pool
        q = request.query_params
        body = naive_cutout(path, float(q["RA"]), float(q["DEC"]), float(q["SIZE"]))
        return Response(body, media_type="application/fits")

    return Starlette(routes=[Route("/cutout", cutout)])
