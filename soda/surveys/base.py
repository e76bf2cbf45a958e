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
