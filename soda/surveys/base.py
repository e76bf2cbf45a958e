"""What every survey provides: which images hold a dataset ID or a sky position."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ImageRef:
    """One survey image that a cutout can be cut from."""

    dataset_id: str          # IVOA publisher DID, e.g. ivo://demo.cutout/des?DES0139-4457_r
    survey: str              # survey name, e.g. "des"
    tile: str                # e.g. "DES0139-4457"
    band: str                # e.g. "r"
    path: Path               # the FITS or .fits.fz file
    hdus: tuple[str, ...]    # EXTNAMEs cut identically; the first is the science image


class Survey(ABC):
    """A survey: a set of images, addressable by dataset ID or by sky position."""

    name: str
    bands: tuple[str, ...]

    @abstractmethod
    def by_id(self, dataset_id: str) -> ImageRef | None:
        """The image a publisher DID names, or None when this survey has no such image."""

    @abstractmethod
    def at(self, ra: float, dec: float, bands: Sequence[str]) -> list[ImageRef]:
        """The images (one per band asked for, in that order) that serve this position.

        Empty when the position is outside the survey's footprint.
        """

    @abstractmethod
    def sibling(self, image: ImageRef, band: str) -> ImageRef | None:
        """The same field (tile, patch) in another band, on the same pixel grid; None if absent."""

    @abstractmethod
    def band_range(self, band: str) -> tuple[float, float]:
        """The band's wavelength interval in metres (for SODA BAND matching)."""

    def images_per_band(self) -> dict[str, int] | None:
        """How many images each band holds (bands without images left out), for the
        service's front page; None when the survey cannot tell cheaply."""
        return None

    def example(self) -> ImageRef | None:
        """One of its images, for the front page's examples; None if it has none to show."""
        return None

    def bands_in(self, low: float, high: float) -> list[str]:
        """Bands whose wavelength range overlaps the interval [low, high] (metres)."""
        return [b for b in self.bands if self.band_range(b)[0] <= high and self.band_range(b)[1] >= low]

    def neighbours(self, image: ImageRef, ra: float, dec: float, radius: float) -> list[ImageRef]:
        """Other images of the image's band whose footprints meet the circle (degrees), nearest
        first: those a cutout crossing the image's edge is assembled from.

        By default they come from the survey's image catalogue (``self.catalogue``, an
        ``ImageCatalogue``), when it has one: its images named like the image's dataset ID
        (``<ID prefix>?<name>``). Without a catalogue: none.
        """
        catalogue = getattr(self, "catalogue", None)
        if catalogue is None:
            return []
        prefix = image.dataset_id.rpartition("?")[0]
        found = []
        for other in catalogue.overlapping(self.name, ra, dec, radius):
            if other.band != image.band or other.field == image.tile:
                continue
            found.append(ImageRef(dataset_id=f"{prefix}?{other.name}", survey=self.name, tile=other.field,
                                  band=other.band, path=other.path, hdus=other.hdus or image.hdus))
        return found

    def same_grid(self, a: ImageRef, b: ImageRef) -> bool:
        """Whether two images share one pixel grid, so that pixels are copied between them by an
        integer offset (the bands of one field always do; other fields only where the survey
        says so, e.g. LSST patches of one tract)."""
        return a.survey == b.survey and a.tile == b.tile
