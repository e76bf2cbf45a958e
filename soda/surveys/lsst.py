"""LSST coadds: the survey over ingested deepCoadd patches, and the Butler layout recogniser.

An image is one band of one patch; its name is "<tract>_<patch>_<band>" (the patch as its
Gen3 sequential index) and its field "<tract>_<patch>": every band of a patch shares the
patch's pixel grid, and every patch of a tract shares the tract's (soda.surveys.lsst_skymap).
The files are found through the image catalogue (soda.surveys.catalogue), never by
listing folders; the sky map says which tract and patch serve a position.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from astropy.io import fits

from soda.surveys.base import ImageRef, Recognised, Served, Survey
from soda.surveys.catalogue import CatalogueImage, ImageCatalogue
from soda.surveys.lsst_skymap import DC2, DEMO, HSC_RINGS_120, PixelBox, SkyMapConfig
from soda.surveys.lsst_skymap import skymap as make_skymap

HDUS = ("IMAGE", "MASK", "VARIANCE")

# LSSTCam ugrizy filter edges in metres, as commonly quoted for the LSST baseline (u 320-400,
# g 400-552, r 552-691, i 691-818, z 818-922, y 948-1060 nm). Unverified: we found no public
# page to read these numbers from (the exact curves are the Butler's ``standard_passband``
# datasets and lsst/throughputs); treat them as approximate.
BAND_RANGES: dict[str, tuple[float, float]] = {
    "u": (320e-9, 400e-9),
    "g": (400e-9, 552e-9),
    "r": (552e-9, 691e-9),
    "i": (691e-9, 818e-9),
    "z": (818e-9, 922e-9),
    "y": (948e-9, 1060e-9),
}

# Sky maps by the name a survey's settings give (``options = {skymap = "..."}``).
SKYMAPS: dict[str, SkyMapConfig] = {"dc2": DC2, "hsc_rings_120": HSC_RINGS_120, "demo": DEMO}

_NAME = re.compile(r"^(\d+)_(\d+)_([ugrizy])$")
# deepCoadd_<tract>_<patch>_<band>_..._<run>.fits, the file datastore's default template;
# other coadd dataset types (deepCoadd_calexp, goodSeeingCoadd...) are named alike.
_FILE = re.compile(r"^(?P<type>[A-Za-z]*Coadd(?:_calexp)?)_(?P<tract>\d+)_(?P<patch>\d+)_"
                   r"(?P<band>[ugrizy])_.*\.fits(?:\.fz|\.gz)?$")


def parse_name(name: str) -> tuple[int, int, str] | None:
    """(tract, patch, band) of an image name; None when it is not one."""
    match = _NAME.match(name)
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), match.group(3)


def _card(headers: Sequence[fits.Header], key: str) -> object | None:
    for header in headers:
        if key in header:
            return header[key]
    return None


class LSSTSurvey(Survey):
    """LSST deepCoadd patches: the sky map finds the patch, the catalogue its files."""

    def __init__(self, catalogue: ImageCatalogue | None = None, *, authority: str, name: str = "lsst",
                 hdus: Sequence[str] = (), band_ranges: Mapping[str, tuple[float, float]] | None = None,
                 root: Path | None = None, skymap: str = "dc2", skymap_config: SkyMapConfig | None = None,
                 **_: object) -> None:
        """``skymap`` names the sky map the patches were cut on (a key of SKYMAPS; the demo's
        is "demo"); ``skymap_config`` gives one directly. ``hdus`` empty: those the ingest
        found (IMAGE, MASK, VARIANCE)."""
        if skymap_config is None:
            if skymap not in SKYMAPS:
                raise ValueError(f"survey {name}: unknown sky map {skymap!r} (known: {', '.join(SKYMAPS)})")
            skymap_config = SKYMAPS[skymap]
        self.root = Path(root) if root is not None else None
        self.authority = authority
        self.name = name
        self.hdus = tuple(hdus)
        self.ranges = {**BAND_RANGES, **(band_ranges or {})}
        self.bands = tuple(self.ranges)
        self.catalogue = catalogue
        self.skymap = make_skymap(skymap_config)
        self._prefix = f"ivo://{authority}/{name}?".lower()

    # --- names and files ------------------------------------------------------------------

    def dataset_id(self, tract: int, patch: int, band: str) -> str:
        return f"ivo://{self.authority}/{self.name}?{tract}_{patch}_{band}"

    def _ref(self, tract: int, patch: int, band: str) -> ImageRef | None:
        if self.catalogue is None:
            return None
        image = self.catalogue.get(self.name, f"{tract}_{patch}_{band}")
        return None if image is None else self.catalogue_ref(image)

    def catalogue_ref(self, image: CatalogueImage) -> ImageRef | None:
        parsed = parse_name(image.name)
        if parsed is None:
            return None
        tract, patch, band = parsed
        return ImageRef(dataset_id=self.dataset_id(tract, patch, band), survey=self.name,
                        tile=f"{tract}_{patch}", band=band, path=image.path,
                        hdus=self.hdus or image.hdus or HDUS, pixels=image.pixels)

    def by_id(self, dataset_id: str) -> ImageRef | None:
        # The authority and the resource path of an IVOA identifier are case-insensitive.
        head, rest = dataset_id[:len(self._prefix)], dataset_id[len(self._prefix):]
        if head.lower() != self._prefix:
            return None
        parsed = parse_name(rest)
        return self._ref(*parsed) if parsed else None

    def at(self, ra: float, dec: float, bands: Sequence[str]) -> list[ImageRef]:
        """The patch whose inner box holds the position, in the first tract (in the sky map's
        order of preference) that holds it and has images in those bands."""
        for tract in self.skymap.tracts_at(ra, dec):
            found = self.skymap.patch_at(tract, ra, dec)
            if found is None:
                continue
            refs = [self._ref(tract, found[0], band) for band in bands]
            refs = [ref for ref in refs if ref is not None]
            if refs:
                return refs
        # No patch of those tracts was ingested there: another patch's border may hold it.
        return self.held(ra, dec, bands)

    def at_many(self, ra: np.ndarray, dec: np.ndarray, bands: Sequence[str]) -> list[Served]:
        """``at`` of many positions: grouped by the sky map's first tract for each, the patch
        of each found in that tract's pixels all at once, each patch's images looked up
        once. The positions that tract does not serve, if any image holds them at all, are
        asked of ``at`` one by one (its other tracts, then ``held``)."""
        ra, dec = np.asarray(ra, dtype=float), np.asarray(dec, dtype=float)
        sky = self.skymap
        tracts = sky.find_tracts(ra, dec)
        patch = np.full(len(ra), -1, dtype=np.int64)
        for tract in np.unique(tracts[tracts >= 0]):
            rows = np.flatnonzero(tracts == tract)
            patch[rows] = sky.patches_at(int(tract), ra[rows], dec[rows])
        out: list[Served] = []
        left: list[np.ndarray] = []
        keys, which = np.unique(np.where(patch >= 0, tracts * 1_000_000 + patch, -1), return_inverse=True)
        which = which.reshape(-1)
        order = np.argsort(which, kind="stable")
        bounds = np.searchsorted(which[order], np.arange(len(keys) + 1))
        for k, key in enumerate(keys):
            rows = order[bounds[k]:bounds[k + 1]]
            refs = [] if key < 0 else [r for r in (self._ref(int(key) // 1_000_000, int(key) % 1_000_000, band)
                                                   for band in bands) if r is not None]
            if refs:
                out.append((rows, refs))
            else:
                left.append(rows)
        if left and self.catalogue is not None:
            rest = np.sort(np.concatenate(left))
            held = np.sort(np.concatenate([rows for _, rows in self.catalogue.holding(self.name, ra[rest], dec[rest])]
                                          or [np.zeros(0, dtype=np.int64)]))
            groups: dict[tuple[str, ...], tuple[list[int], list[ImageRef]]] = {}
            for i in np.unique(rest[held]):
                images = self.at(float(ra[i]), float(dec[i]), bands)
                if images:
                    groups.setdefault(tuple(im.dataset_id for im in images), ([], images))[0].append(int(i))
            out += [(np.asarray(rows, dtype=np.int64), images) for rows, images in groups.values()]
        return out

    def sibling(self, image: ImageRef, band: str) -> ImageRef | None:
        parsed = parse_name(f"{image.tile}_{band}")
        return self._ref(*parsed) if parsed else None

    def band_range(self, band: str) -> tuple[float, float]:
        return self.ranges[band]

    def images_per_band(self) -> dict[str, int] | None:
        if self.catalogue is None:
            return {}
        counts = self.catalogue.bands(self.name)
        return {band: counts[band] for band in self.bands if counts.get(band)}

    def example(self) -> ImageRef | None:
        if self.catalogue is None:
            return None
        image = self.catalogue.first(self.name)
        parsed = parse_name(image.name) if image else None
        return self._ref(*parsed) if parsed else None

    # --- the grid shared by the patches of a tract ----------------------------------------

    @staticmethod
    def same_grid(a: ImageRef, b: ImageRef) -> bool:
        """Whether two images share one pixel grid: LSST patches of the same tract do."""
        return a.survey == b.survey and a.tile.split("_")[0] == b.tile.split("_")[0]

    def neighbour_fields(self, image: ImageRef, ra: float, dec: float, radius: float) -> list[str]:
        """The fields ("<tract>_<patch>") of the image's tract whose outer boxes meet a circle.

        The circle (degrees) is bounded by its box of tract pixels, so a patch that only
        touches the box's corners is listed too; the caller cuts what is really there.
        """
        tract = int(image.tile.split("_")[0])
        centre = self.skymap.tract_pixel(tract, ra, dec)
        if centre is None:
            return []
        reach = radius * 3600.0 / self.skymap.config.pixel_scale + 1.0
        x0, y0 = int(centre[0] - reach + 0.5), int(centre[1] - reach + 0.5)
        x1, y1 = int(centre[0] + reach + 0.5) + 1, int(centre[1] + reach + 0.5) + 1
        box = PixelBox(x0, y0, x1 - x0, y1 - y0)
        return [f"{tract}_{patch}" for patch in self.skymap.patches_in_box(tract, box)]

    def neighbours(self, image: ImageRef, ra: float, dec: float, radius: float) -> list[ImageRef]:
        """The image's band in the other patches of its tract that meet the circle and were
        ingested, nearest first (by the sky map, not the catalogue's footprints)."""
        found = []
        for name in self.neighbour_fields(image, ra, dec, radius):
            parsed = parse_name(f"{name}_{image.band}")
            ref = self._ref(*parsed) if parsed and name != image.tile else None
            if ref is not None:
                found.append(ref)
        tract = int(image.tile.split("_")[0])
        here = self.skymap.tract_pixel(tract, ra, dec)
        if here is None:
            return found
        hx, hy = here

        def distance(ref: ImageRef) -> float:  # tract pixels to the centre of the patch's inner box
            inner, _ = self.skymap.patch_boxes(tract, int(ref.tile.split("_")[1]))
            return math.hypot(inner.x0 + inner.nx / 2 - hx, inner.y0 + inner.ny / 2 - hy)

        return sorted(found, key=distance)

    # --- ingest -----------------------------------------------------------------------------

    @classmethod
    def recognise(cls, path: Path, hdul: fits.HDUList,
                  band_map: Mapping[str, str] | None = None) -> list[Recognised] | None:
        """What an LSST coadd file holds, from its TRACT/PATCH/BAND cards or else its Butler
        file name; None when it is not one (no IMAGE plane, or no tract, patch and band).
        ``band_map`` renames a header's band before it is checked against ugrizy."""
        names = [hdu.name for hdu in hdul]
        if "IMAGE" not in names:
            return None
        headers = [hdu.header for hdu in hdul]
        tract, patch, band = (_card(headers, key) for key in ("TRACT", "PATCH", "BAND"))
        match = _FILE.match(Path(path).name)
        if match and (tract is None or patch is None or band is None):
            tract, patch, band = match["tract"], match["patch"], match["band"]
        try:
            tract, patch = int(str(tract)), int(str(patch))
        except ValueError:
            return None
        band = str(band).strip()
        band = (band_map or {}).get(band, band)
        if band not in BAND_RANGES or tract < 0 or patch < 0:
            return None
        extra = {"tract": str(tract), "patch": str(patch)}
        physical = _card(headers, "FILTER")
        if physical is not None:
            extra["physical_filter"] = str(physical)
        if match:
            extra["dataset_type"] = match["type"]
        hdus = tuple(h for h in HDUS if h in names)
        return [Recognised(name=f"{tract}_{patch}_{band}", field=f"{tract}_{patch}", band=band,
                           hdus=hdus, extra=extra)]
