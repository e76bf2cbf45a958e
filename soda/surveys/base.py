"""What every survey provides: which images hold a dataset ID or a sky position."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from astropy.io import fits

from soda.sky.sphere import separation

if TYPE_CHECKING:
    from soda.surveys.catalogue import CatalogueImage

# Positions (indices into the arrays asked about) and the images that serve every one of them.
Served = tuple[np.ndarray, list["ImageRef"]]

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

    def at_many(self, ra: np.ndarray, dec: np.ndarray, bands: Sequence[str]) -> list[Served]:
        """``at`` for many positions (arrays of degrees) at once: the positions grouped by the
        images that serve them, as ``at`` gives them; positions in no group have none.

        This default asks ``at`` once per position; surveys override it to look their
        images up once per field or sky cell.
        """
        groups: dict[tuple[str, ...], tuple[list[int], list[ImageRef]]] = {}
        for i, (a, d) in enumerate(zip(ra, dec, strict=True)):
            images = self.at(float(a), float(d), bands)
            if images:
                groups.setdefault(tuple(im.dataset_id for im in images), ([], images))[0].append(i)
        return [(np.asarray(rows, dtype=np.int64), images) for rows, images in groups.values()]

    def catalogue_ref(self, image: CatalogueImage) -> ImageRef | None:
        """The ImageRef of one of the catalogue's images (None: the survey does not serve it)."""
        return None

    def held(self, ra: float, dec: float, bands: Sequence[str]) -> list[ImageRef]:
        """The images of the catalogue whose footprints hold the position (``held_many``)."""
        [(_, images)] = self.held_many(np.array([ra]), np.array([dec]), bands) or [(None, [])]
        return images

    def held_many(self, ra: np.ndarray, dec: np.ndarray, bands: Sequence[str]) -> list[Served]:
        """Positions served by any image of the catalogue whose footprint holds them: the
        nearest such image's field gives each band asked for, else the band's nearest image
        holding the position. What the generic survey serves, and where a survey's own
        geometry names a field that was not ingested (a DES tile, an LSST patch), what
        /sync with an explicit ID could still cut: grouped as ``at_many``."""
        catalogue = getattr(self, "catalogue", None)
        ra, dec = np.asarray(ra, dtype=float), np.asarray(dec, dtype=float)
        if catalogue is None or not ra.size:
            return []
        found = [(image, rows) for image, rows in catalogue.holding(self.name, ra, dec)
                 if self.catalogue_ref(image) is not None]
        if not found:
            return []
        n = len(ra)
        fields = {image.field for image, _ in found}
        field_no = {f: k for k, f in enumerate(sorted(fields))}
        nearest, nearest_field = np.full(n, np.inf), np.full(n, -1)
        distances = []
        for image, rows in found:
            d = separation(image.footprint.centre[0], image.footprint.centre[1], ra[rows], dec[rows])
            distances.append(d)
            closer = d < nearest[rows]  # ties: the first by name
            nearest[rows[closer]] = d[closer]
            nearest_field[rows[closer]] = field_no[image.field]
        choice = np.full((n, len(bands)), -1)
        for b, band in enumerate(bands):
            score = np.full(n, np.inf)
            for k, ((image, rows), d) in enumerate(zip(found, distances, strict=True)):
                if image.band != band:
                    continue
                # The nearest image's own field first (its bands share one pixel grid).
                mine = d + np.where(nearest_field[rows] == field_no[image.field], 0.0, 1000.0)
                better = mine < score[rows]
                score[rows[better]] = mine[better]
                choice[rows[better], b] = k
        served = np.flatnonzero((choice >= 0).any(axis=1))
        if not served.size:
            return []
        combos, which = np.unique(choice[served], axis=0, return_inverse=True)
        which = which.reshape(-1)
        order = np.argsort(which, kind="stable")
        bounds = np.searchsorted(which[order], np.arange(len(combos) + 1))
        out = []
        for c, combo in enumerate(combos):
            images = [self.catalogue_ref(found[k][0]) for k in combo if k >= 0]
            out.append((served[order[bounds[c]:bounds[c + 1]]], [i for i in images if i is not None]))
        return out

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
