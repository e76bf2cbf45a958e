"""LSST-like demo coadds: synthetic deepCoadd patches laid out as a Rubin Butler repository.

Files follow the default file template of the Butler's file datastore (daf_butler,
``configs/datastores/fileDatastore.yaml``), which for a deepCoadd (dimensions tract, patch,
band, skymap) gives::

    <run>/deepCoadd/<tract>/<patch>/<band>/deepCoadd_<tract>_<patch>_<band>_<skymap>_<run>.fits

where the run's "/" become folders in the path and "_" in the file name. Each file has the
layout afw gives an Exposure: an empty primary HDU, then IMAGE (float32, nJy), MASK (int32
bit planes named by MP_* cards) and VARIANCE (float32, nJy^2), each with the patch's WCS:
the tract's TAN frame with CRPIX shifted by the patch's outer-box origin (x0, y0), and the
origin itself as afw writes it (LTV1/LTV2 = -x0/-y0 and the PHYSICAL "A" frame). The
archive HDUs afw appends (PSF, photometric calibration...) are left out.

The pixels are a pure function of (seed, tract, band) and the TRACT pixel coordinates, so
patches of one tract agree exactly where they overlap, and any box of a tract can be made
on its own (``tract_pixels``): a cutout pasted from several patches equals the same box made
in one piece. For that the arithmetic per pixel never depends on the box: noise comes from
a hash of the pixel's coordinates, sources are drawn per fixed cell of the tract and
profiles are rational functions (no exp or pow, whose vectorised versions may round
differently from element to element).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from soda.surveys.lsst_skymap import DEMO, PixelBox, RingsSkyMap, SkyMapConfig, skymap
from soda.surveys.locks import exclusive

log = logging.getLogger(__name__)

MANIFEST = "lsst-demo.json"  # written last: the build is complete when it is there
_LOCK = ".lsst-demo.lock"
_VERSION = 1  # bump when the generated pixels or the layout change

DATASET_TYPE = "deepCoadd"
DEFAULT_RUN = "demo/coadd"
DEMO_SKYMAP = "demo_rings"  # the Butler's skymap name for the DEMO sky map config
DEFAULT_TRACT = 4849  # a DC2 tract (RA 53.8, Dec -29.0)
DEFAULT_BANDS = ("g", "r", "i")

# Mask planes, as afw names them in the MASK header (MP_<NAME> = bit). The first nine are
# afw's default planes and keep these bits in every LSST/HSC coadd; the bits of the planes
# coadds add later (CLIPPED, INEXACT_PSF, REJECTED, SENSOR_EDGE...) vary from repository to
# repository, so readers must go by the MP_ cards, never by fixed numbers.
MASK_PLANES = {
    "BAD": 0, "SAT": 1, "INTRP": 2, "CR": 3, "EDGE": 4, "DETECTED": 5,
    "DETECTED_NEGATIVE": 6, "SUSPECT": 7, "NO_DATA": 8, "CLIPPED": 9, "INEXACT_PSF": 10,
}

ZEROPOINT = 31.4  # AB magnitude of 1 nJy
SATURATION = 2.0e6  # nJy per pixel: brighter star cores are flagged SAT
# Sky noise per pixel (nJy) and PSF FWHM (arcsec) of the demo bands: round numbers of our
# own, in the range of a deep LSST coadd; not measured values.
_SKY_SIGMA = {"u": 40.0, "g": 14.0, "r": 14.0, "i": 20.0, "z": 32.0, "y": 60.0}
_SEEING = {"u": 0.95, "g": 0.85, "r": 0.78, "i": 0.74, "z": 0.72, "y": 0.72}
_COLOUR_SLOPE = {"u": 2.0, "g": 1.0, "r": 0.0, "i": -0.35, "z": -0.55, "y": -0.65}
# Physical filters of DP0.2's simulated LSSTCam (the Butler's ``physical_filter``).
PHYSICAL_FILTER = {b: f"{b}_sim_1.4" for b in "ugrizy"}

_CELL = 128  # tract pixels per side of a source cell
_REACH = 64  # no source profile is drawn farther than this from its centre (pixels)


@dataclass(frozen=True)
class _Build:
    tracts: tuple[tuple[int, tuple[int, ...]], ...]  # (tract, patches)
    bands: tuple[str, ...]
    seed: int
    run: str
    skymap: SkyMapConfig
    version: int = _VERSION


@dataclass(frozen=True)
class DemoFile:
    tract: int
    patch: int
    band: str
    path: str  # relative to the demo root


def butler_path(run: str, tract: int, patch: int, band: str, skymap_name: str = DEMO_SKYMAP,
                dataset_type: str = DATASET_TYPE) -> str:
    """The file datastore's default path of a coadd, relative to the repository root."""
    name = f"{dataset_type}_{tract}_{patch}_{band}_{skymap_name}_{run.replace('/', '_')}.fits"
    return f"{run}/{dataset_type}/{tract}/{patch}/{band}/{name}"


def central_patches(sky: RingsSkyMap, tract: int, nx: int = 2, ny: int = 2) -> tuple[int, ...]:
    """The nx x ny patches round the tract's centre."""
    t = sky.tract(tract)
    w, h = sky.config.patch_inner
    x0 = max(0, min(t.patches[0] - nx, round(t.crpix[0] / w) - nx // 2))
    y0 = max(0, min(t.patches[1] - ny, round(t.crpix[1] / h) - ny // 2))
    return tuple(sky.patch_index(tract, x, y) for y in range(y0, y0 + ny) for x in range(x0, x0 + nx))


# --- the sky model, in tract pixel coordinates --------------------------------------------

def _crc(text: str) -> int:
    return zlib.crc32(text.encode())


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a well-mixed 64-bit hash of each element (wrapping arithmetic)."""
    z = (z + np.uint64(0x9E3779B97F4A7C15)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _pixel_hash(key: int, box: PixelBox) -> np.ndarray:
    y, x = np.mgrid[box.y0:box.y1, box.x0:box.x1].astype(np.uint64)
    with np.errstate(over="ignore"):
        return _mix(_mix(np.uint64(key) ^ (y << np.uint64(32)) ^ x))


def _gaussian(key: int, box: PixelBox) -> np.ndarray:
    """Unit-variance noise from the pixel hash: the sum of four 16-bit uniforms, scaled."""
    h = _pixel_hash(key, box)
    total = np.zeros(h.shape, dtype=np.float64)
    for shift in (0, 16, 32, 48):
        total += ((h >> np.uint64(shift)) & np.uint64(0xFFFF)).astype(np.float64)
    # Each 16-bit uniform has mean 32767.5 and variance (65536^2 - 1) / 12.
    return (total - 4 * 32767.5) / math.sqrt(4 * (65536.0**2 - 1) / 12)


def _depth(box: PixelBox) -> np.ndarray:
    """Relative depth of the coadd: a smooth pattern of triangle waves, 0.7 to 1.3."""
    x = np.arange(box.x0, box.x1, dtype=np.float64) / 700.0
    y = np.arange(box.y0, box.y1, dtype=np.float64) / 530.0
    tx = np.abs(x - np.floor(x) - 0.5)
    ty = np.abs(y - np.floor(y) - 0.5)
    return 0.7 + 0.6 * (ty[:, None] + tx[None, :])


@dataclass(frozen=True)
class _Source:
    x: float
    y: float
    mag: float  # r band AB
    colour: float  # g - r
    star: bool
    size: float  # galaxies: core radius, pixels
    q: float  # axis ratio
    theta: float  # position angle, radians


def _cell_sources(seed: int, tract: int, cx: int, cy: int) -> list[_Source]:
    rng = np.random.default_rng([seed, tract, cx, cy, 0x15_57])
    sources = []
    for _ in range(int(rng.poisson(6.0))):
        star = bool(rng.random() < 0.7)
        u = rng.random()
        bright, faint = (16.0, 25.0) if star else (18.0, 24.0)
        mag = bright + math.log10(1 + u * (10 ** (0.3 * (faint - bright)) - 1)) / 0.3
        if star and rng.random() < 0.02:
            mag = float(rng.uniform(13.0, 15.0))  # a few saturated stars
        sources.append(_Source(
            x=cx * _CELL + float(rng.uniform(0, _CELL)), y=cy * _CELL + float(rng.uniform(0, _CELL)),
            mag=mag, colour=float(rng.uniform(0.2, 1.6)), star=star,
            size=float(rng.uniform(2.0, 8.0)), q=float(rng.uniform(0.3, 1.0)),
            theta=float(rng.uniform(0, math.pi))))
    return sources


def _model(seed: int, tract: int, band: str, box: PixelBox, scale: float) -> np.ndarray:
    """The noiseless sky (nJy) of a box: every source whose profile reaches into it."""
    model = np.zeros((box.ny, box.nx), dtype=np.float64)
    alpha = _SEEING[band] / scale / (2 * math.sqrt(2 ** (1 / 3) - 1))  # Moffat beta = 3
    cx0, cx1 = (box.x0 - _REACH) // _CELL, (box.x1 + _REACH) // _CELL
    cy0, cy1 = (box.y0 - _REACH) // _CELL, (box.y1 + _REACH) // _CELL
    for cy in range(cy0, cy1 + 1):
        for cx in range(cx0, cx1 + 1):
            for s in _cell_sources(seed, tract, cx, cy):
                ix, iy = math.floor(s.x), math.floor(s.y)
                stamp = PixelBox(ix - _REACH, iy - _REACH, 2 * _REACH + 1, 2 * _REACH + 1)
                part = stamp.intersection(box)
                if part is None:
                    continue
                flux = 10 ** (-0.4 * (s.mag + s.colour * _COLOUR_SLOPE[band] - ZEROPOINT))
                dx = np.arange(part.x0, part.x1, dtype=np.float64)[None, :] - s.x
                dy = np.arange(part.y0, part.y1, dtype=np.float64)[:, None] - s.y
                if s.star:
                    t = 1.0 + (dx * dx + dy * dy) / (alpha * alpha)
                    profile = (flux * 2 / (math.pi * alpha * alpha)) / (t * t * t)
                else:
                    c, si = math.cos(s.theta), math.sin(s.theta)
                    major, minor = dx * c + dy * si, (dy * c - dx * si) / s.q
                    r2 = s.size * s.size + alpha * alpha  # the PSF widens the core
                    t = 1.0 + (major * major + minor * minor) / r2
                    profile = (flux / (math.pi * r2 * s.q)) / (t * t)  # Moffat beta = 2
                model[part.slices((box.x0, box.y0))] += profile
    return model


def tract_pixels(tract: int, band: str, box: PixelBox, seed: int = 0,
                 config: SkyMapConfig = DEMO) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, mask, variance) of a box of tract pixels; the same pixel always has the same values."""
    if band not in _SKY_SIGMA:
        raise ValueError(f"unknown band {band!r}: not one of {', '.join(_SKY_SIGMA)}")
    key = (seed * 1_000_003 + tract) * 131 + _crc(band)
    model = _model(seed, tract, band, box, config.pixel_scale)
    sky_var = _SKY_SIGMA[band] ** 2 / _depth(box)
    image = _gaussian(key, box) * np.sqrt(sky_var) + model
    variance = sky_var + 0.01 * _SKY_SIGMA[band] * np.maximum(model, 0.0)  # sky + source noise
    mask = np.zeros(model.shape, dtype=np.int32)
    mask[model > 5 * _SKY_SIGMA[band]] |= 1 << MASK_PLANES["DETECTED"]
    saturated = model > SATURATION
    mask[saturated] |= 1 << MASK_PLANES["SAT"]
    image[saturated] = SATURATION
    bad = (_pixel_hash(key ^ 0xBAD, box) % np.uint64(20000)) == 0  # a few bad pixels
    mask[bad] |= 1 << MASK_PLANES["BAD"]
    image[bad] = 0.0
    variance[bad] = np.inf
    return image.astype(np.float32), mask, variance.astype(np.float32)


# --- files ---------------------------------------------------------------------------------

def _ids(header: fits.Header, tract: int, patch: int, band: str, sky: RingsSkyMap) -> None:
    header["TRACT"] = (tract, "sky map tract")
    header["PATCH"] = (patch, "patch: sequential index y * nx + x")
    x, y = sky.patch_xy(tract, patch)
    header["PATCH_X"] = (x, "patch x index")
    header["PATCH_Y"] = (y, "patch y index")
    header["BAND"] = (band, "abstract filter")
    header["FILTER"] = (PHYSICAL_FILTER[band], "physical filter")


def _plane_header(sky: RingsSkyMap, tract: int, patch: int, band: str, extname: str) -> fits.Header:
    _, outer = sky.patch_boxes(tract, patch)
    header = fits.Header()
    header["INHERIT"] = True
    header["EXTTYPE"] = extname
    header.update(sky.patch_wcs(tract, patch).to_header())
    # afw keeps the image origin (xy0) in the IRAF convention and as a second WCS.
    header["LTV1"] = -outer.x0
    header["LTV2"] = -outer.y0
    header["CRPIX1A"], header["CRPIX2A"] = 1.0, 1.0
    header["CRVAL1A"], header["CRVAL2A"] = float(outer.x0), float(outer.y0)
    header["CTYPE1A"], header["CTYPE2A"] = "LINEAR", "LINEAR"
    header["CUNIT1A"], header["CUNIT2A"] = "PIXEL", "PIXEL"
    header["WCSNAMEA"] = "PHYSICAL"
    _ids(header, tract, patch, band, sky)
    if extname == "IMAGE":
        header["BUNIT"] = "nJy"
    elif extname == "VARIANCE":
        header["BUNIT"] = "nJy2"
    else:
        for name, bit in MASK_PLANES.items():
            header[f"HIERARCH MP_{name}" if len(name) > 5 else f"MP_{name}"] = bit
    return header


def write_patch(path: Path, tract: int, patch: int, band: str, seed: int = 0,
                config: SkyMapConfig = DEMO, run: str = DEFAULT_RUN) -> None:
    """One deepCoadd file: the patch's outer box of the tract's pixels."""
    sky = skymap(config)
    _, outer = sky.patch_boxes(tract, patch)
    image, mask, variance = tract_pixels(tract, band, outer, seed, config)
    primary = fits.PrimaryHDU()
    _ids(primary.header, tract, patch, band, sky)
    primary.header["RUN"] = (run, "Butler run collection")
    primary.header["ORIGIN"] = "cutout-service demo"
    primary.header["COMMENT"] = "Synthetic LSST-like deepCoadd patch: not real data."
    hdus = [primary]
    for name, data in (("IMAGE", image), ("MASK", mask), ("VARIANCE", variance)):
        hdus.append(fits.ImageHDU(data=data, header=_plane_header(sky, tract, patch, band, name),
                                  name=name))
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList(hdus).writeto(path)


def _files(build: _Build) -> list[DemoFile]:
    return [DemoFile(tract, patch, band, butler_path(build.run, tract, patch, band))
            for tract, patches in build.tracts for patch in patches for band in build.bands]


def _manifest_text(build: _Build, files: Sequence[DemoFile]) -> str:
    content = {"build": asdict(build), "files": [asdict(f) for f in files]}
    return json.dumps(content, indent=1) + "\n"


def _up_to_date(root: Path, text: str, files: Sequence[DemoFile]) -> bool:
    try:
        current = (root / MANIFEST).read_text(encoding="utf-8")
    except OSError:
        return False
    return current == text and all((root / f.path).is_file() for f in files)


def build_lsst_demo(root: Path, tracts: dict[int, Sequence[int]] | None = None,
                    bands: Sequence[str] = DEFAULT_BANDS, seed: int = 0,
                    run: str = DEFAULT_RUN, config: SkyMapConfig = DEMO) -> Path:
    """Write the demo coadds under ``root``; returns the manifest (written last).

    ``tracts`` maps a tract to its patches (sequential indices); by default the 2 x 2
    patches round the centre of tract 4849. Nothing is rewritten when ``root`` already
    holds exactly this build.
    """
    sky = skymap(config)
    if tracts is None:
        tracts = {DEFAULT_TRACT: central_patches(sky, DEFAULT_TRACT)}
    build = _Build(tuple((int(t), tuple(int(p) for p in ps)) for t, ps in sorted(tracts.items())),
                   tuple(bands), int(seed), run, config)
    unknown = [b for b in build.bands if b not in _SKY_SIGMA]
    if unknown or not build.bands or build.seed < 0 or not build.tracts or not run.strip("/"):
        raise ValueError(f"need bands among {', '.join(_SKY_SIGMA)}, seed >= 0, a run and tracts "
                         f"(got {build.bands}, {build.seed}, {run!r}, {build.tracts})")
    for tract, patches in build.tracts:
        for patch in patches:
            sky.patch_xy(tract, patch)  # IndexError for a tract or patch the map lacks
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    files = _files(build)
    text = _manifest_text(build, files)
    with exclusive(root / _LOCK):  # one builder per folder
        if not _up_to_date(root, text, files):
            log.info("building %d LSST demo coadds in %s", len(files), root)
            staging = Path(tempfile.mkdtemp(prefix=".lsst-demo-", dir=root))
            try:
                for f in files:
                    write_patch(staging / f.path, f.tract, f.patch, f.band, build.seed, config, run)
                for f in files:
                    (root / f.path).parent.mkdir(parents=True, exist_ok=True)
                    os.replace(staging / f.path, root / f.path)
                tmp = root / f".{MANIFEST}.{os.getpid()}.tmp"
                tmp.write_text(text, encoding="utf-8")
                os.replace(tmp, root / MANIFEST)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return root / MANIFEST


def demo_files(root: Path) -> list[DemoFile]:
    """The files a built demo holds, from its manifest."""
    content = json.loads((Path(root) / MANIFEST).read_text(encoding="utf-8"))
    return [DemoFile(**f) for f in content["files"]]


def ensure_lsst_demo(root: Path) -> Path:
    """``root``; the default LSST demo (2 x 2 patches of tract 4849 in g, r, i, on the DEMO
    sky map) is built only when no demo build is there. The survey serving it needs
    ``skymap = "demo"`` (the default configuration's lsst survey has it)."""
    root = Path(root)
    if not (root / MANIFEST).exists():
        build_lsst_demo(root)
    return root
