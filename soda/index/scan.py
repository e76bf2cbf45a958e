"""One FITS file -> the images it holds (as the survey's layout names them), or why not."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from soda.sky.sphere import separation
from soda.surveys.base import Recognised, Survey
from soda.surveys.catalogue import CatalogueImage, Footprint


class BadFile(Exception):
    """A file the index cannot hold, with the reason (shown to the operator)."""


def _key(label: str) -> str | int:
    return int(label) if label.isdigit() else label


def footprint(wcs: WCS, shape: tuple[int, int]) -> Footprint:
    """Corners and edge midpoints of the pixel grid, in order round the edge, and its centre."""
    ny, nx = shape
    x0, y0, x1, y1 = -0.5, -0.5, nx - 0.5, ny - 0.5
    xm, ym = (nx - 1) / 2, (ny - 1) / 2
    xs = np.array([x0, xm, x1, x1, x1, xm, x0, x0, xm])
    ys = np.array([y0, y0, y0, ym, y1, y1, y1, ym, ym])
    world = wcs.pixel_to_world_values(xs, ys)
    ra, dec = np.asarray(world[wcs.wcs.lng]), np.asarray(world[wcs.wcs.lat])  # DEC--TAN may come first
    if not (np.all(np.isfinite(ra)) and np.all(np.isfinite(dec))):
        raise BadFile("its WCS puts part of the image nowhere on the sky")
    ra = np.mod(ra, 360.0)
    vertices = tuple((float(r), float(d)) for r, d in zip(ra[:-1], dec[:-1]))
    centre = (float(ra[-1]), float(dec[-1]))
    radius = float(np.max(separation(centre[0], centre[1], ra[:-1], dec[:-1])))
    if not 0 < radius < 90:
        raise BadFile(f"its footprint is {radius:g} degrees from centre to corner (need 0 to 90)")
    return Footprint(vertices=vertices, centre=centre, radius=radius)


def _image(survey: str, path: Path, hdul: fits.HDUList, found: Recognised) -> CatalogueImage:
    label = found.hdus[0]
    try:
        header = hdul[_key(label)].header
    except (KeyError, IndexError):
        raise BadFile(f"no HDU {label}") from None
    shape = (int(header.get("NAXIS2", 0)), int(header.get("NAXIS1", 0)))
    if min(shape) < 1:
        raise BadFile(f"HDU {label} is not a 2-d image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            wcs = WCS(header, naxis=2)
    except Exception as exc:  # noqa: BLE001 - wcslib's errors have no common class
        raise BadFile(f"HDU {label}: its WCS cannot be read ({exc})") from None
    if not wcs.has_celestial or wcs.naxis != 2:
        raise BadFile(f"HDU {label} has no celestial WCS")
    if wcs.wcs.lng < 0 or wcs.wcs.lat < 0:
        raise BadFile(f"HDU {label} has no celestial WCS")
    scale = float(np.mean(proj_plane_pixel_scales(wcs))) * 3600.0
    if not (math.isfinite(scale) and scale > 0):
        raise BadFile(f"HDU {label}: its WCS has no pixel scale")
    return CatalogueImage(survey=survey, name=found.name, field=found.field, band=found.band,
                          path=path, hdus=found.hdus, shape=shape, pixel_scale=scale,
                          footprint=footprint(wcs, shape), extra=dict(found.extra))


def scan_file(path: Path, survey: str, layout: type[Survey],
              band_map: Mapping[str, str]) -> list[CatalogueImage]:
    """The images of one file; BadFile (with its reason) when it has none the index can hold."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fits.open(path, memmap=False, lazy_load_hdus=False) as hdul:
                truncated = [w for w in caught if "truncated" in str(w.message).lower()]
                if truncated:
                    raise BadFile(f"truncated: {truncated[0].message}")
                found = layout.recognise(path, hdul, band_map)
                if found is None:
                    raise BadFile(f"not a file of the {layout.__name__} layout")
                if not found:
                    raise BadFile("no image HDU (no HDU with two or more axes)")
                return [_image(survey, path, hdul, one) for one in found]
    except BadFile:
        raise
    except OSError as exc:
        raise BadFile(f"unreadable: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a corrupt file can fail anywhere in astropy
        raise BadFile(f"corrupt: {type(exc).__name__}: {exc}") from None
