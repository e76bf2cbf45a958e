"""Any collection of images, served from the index: the generic survey.

Each ingested image is a dataset ID, ``ivo://<authority>/<survey>?<name>``. A position
is served by the images whose footprints hold it, the one whose centre is nearest first;
the bands are those the index holds.

Band wavelength ranges (SODA BAND matching) come from the survey's ``band_ranges``
setting, else from ``COMMON_BANDS`` below, else ``UNKNOWN_RANGE``: a wide optical and
near-infrared interval, so that an image of an unlisted band still answers a BAND that
overlaps the optical.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from soda.surveys.base import ImageRef, Served, Survey
from soda.surveys.catalogue import CatalogueImage, ImageCatalogue

# Approximate filter intervals in metres: SDSS/DECam/LSST ugrizy (Y as DES and UKIRT
# write it) and Johnson-Cousins UBVRI (upper case R and I; lower case are the SDSS ones).
COMMON_BANDS: dict[str, tuple[float, float]] = {
    "u": (300e-9, 400e-9),
    "g": (398e-9, 548e-9),
    "r": (542e-9, 710e-9),
    "i": (690e-9, 860e-9),
    "z": (820e-9, 1000e-9),
    "y": (940e-9, 1080e-9),
    "Y": (950e-9, 1080e-9),
    "U": (320e-9, 400e-9),
    "B": (390e-9, 490e-9),
    "V": (500e-9, 600e-9),
    "R": (560e-9, 760e-9),
    "I": (700e-9, 900e-9),
}
UNKNOWN_RANGE = (300e-9, 2500e-9)


class GenericSurvey(Survey):
    """The images one survey's ingest found, addressed by their names."""

    def __init__(self, catalogue: ImageCatalogue, authority: str, name: str,
                 hdus: Sequence[str] = (), band_ranges: Mapping[str, tuple[float, float]] | None = None,
                 **_: object) -> None:
        self.catalogue = catalogue
        self.authority = authority
        self.name = name
        self.hdus = tuple(hdus)  # empty: the HDUs the ingest found
        self.ranges = dict(band_ranges or {})
        self._prefix = f"ivo://{authority}/{name}?".lower()

    @property
    def bands(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(sorted(self.catalogue.bands(self.name), key=self._band_order))

    def _band_order(self, band: str) -> tuple[float, str]:
        return self.band_range(band)[0], band

    def dataset_id(self, image: CatalogueImage) -> str:
        return f"ivo://{self.authority}/{self.name}?{image.name}"

    def _ref(self, image: CatalogueImage) -> ImageRef:
        return ImageRef(dataset_id=self.dataset_id(image), survey=self.name, tile=image.field,
                        band=image.band, path=image.path, hdus=self.hdus or image.hdus, pixels=image.pixels)

    def by_id(self, dataset_id: str) -> ImageRef | None:
        head, rest = dataset_id[:len(self._prefix)], dataset_id[len(self._prefix):]
        if head.lower() != self._prefix or not rest:
            return None
        image = self.catalogue.get(self.name, rest)
        return None if image is None else self._ref(image)

    def at(self, ra: float, dec: float, bands: Sequence[str]) -> list[ImageRef]:
        here = self.catalogue.at(self.name, ra, dec)
        if not here:
            return []
        # The bands of the nearest image's field first: they share its pixel grid.
        field = here[0].field
        refs = []
        for band in bands:
            of_band = [image for image in here if image.band == band]
            if of_band:
                same = [image for image in of_band if image.field == field]
                refs.append(self._ref((same or of_band)[0]))
        return refs

    def at_many(self, ra: np.ndarray, dec: np.ndarray, bands: Sequence[str]) -> list[Served]:
        return self.held_many(ra, dec, bands)

    def catalogue_ref(self, image: CatalogueImage) -> ImageRef | None:
        return self._ref(image)

    def sibling(self, image: ImageRef, band: str) -> ImageRef | None:
        for other in self.catalogue.in_field(self.name, image.tile):
            if other.band == band:
                return self._ref(other)
        return None

    def band_range(self, band: str) -> tuple[float, float]:
        return self.ranges.get(band) or COMMON_BANDS.get(band) or UNKNOWN_RANGE

    def images_per_band(self) -> dict[str, int]:
        counts = self.catalogue.bands(self.name)
        return {band: counts[band] for band in self.bands}

    def example(self) -> ImageRef | None:
        image = self.catalogue.first(self.name)
        return None if image is None else self._ref(image)
