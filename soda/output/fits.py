"""Cutouts as FITS files: provenance and WCS-preserving headers (SODA §5.1)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from renderers.fits import Cards, cutout_cards, write_fits
from soda import SERVICE, VERSION
from soda.engine.cutout import Cut, Mosaic


def fits_cutouts(cuts: Sequence[Cut], names: Sequence[str] = (),
                 cards: Sequence[Mapping[str, tuple[object, str]]] = ()) -> bytes:
    """One FITS file: an empty primary HDU, then every plane of every cut (EXTVER = cut
    number); ``names`` labels each cut with its combination's name (CUTNAME, SODA §6);
    ``cards``: more cards for each cut's HDUs (keyword: (value, comment))."""
    primary = {
        "ORIGIN": (SERVICE, "IVOA SODA 1.0 cutout service"),
        "SVCVERS": (VERSION, "version of the service that cut this"),
        "DATE": (dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"), "UTC time of the cut"),
        "NCUTOUTS": (len(cuts), "number of cutouts in this file"),
    }
    planes = []
    for number, c in enumerate(cuts, start=1):
        for index, plane in enumerate(c.planes):
            header = cutout_cards(plane.header, c.box.x0, c.box.y0)
            header.set("EXTNAME", plane.name)
            header.set("EXTVER", number)
            if names:
                header.set("CUTNAME", names[number - 1], "its combination's result name (SODA 6)")
            for keyword, (value, comment) in (cards[number - 1].items() if cards else ()):
                header.set(keyword, value, comment)
            # Long values (IDs, file names, polygons) keep every character; a comment that
            # no longer fits beside its value is dropped rather than cut.
            header.set("DATASET", c.image.dataset_id, "IVOA dataset ID of the source")
            header.set("SRCFILE", c.image.path.name, "source file")
            header.set("SRCHDU", plane.name, "source HDU")
            header.set("SRCBOX", f"[{c.box.x0 + 1}:{c.box.x1},{c.box.y0 + 1}:{c.box.y1}]",
                       "source pixels cut (FITS section, 1-based)")
            header.set("REGION", c.region.dali() if c.region is not None else "whole image",
                       "requested region (ICRS deg)")
            if c.mosaic is not None:
                _mosaic_cards(header, c.mosaic, index)
            header.set("SVCVERS", VERSION)
            planes.append((plane.data, header))
    return write_fits(planes, primary)


def _mosaic_cards(header: Cards, mosaic: Mosaic, plane: int) -> None:
    """A cut assembled across its image's edge says so, and from which images."""
    header.set("MOSAIC", True, "pixels assembled from neighbouring images")
    header.set("NSRCIMG", len(mosaic.sources), "number of source images (SRCIMGn)")
    for n, source in enumerate(mosaic.sources, start=1):
        header.set(f"SRCIMG{n}", source, "IVOA dataset ID of a source image")
    header.set("RESAMPLE", mosaic.resample[plane],
               "other grids onto this one: none, bilinear or nearest")
