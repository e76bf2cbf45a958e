"""Cutouts across image edges (soda/engine/mosaic.py), through the pipeline: assembled from
the neighbouring images, compared with the same region cut from one larger image.

LSST: the demo patches of one tract share its grid, so a region over a patch corner must
equal ``tract_pixels`` of the same box exactly, in every plane.

DES: small tiles of the real tiling (the real tile centres and footprints, 100 pixels a
side, so 26.3"/px) with their own tangent points, sampling one smooth sky function; the
assembly resamples the neighbours bilinearly onto the first tile's grid and must equal a
larger image on that grid, sampled from the same function, within the interpolation error
of bilinear interpolation: |error| <= h^2/8 (max|f_xx| + max|f_yy|), which for a sum of
Gaussians A exp(-r^2 / 2 sigma^2) (h = 1 pixel, sigma in pixels) is at most
sum A / (4 sigma^2). Masks are nearest-neighbour, exact wherever the mask function is
constant within 1.5 pixels.

The DES tiles (written under DESDM names) and the LSST patches are ingested into the
service's image index (soda/index, SQLite); DES finds a tile's neighbours through it, LSST
through its sky map.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import peewee as pw
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from PIL import Image

from conf import load_settings
from dali.errors import UsageError
from soda.cutouts import CutoutLimits, Cutouts
from soda.engine.cutout import cut
from soda.engine.pixels import shifted
from soda.sky.regions import Circle
from soda.sky.sphere import separation
from soda.surveys.base import ImageRef
from soda.surveys.des import DESSurvey, tile_centre, tile_for, tile_wcs, unique_area
from soda.surveys.lsst import LSSTSurvey
from soda.surveys.lsst_demo import DEFAULT_TRACT, build_lsst_demo, central_patches, tract_pixels
from soda.surveys.lsst_skymap import DEMO
from soda.surveys.lsst_skymap import PixelBox as TractBox
from soda.surveys.lsst_skymap import skymap
from soda.surveys.registry import Datasets
from soda.index.catalogue import IndexCatalogue
from soda.index.ingest import ingest
from soda.index.tables import MIGRATIONS as INDEX_MIGRATIONS
from soda.ops.database import migrate, open_database

AUTHORITY = "demo.cutout"
LIMITS = CutoutLimits(max_pixels=25_000_000, max_cutouts=None, max_preview_source=25_000_000, name="the test limit")


def _index(path: Path) -> pw.Database:
    """An empty image index (the service's, on SQLite)."""
    db = open_database(f"sqlite:///{path}")
    migrate(db, [("images", INDEX_MIGRATIONS)])
    return db


def _pipeline(tmp: Path, survey: object) -> Cutouts:
    settings = load_settings(environ={"CUTOUT_DATA_DIR": str(tmp)})
    return Cutouts(Datasets({survey.name: survey}, AUTHORITY), settings)  # type: ignore[attr-defined]


def _cut_fits(cutouts: Cutouts, circle: Circle, limits: CutoutLimits = LIMITS) -> fits.HDUList:
    request = cutouts.parse([("CIRCLE", f"{circle.ra!r} {circle.dec!r} {circle.radius!r}")])
    targets = cutouts.plan(request)
    assert len(targets) == 1 and targets[0].images, targets
    body = cutouts.make(targets, request, limits)
    assert body is not None
    return fits.open(io.BytesIO(body))


# --- LSST: patches of one tract ----------------------------------------------------------------

LSST_SEED = 2


@pytest.fixture(scope="module")
def lsst(tmp_path_factory: pytest.TempPathFactory) -> tuple[Cutouts, LSSTSurvey]:
    root = tmp_path_factory.mktemp("lsst-mosaic")
    build_lsst_demo(root, bands=("r",), seed=LSST_SEED)
    data = tmp_path_factory.mktemp("lsst-data")
    db = _index(data / "index.sqlite")
    report = ingest(db, "lsst", LSSTSurvey, [root])
    assert report.bad == [] and report.images == 4, report
    survey = LSSTSurvey(catalogue=IndexCatalogue(db), authority=AUTHORITY, root=root, skymap="demo")
    return _pipeline(data, survey), survey


def test_lsst_patch_corner_equals_the_tract_pixels(lsst: tuple[Cutouts, LSSTSurvey]) -> None:
    cutouts, _ = lsst
    sky = skymap(DEMO)
    inner, _ = sky.patch_boxes(DEFAULT_TRACT, central_patches(sky, DEFAULT_TRACT)[0])
    ra, dec = sky.tract_wcs(DEFAULT_TRACT).pixel_to_world_values(inner.x1 - 3.2, inner.y1 + 4.7)
    circle = Circle(float(ra), float(dec), 40 * DEMO.pixel_scale / 3600)  # 80 pixels across
    with _cut_fits(cutouts, circle) as hdul:
        assert [h.name for h in hdul[1:]] == ["IMAGE", "MASK", "VARIANCE"]
        head = hdul["IMAGE"].header
        x0, y0 = -int(head["LTV1"]), -int(head["LTV2"])  # the box in tract pixels
        ny, nx = hdul["IMAGE"].data.shape
        assert (nx, ny) == (81, 81)
        assert x0 < inner.x1 - 10 and x0 + nx > inner.x1 + 10 and y0 < inner.y1 - 10 and y0 + ny > inner.y1 + 10
        image, mask, variance = tract_pixels(DEFAULT_TRACT, "r", TractBox(x0, y0, nx, ny), LSST_SEED, DEMO)
        np.testing.assert_array_equal(hdul["IMAGE"].data, image)
        np.testing.assert_array_equal(hdul["MASK"].data, mask)
        np.testing.assert_array_equal(hdul["VARIANCE"].data, variance)
        for plane in hdul[1:]:
            h = plane.header
            assert h["MOSAIC"] is True and h["RESAMPLE"] == "none" and h["NSRCIMG"] == 4
            sources = [h[f"SRCIMG{n}"] for n in range(1, 5)]
            assert sources[0] == h["DATASET"] and len(set(sources)) == 4
        # The WCS of the cutout still places its pixels where the tract's does.
        here = WCS(head).pixel_to_world_values(0, 0)
        there = sky.tract_wcs(DEFAULT_TRACT).pixel_to_world_values(x0, y0)
        assert np.allclose(here, there, atol=1e-10)


def test_lsst_patch_corner_picture(lsst: tuple[Cutouts, LSSTSurvey]) -> None:
    """A PNG across the corner shows the assembled pixels and names its sources."""
    cutouts, _ = lsst
    sky = skymap(DEMO)
    inner, _ = sky.patch_boxes(DEFAULT_TRACT, central_patches(sky, DEFAULT_TRACT)[0])
    ra, dec = sky.tract_wcs(DEFAULT_TRACT).pixel_to_world_values(inner.x1, inner.y1)
    request = cutouts.parse([("CIRCLE", f"{float(ra)!r} {float(dec)!r} {40 * DEMO.pixel_scale / 3600!r}"),
                             ("RESPONSEFORMAT", "png")])
    body = cutouts.make(cutouts.plan(request), request, LIMITS)
    assert body is not None
    with Image.open(io.BytesIO(body)) as picture:
        assert picture.size == (81, 81)
        assert picture.text["mosaic"].count("ivo://") == 4


def test_lsst_inside_one_patch_is_not_assembled(lsst: tuple[Cutouts, LSSTSurvey]) -> None:
    cutouts, _ = lsst
    sky = skymap(DEMO)
    inner, _ = sky.patch_boxes(DEFAULT_TRACT, central_patches(sky, DEFAULT_TRACT)[0])
    ra, dec = sky.tract_wcs(DEFAULT_TRACT).pixel_to_world_values(inner.x0 + 100, inner.y0 + 100)
    with _cut_fits(cutouts, Circle(float(ra), float(dec), 20 * DEMO.pixel_scale / 3600)) as hdul:
        assert "MOSAIC" not in hdul["IMAGE"].header
        assert hdul["IMAGE"].data.shape == (41, 41)


# --- DES: tiles of the real tiling, each with its own tangent point ------------------------------

SIDE = 100                     # pixels a side: the real tiles' footprints at 1/100 of the pixels
SCALE = 10000 / SIDE * 0.263   # arcsec per pixel
GAUSSIANS = (  # (RA offset, Dec offset from the corner in degrees, sigma in pixels, amplitude)
    (-0.05, 0.03, 9.0, 1000.0), (0.08, -0.06, 14.0, 600.0), (0.02, 0.1, 20.0, -300.0))
WEIGHT = ((0.0, 0.0, 25.0, 40.0),)
FIRST = "DES0139-4457"


def _corner() -> tuple[float, float]:
    """Just inside the south-east corner of the first tile's unique area."""
    _, ra_max, dec_min, _ = unique_area(FIRST)
    return ra_max - 0.01, dec_min + 0.01


def _sky(ra: np.ndarray, dec: np.ndarray, gaussians: Sequence[tuple[float, float, float, float]]) -> np.ndarray:
    ra0, dec0 = _corner()
    total = np.full(np.shape(ra), 100.0)
    for dra, ddec, sigma, amplitude in gaussians:
        r = separation(ra0 + dra / math.cos(math.radians(dec0)), dec0 + ddec, ra, dec) * 3600 / SCALE
        total = total + amplitude * np.exp(-0.5 * (r / sigma) ** 2)
    return total


def _tolerance(gaussians: Sequence[tuple[float, float, float, float]]) -> float:
    """The bound on bilinear interpolation error (module docstring), plus float32 rounding."""
    return sum(abs(a) / (4 * s * s) for _, _, s, a in gaussians) + 1e-3


def _mask(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    ra0, dec0 = _corner()
    mask = np.where(dec < dec0 - 0.02, 1, 0) | np.where(ra > ra0 + 0.03, 1 << 30, 0)
    return mask.astype(np.int32)


def _unambiguous(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Pixels whose mask value holds within 1.5 pixels around them."""
    ra0, dec0 = _corner()
    margin = 1.5 * SCALE / 3600
    return (np.abs(dec - (dec0 - 0.02)) > margin) & (np.abs(ra - (ra0 + 0.03)) * math.cos(math.radians(dec0)) > margin)


def _grid(name: str) -> WCS:
    wcs = tile_wcs(name, (SIDE, SIDE))
    wcs.wcs.cd = wcs.wcs.cd * (10000 / SIDE)
    return wcs


def _write(path: Path, wcs: WCS, shape: tuple[int, int]) -> None:
    ny, nx = shape
    ra, dec = wcs.pixel_to_world_values(*np.meshgrid(np.arange(nx), np.arange(ny)))
    header = wcs.to_header()
    hdus = [fits.PrimaryHDU(),
            fits.ImageHDU(_sky(ra, dec, GAUSSIANS).astype(np.float32), header, name="SCI"),
            fits.ImageHDU(_mask(ra, dec), header, name="MSK"),
            fits.ImageHDU(_sky(ra, dec, WEIGHT).astype(np.float32), header, name="WGT")]
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList(hdus).writeto(path)


def _tiles_near(ra: float, dec: float, radius: float) -> list[str]:
    angles = np.linspace(0, 2 * math.pi, 72)
    found = {tile_for(ra + radius * math.sin(a) / math.cos(math.radians(dec)), dec + radius * math.cos(a))
             for a in angles}
    return sorted(t for t in found | {tile_for(ra, dec)} if t is not None)


def _des(root: Path, tiles: Sequence[str], db_path: Path) -> tuple[DESSurvey, list[str]]:
    """The tiles written as DESDM names them, ingested into a real image index."""
    for tile in tiles:
        _write(root / tile / f"{tile}_r4575p01_r.fits", _grid(tile), (SIDE, SIDE))
    db = _index(db_path)
    report = ingest(db, "des", DESSurvey, [root])
    assert report.bad == [] and report.images == len(tiles), report
    return DESSurvey(catalogue=IndexCatalogue(db), authority=AUTHORITY), list(tiles)


REGION_RADIUS = 0.12  # degrees: about 33 pixels across


@pytest.fixture(scope="module")
def des(tmp_path_factory: pytest.TempPathFactory) -> tuple[Cutouts, DESSurvey, list[str]]:
    tiles = _tiles_near(*_corner(), REGION_RADIUS * 1.5)
    assert FIRST in tiles and len(tiles) >= 3  # two in the first tile's row, one or two south of it
    data = tmp_path_factory.mktemp("des-data")
    survey, tiles = _des(tmp_path_factory.mktemp("des-tiles"), tiles, data / "index.sqlite")
    return _pipeline(data, survey), survey, tiles


def test_des_tile_corner_equals_one_larger_image(des: tuple[Cutouts, DESSurvey, list[str]], tmp_path: Path) -> None:
    cutouts, _, tiles = des
    circle = Circle(*_corner(), REGION_RADIUS)
    # The larger image: the first tile's grid carried 40 pixels past every edge.
    big = tmp_path / "big.fits"
    _write(big, shifted(_grid(FIRST), -40, -40), (SIDE + 80, SIDE + 80))
    whole = cut(ImageRef("ivo://x/y?big", "des", "big", "r", big, ("SCI", "MSK", "WGT")), circle)
    assert whole is not None
    with _cut_fits(cutouts, circle) as hdul:
        head = hdul["SCI"].header
        assert head["DATASET"].endswith(f"{FIRST}_r")
        x0, y0 = -int(head["LTV1"]), -int(head["LTV2"])  # the box on the first tile's grid
        assert (x0 + 40, y0 + 40) == (whole.box.x0, whole.box.y0)
        assert hdul["SCI"].data.shape == whole.box.shape
        outside = np.ones(whole.box.shape, dtype=bool)  # pixels the first tile does not have
        outside[max(0, -y0):SIDE - y0, max(0, -x0):SIDE - x0] = False
        assert outside.sum() > 0.4 * outside.size
        for name, gaussians in (("SCI", GAUSSIANS), ("WGT", WEIGHT)):
            got, want = hdul[name].data, whole.planes[[p.name for p in whole.planes].index(name)].data
            assert not np.any(np.isnan(got))
            error = np.abs(got.astype(float) - want)
            assert error.max() <= _tolerance(gaussians), (name, error.max(), _tolerance(gaussians))
            assert error[~outside].max() == 0  # the first tile's own pixels are copied
            assert hdul[name].header["RESAMPLE"] == "bilinear"
        ra, dec = WCS(head).pixel_to_world_values(*np.meshgrid(np.arange(whole.box.shape[1]),
                                                               np.arange(whole.box.shape[0])))
        clear = _unambiguous(ra, dec)
        assert clear[outside].sum() > 0.8 * outside.sum()
        mask = hdul["MSK"].data
        assert mask.dtype.kind == "i"
        np.testing.assert_array_equal(mask[clear], whole.planes[1].data[clear])
        assert set(np.unique(mask[outside])) == {0, 1, 1 << 30, 1 | 1 << 30}
        assert hdul["MSK"].header["RESAMPLE"] == "nearest"
        sources = [head[f"SRCIMG{n}"] for n in range(1, head["NSRCIMG"] + 1)]
        assert head["MOSAIC"] is True and sources[0] == head["DATASET"] and len(sources) >= 3
        assert {s.rpartition("?")[2] for s in sources} <= {f"{t}_r" for t in tiles}


def test_des_seams_follow_the_nearest_tile_centre(des: tuple[Cutouts, DESSurvey, list[str]]) -> None:
    """Off the first tile, each pixel comes from the tile whose centre is nearest: resampling
    that tile alone gives exactly the pixel's value."""
    cutouts, survey, tiles = des
    circle = Circle(*_corner(), REGION_RADIUS)
    with _cut_fits(cutouts, circle) as hdul:
        wcs = WCS(hdul["SCI"].header)
        ny, nx = hdul["SCI"].data.shape
        ra, dec = wcs.pixel_to_world_values(*np.meshgrid(np.arange(nx), np.arange(ny)))
        x, y = _grid(FIRST).world_to_pixel_values(ra, dec)
        mine = (x > -0.5) & (x < SIDE - 0.5) & (y > -0.5) & (y < SIDE - 0.5)
        others = sorted(t for t in tiles if t != FIRST)
        pixels = []  # each pixel's position on every other tile, and whether it is there
        for tile in others:
            tx, ty = _grid(tile).world_to_pixel_values(ra[~mine], dec[~mine])
            pixels.append((tx, ty, (tx >= -0.5) & (tx < SIDE - 0.5) & (ty >= -0.5) & (ty < SIDE - 0.5)))
        distance = np.array([np.where(there, separation(*tile_centre(t), ra[~mine], dec[~mine]), np.inf)
                             for t, (_, _, there) in zip(others, pixels)])
        nearest = np.argmin(distance, axis=0)
        assert np.all(np.isfinite(distance.min(axis=0)))
        assert len(set(nearest)) >= 2  # the seams of several tiles cross the cutout
        for k, tile in enumerate(others):  # the mask is the nearest tile's own pixel
            tx, ty, _ = pixels[k]
            with fits.open(survey.at(*tile_centre(tile), ["r"])[0].path) as tile_file:
                iy, ix = (np.clip(np.round(v), 0, SIDE - 1).astype(int) for v in (ty, tx))
                own = tile_file["MSK"].data[iy, ix][nearest == k]
            np.testing.assert_array_equal(hdul["MSK"].data[~mine][nearest == k], own)


def test_des_edge_without_neighbour_is_clipped(tmp_path: Path) -> None:
    """SODA 1.0 §3.3: with no image past the edge, the cutout is the region's intersection
    with the first tile, as before."""
    (tmp_path / "data").mkdir()
    survey, _ = _des(tmp_path / "tiles", [FIRST], tmp_path / "data" / "index.sqlite")
    cutouts = _pipeline(tmp_path / "data", survey)
    circle = Circle(*_corner(), REGION_RADIUS)
    with _cut_fits(cutouts, circle) as hdul:
        head = hdul["SCI"].header
        assert "MOSAIC" not in head
        plain = cut(survey.at(circle.ra, circle.dec, ["r"])[0], circle)
        assert plain is not None and (plain.box.x0, plain.box.y0) == (0, 0)  # RA grows to -x
        assert (-int(head["LTV1"]), -int(head["LTV2"])) == (plain.box.x0, plain.box.y0)
        for name in ("SCI", "MSK", "WGT"):
            np.testing.assert_array_equal(hdul[name].data, plain.planes[[p.name for p in plain.planes].index(name)].data)


def test_assembled_box_obeys_the_pixel_limit(des: tuple[Cutouts, DESSurvey, list[str]]) -> None:
    cutouts, _, _ = des
    circle = Circle(*_corner(), REGION_RADIUS)
    first = cutouts.plan(cutouts.parse([("CIRCLE", f"{circle.ra} {circle.dec} {circle.radius}")]))[0].images[0]
    plain = cut(first, circle)
    assert plain is not None
    limit = plain.box.pixels + 10  # the first tile's part alone fits, the assembly does not
    tight = CutoutLimits(max_pixels=limit, max_cutouts=None, max_preview_source=limit, name="the test limit")
    with pytest.raises(UsageError, match="and its neighbours would have .* more than the test limit"):
        _cut_fits(cutouts, circle, tight)


def test_surveys_name_their_neighbours(lsst: tuple[Cutouts, LSSTSurvey], des: tuple[Cutouts, DESSurvey, list[str]]) -> None:
    """LSST by its sky map, DES through the image catalogue (Survey's default): the same band,
    never the image itself."""
    _, patches = lsst
    sky = skymap(DEMO)
    inner, _ = sky.patch_boxes(DEFAULT_TRACT, central_patches(sky, DEFAULT_TRACT)[0])
    ra, dec = (float(v) for v in sky.tract_wcs(DEFAULT_TRACT).pixel_to_world_values(inner.x1, inner.y1))
    [first] = patches.at(ra, dec, ["r"])
    found = patches.neighbours(first, ra, dec, 10 * DEMO.pixel_scale / 3600)
    assert len(found) == 3 and first not in found and {n.band for n in found} == {"r"}
    assert all(patches.same_grid(first, n) for n in found)
    # Nearest first: from a point in the first patch's inner box, that patch leads.
    assert first.tile != f"{DEFAULT_TRACT}_{central_patches(sky, DEFAULT_TRACT)[0]}"
    there = [float(v) for v in sky.tract_wcs(DEFAULT_TRACT).pixel_to_world_values(inner.x1 - 5, inner.y1 - 5)]
    assert patches.neighbours(first, *there, 0.001)[0].tile == f"{DEFAULT_TRACT}_{central_patches(sky, DEFAULT_TRACT)[0]}"
    _, tiles, _ = des
    [tile] = tiles.at(*_corner(), ["r"])
    near = tiles.neighbours(tile, *_corner(), 0.01)
    assert near and tile not in near and all(n.dataset_id.endswith(f"?{n.tile}_r") for n in near)
    assert [n.tile for n in near] == sorted((n.tile for n in near), key=lambda t: separation(*tile_centre(t), *_corner()))
    assert not tiles.same_grid(tile, near[0]) and tiles.same_grid(tile, tile)
    assert tiles.by_id(near[0].dataset_id) == near[0]
