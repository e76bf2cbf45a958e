"""What every survey provides: which images hold a dataset ID or a sky position."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from astropy.io import fits

# FITS files a survey's folders may hold (the ingest walks only these).
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.fz", ".fz", ".fits.gz")
# The band of an image whose headers name none (and no band_map entry "" renames).
UNKNOWN_BAND = "unknown"
_BAND_TEXT = re.compile(r"[^A-Za-z0-9_.+-]")


@dataclass(frozen=True)
class ImageRef:
    """One survey image that a cutout can be cut from."""

    dataset_id: str          # IVOA publisher DID, e.g. ivo://demo.cutout/des?DES0139-4457_r
    survey: str              # survey name, e.g. "des"
    tile: str                # e.g. "DES0139-4457"
    band: str                # e.g. "r"
    path: Path               # the FITS or .fits.fz file (what a download serves)
    hdus: tuple[str, ...]    # EXTNAMEs cut identically; the first is the science image
    pixels: Path | None = None  # a faster copy to cut from (cutout retile); None: the file

    @property
    def source(self) -> Path:
        """The file the engine reads pixels from."""
        return self.pixels or self.path


@dataclass(frozen=True)
class Recognised:
    """One image a survey's layout finds in a file: what the index records of it."""

    name: str                     # its dataset ID's query part
    field: str                    # the tile, patch or frame; the name without the band
    band: str
    hdus: tuple[str, ...]         # EXTNAME or HDU number; science first
    extra: Mapping[str, str] = field(default_factory=dict)


def file_stem(path: Path) -> str:
    """The file name without its FITS suffixes (m13_rice.fits.fz -> m13_rice)."""
    name = path.name
    for suffix in sorted(FITS_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[:-len(suffix)]
    return path.stem


def header_band(headers: Sequence[fits.Header], band_map: Mapping[str, str]) -> str:
    """The band the BAND or FILTER card names (the first found, HDU before primary).

    The card's whole value, then its first word, is looked up in ``band_map``; unmapped,
    the first word is the band ("r DECam SDSS c0002 6415.0 1480.0" is r).
    """
    for header in headers:
        for key in ("BAND", "FILTER"):
            value = str(header.get(key, "")).strip()
            if value:
                word = value.split()[0]
                band = band_map.get(value, band_map.get(word, word))
                return _BAND_TEXT.sub("_", band)[:32]
    return band_map.get("", UNKNOWN_BAND)


def _image_hdus(hdul: fits.HDUList) -> list[int]:
    return [i for i, hdu in enumerate(hdul)
            if hdu.is_image and int(hdu.header.get("NAXIS", 0)) >= 2]


def _hdu_label(hdul: fits.HDUList, i: int) -> str:
    name = hdul[i].name.strip()
    if i and name and not name.isdigit() and sum(1 for h in hdul if h.name == name) == 1:
        return name
    return str(i)


def _without_band(name: str, band: str) -> str:
    for sep in ("_", "-", "."):
        if name.endswith(sep + band) and len(name) > len(band) + 1:
            return name[:-len(band) - 1]
    return name


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

    @classmethod
    def recognise(cls, path: Path, hdul: fits.HDUList,
                  band_map: Mapping[str, str]) -> list[Recognised] | None:
        """The images of this survey's layout in an open file; None when the file is not one.

        The generic layout: every 2-d image HDU is an image (those with a celestial WCS,
        when a file has several); the name is the file's stem, plus the HDU when the file
        holds several images; the band comes from BAND or FILTER through ``band_map``; the
        field is the name without a trailing band (m13_r -> m13). Survey classes with a
        layout of their own (DESDM coadds) override this.
        """
        found = _image_hdus(hdul)
        if len(found) > 1:
            found = [i for i in found if "CTYPE1" in hdul[i].header] or found
        stem = file_stem(path)
        images = []
        for i in found:
            label = _hdu_label(hdul, i)
            name = stem if len(found) == 1 else f"{stem}_{label}"
            band = header_band([hdul[i].header, hdul[0].header], band_map)
            images.append(Recognised(name=name, field=_without_band(name, band), band=band, hdus=(label,)))
        return images

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
                                  band=other.band, path=other.path, hdus=other.hdus or image.hdus,
                                  pixels=other.pixels))
        return found

    def same_grid(self, a: ImageRef, b: ImageRef) -> bool:
        """Whether two images share one pixel grid, so that pixels are copied between them by an
        integer offset (the bands of one field always do; other fields only where the survey
        says so, e.g. LSST patches of one tract)."""
        return a.survey == b.survey and a.tile == b.tile
