"""What the surveys know of the images an operator ingested: the image catalogue's interface.

The catalogue itself is the index in the service's database (`soda/index/`, written by
`cutout ingest`); the surveys only see this protocol, so the engine path stays free of
database code. Every lookup answers from the index, never by opening image files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

Vertex = tuple[float, float]  # (RA, Dec) in degrees, ICRS


@dataclass(frozen=True)
class Footprint:
    """Where an image's pixels lie on the sky."""

    vertices: tuple[Vertex, ...]  # corners and edge midpoints, in pixel order round the edge
    centre: Vertex                # the sky position of the image's central pixel
    radius: float                 # degrees from the centre to the farthest vertex


@dataclass(frozen=True)
class CatalogueImage:
    """One image of a survey, as the index holds it."""

    survey: str                   # the survey's name, e.g. "des"
    name: str                     # its dataset ID's query part, e.g. "DES0139-4457_r"
    field: str                    # the tile, patch or frame; the bands of a field share one pixel grid
    band: str
    path: Path                    # the FITS or .fits.fz file
    hdus: tuple[str, ...]         # the HDUs cut together (EXTNAME or index); science first
    shape: tuple[int, int]        # (ny, nx) of the science HDU
    pixel_scale: float            # arcsec per pixel
    footprint: Footprint
    extra: Mapping[str, str] = field(default_factory=dict)  # what a layout adds: tract, patch, MJD-OBS...
    pixels: Path | None = None    # a faster copy of the file, same pixels (cutout retile); None: the file


class ImageCatalogue(Protocol):
    """The ingested images of every survey."""

    def get(self, survey: str, name: str) -> CatalogueImage | None:
        """The image a survey names so; None when there is none."""

    def at(self, survey: str, ra: float, dec: float) -> list[CatalogueImage]:
        """Every image whose footprint holds the position, nearest its centre first."""

    def holding(self, survey: str, ra: np.ndarray, dec: np.ndarray) -> list[tuple[CatalogueImage, np.ndarray]]:
        """``at`` for many positions (arrays of degrees) at once: each image that holds any of
        them, with the indices of those it holds (ascending), the images by name."""

    def overlapping(self, survey: str, ra: float, dec: float, radius: float) -> list[CatalogueImage]:
        """Every image whose footprint meets the circle (degrees)."""

    def in_field(self, survey: str, field: str) -> list[CatalogueImage]:
        """The images of one field (its bands)."""

    def bands(self, survey: str) -> Mapping[str, int]:
        """How many images each band holds."""

    def version(self, survey: str) -> str:
        """Changes whenever the survey's images do (an ingest that added, removed or changed
        a file); cheap, for caches of what is made from them."""

    def first(self, survey: str) -> CatalogueImage | None:
        """One image of the survey (the first by name), for examples."""

    def search(self, surveys: Sequence[str], ra: float, dec: float, radius: float,
               limit: int) -> list[CatalogueImage]:
        """At most ``limit`` images of those surveys whose footprints meet the circle."""
