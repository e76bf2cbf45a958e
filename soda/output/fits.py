"""Cutouts as FITS files: provenance and WCS-preserving headers (SODA §5.1)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from astropy.io import fits

from renderers.fits import cutout_header, set_card, write_fits
from soda import SERVICE, VERSION
from soda.engine.cutout import Cut, Mosaic


def fits_cutouts(cuts: Sequence[Cut], names: Sequence[str] = ()) -> bytes:
    """One FITS file: an empty primary HDU, then every plane of every cut (EXTVER = cut
    number); ``names`` labels each cut with its combination's name (CUTNAME, SODA §6)."""
    primary = {
        "ORIGIN": (SERVICE, "IVOA SODA 1.0 cutout service"),
        "SVCVERS": (VERSION, "version of the service that cut this"),
        "DATE": (dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"), "UTC time of the cut"),
        "NCUTOUTS": (len(cuts), "number of cutouts in this file"),
    }
    planes = []
    for number, c in enumerate(cuts, start=1):
        for index, plane in enumerate(c.planes):
            header = cutout_header(plane.header, c.box.x0, c.box.y0)
            header["EXTNAME"] = plane.name
            header["EXTVER"] = number
            if names:
                set_card(header, "CUTNAME", names[number - 1], "its combination's result name (SODA 6)")
            # Long values (IDs, file names, polygons) keep every character; set_card drops
            # a comment that no longer fits beside its value rather than cutting it.
            set_card(header, "DATASET", c.image.dataset_id, "IVOA dataset ID of the source")
            set_card(header, "SRCFILE", c.image.path.name, "source file")
            set_card(header, "SRCHDU", plane.name, "source HDU")
            set_card(header, "SRCBOX", f"[{c.box.x0 + 1}:{c.box.x1},{c.box.y0 + 1}:{c.box.y1}]",
                     "source pixels cut (FITS section, 1-based)")
            set_card(header, "REGION", c.region.dali() if c.region is not None else "whole image",
                     "requested region (ICRS deg)")
            if c.mosaic is not None:
                _mosaic_cards(header, c.mosaic, index)
            header["SVCVERS"] = VERSION
            planes.append((plane.data, header))
    return write_fits(planes, primary)


def _mosaic_cards(header: fits.Header, mosaic: Mosaic, plane: int) -> None:
    """A cut assembled across its image's edge says so, and from which images."""
    set_card(header, "MOSAIC", True, "pixels assembled from neighbouring images")
    set_card(header, "NSRCIMG", len(mosaic.sources), "number of source images (SRCIMGn)")
    for n, source in enumerate(mosaic.sources, start=1):
        set_card(header, f"SRCIMG{n}", source, "IVOA dataset ID of a source image")
    set_card(header, "RESAMPLE", mosaic.resample[plane],
             "other grids onto this one: none, bilinear or nearest")
