"""The cutout pipeline (soda/cutouts.py) on the demo survey, without HTTP: limits per
caller, what one synchronous answer may hold, the FITS and pictures it makes, the
observer it reports to, and the SODA job kind run through it."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from PIL import Image

from conf import load_settings
from conftest import link_demo, scanned_catalogue
from dali.errors import MultiValuedParamNotSupported, ServiceError, UsageError
from soda.cutouts import Cutouts, CutoutLimits
from soda.jobs.cutout import cutout_job_kind
from soda.plan import Target
from soda.surveys.demo import build_des_demo
from soda.surveys.des import DESSurvey, tile_centre
from soda.surveys.registry import Datasets, load_datasets
from soda.ops.database import migrate, open_database
from soda.ops.runtime import uws_config
from storage import LocalStore
from uws import UWSService
from uws.notify import LocalNotifier
from uws.phases import Phase
from uws.store import JobStore
from uws.tables import MIGRATIONS

TILE = "DES0139-4457"
RA0, DEC0 = tile_centre(TILE)
DEMO_ID = f"ivo://demo.cutout/des?{TILE}_r"
NEAR = f"CIRCLE {RA0} {DEC0} 0.01"           # about 274 x 274 demo pixels
OFF_IMAGE = f"CIRCLE {RA0} {DEC0 + 0.2} 0.01"  # in the tile's unique area, off the 1024-pixel image


def make_cutouts(data_dir: Path, demo_root: Path, observe=None, **env: str) -> Cutouts:
    link_demo(data_dir, demo_root)
    settings = load_settings(environ={"CUTOUT_DATA_DIR": str(data_dir),
                                      **{f"CUTOUT_{k.upper()}": v for k, v in env.items()}})
    datasets = load_datasets(settings, scanned_catalogue(demo_root))
    return Cutouts(datasets, settings) if observe is None else Cutouts(datasets, settings, observe)


@pytest.fixture(scope="module")
def cutouts(tmp_path_factory, demo_root) -> Cutouts:
    return make_cutouts(tmp_path_factory.mktemp("pipeline"), demo_root)


def prepare(cutouts: Cutouts, *pairs: tuple[str, str]):
    request = cutouts.parse(list(pairs))
    return request, cutouts.plan(request)


# --- limits ---------------------------------------------------------------------------------

def test_limits_for_anonymous_callers_and_users(cutouts):
    # The service's defaults: users get the service's limits, anonymous callers the smaller ones.
    assert cutouts.limits("alice") == CutoutLimits(25_000_000, None, 100_000_000, "this service's limit", 2000)
    assert cutouts.limits(None) == CutoutLimits(
        1_048_576, 5, 1_048_576, "the limit for anonymous callers (log in for larger cutouts)", 20)


def test_anonymous_limits_never_exceed_the_service_limits(tmp_path, demo_root):
    tight = make_cutouts(tmp_path, demo_root, max_cutout_pixels="5000", max_sync_cutouts="3",
                         max_preview_source_pixels="4000", anonymous_max_cutout_pixels="9000000",
                         anonymous_max_sync_cutouts="40")
    assert tight.limits(None) == CutoutLimits(5000, 3, 4000, tight.anonymous_limits.name, 20)
    assert tight.limits("bob") == CutoutLimits(5000, None, 4000, "this service's limit", 2000)


def test_check_count(cutouts):
    cutouts.check_count(5, cutouts.limits(None), "/sync")
    cutouts.check_count(10_000, cutouts.limits("alice"), "/sync")  # users: no count limit here
    with pytest.raises(MultiValuedParamNotSupported) as caught:
        cutouts.check_count(6, cutouts.limits(None), "/sync")
    assert caught.value.message == ("this request asks for 6 cutouts; /sync makes at most 5 for "
                                    "anonymous callers (use /async (up to 20 per job) or log in for more)")


def test_check_job_count(cutouts):
    cutouts.check_job_count(20, cutouts.limits(None))
    cutouts.check_job_count(2000, cutouts.limits("alice"))  # users: user_max_job_cutouts
    with pytest.raises(MultiValuedParamNotSupported) as caught:
        cutouts.check_job_count(21, cutouts.limits(None))
    assert caught.value.message == ("this request asks for 21 cutouts; a job makes at most 20 for "
                                    "anonymous callers (log in for more)")
    with pytest.raises(MultiValuedParamNotSupported) as caught:
        cutouts.check_job_count(2001, cutouts.limits("alice"))
    assert caught.value.message == ("this request asks for 2001 cutouts; a job makes at most 2000 "
                                    "(split the request into several jobs)")


def test_user_job_count_can_be_off(tmp_path, demo_root):
    unlimited = make_cutouts(tmp_path, demo_root, user_max_job_cutouts="0")
    assert unlimited.limits("alice").max_job_cutouts is None
    unlimited.check_job_count(10_000, unlimited.limits("alice"))


@pytest.mark.parametrize("mode,jobs,hint", [
    ("off", None, "(log in for more)"), ("open", None, "(use /async or log in for more)"),
    ("limited", 20, "(use /async (up to 20 per job) or log in for more)")])
def test_anonymous_job_count_and_hint_follow_anonymous_async(tmp_path, demo_root, mode, jobs, hint):
    made = make_cutouts(tmp_path, demo_root, anonymous_async=mode)
    assert made.limits(None).max_job_cutouts == jobs
    with pytest.raises(MultiValuedParamNotSupported, match=re.escape(hint)):
        made.check_count(6, made.limits(None), "/sync")


def test_check_sync_one_picture_per_answer(cutouts):
    request, targets = prepare(cutouts, ("POS", NEAR), ("FILTER", "g,r"), ("RESPONSEFORMAT", "png"))
    assert len(targets) == 2
    with pytest.raises(MultiValuedParamNotSupported) as caught:
        cutouts.check_sync(targets, request, cutouts.limits("alice"))
    assert caught.value.message.startswith("a image/png holds one cutout and this request asks for 2")
    one, [target] = prepare(cutouts, ("POS", NEAR), ("FILTER", "r"), ("RESPONSEFORMAT", "png"))
    cutouts.check_sync([target], one, cutouts.limits(None))


def test_check_sync_counts_fits_cutouts(cutouts):
    request, [target] = prepare(cutouts, ("ID", DEMO_ID))
    user = cutouts.limits("alice")
    cutouts.check_sync([target] * cutouts.max_sync_cutouts, request, user)
    with pytest.raises(MultiValuedParamNotSupported) as caught:
        cutouts.check_sync([target] * (cutouts.max_sync_cutouts + 1), request, user)
    assert caught.value.message.startswith(f"this request asks for 51 cutouts; /sync makes at most 50")
    with pytest.raises(MultiValuedParamNotSupported, match="/sync makes at most 5 for anonymous callers"):
        cutouts.check_sync([target] * 6, request, cutouts.limits(None))


# --- FITS -----------------------------------------------------------------------------------

def test_make_fits_holds_every_plane_of_every_band(cutouts):
    request, targets = prepare(cutouts, ("POS", NEAR))
    with_pixels = [t for t in targets if t.image is not None]
    assert [t.image.band for t in with_pixels] == ["g", "r", "i"]  # z and Y: not in the demo
    body = cutouts.make(targets, request, cutouts.limits(None))
    assert body is not None and body.startswith(b"SIMPLE  =")
    with fits.open(io.BytesIO(body)) as out:
        assert out[0].header["NCUTOUTS"] == 3
        assert out[0].data is None
        assert [(h.name, h.ver) for h in out[1:]] == [(name, n) for n in (1, 2, 3)
                                                      for name in ("SCI", "MSK", "WGT")]
        for number, target in enumerate(with_pixels, start=1):
            with fits.open(target.image.path) as source:
                for name in ("SCI", "MSK", "WGT"):
                    hdu = out[name, number]
                    assert hdu.header["DATASET"] == target.image.dataset_id
                    assert hdu.header["SRCFILE"] == target.image.path.name
                    assert hdu.header["REGION"] == target.shape.dali()
                    x0, x1, y0, y1 = _box(hdu.header["SRCBOX"])
                    assert 260 <= x1 - x0 <= 290 and 260 <= y1 - y0 <= 290
                    expected = source[name].section[y0:y1, x0:x1]
                    assert hdu.data.dtype.newbyteorder("=") == expected.dtype.newbyteorder("=")
                    assert np.array_equal(hdu.data, expected, equal_nan=hdu.data.dtype.kind == "f")
                    # The WCS still places the cut's pixels where they were in the source.
                    sky = WCS(hdu.header, naxis=2).pixel_to_world_values(0, 0)
                    src = WCS(source[name].header, naxis=2).pixel_to_world_values(x0, y0)
                    assert np.allclose(sky, src, atol=1e-9)


def _box(section: str) -> tuple[int, int, int, int]:
    """'[x0+1:x1,y0+1:y1]' -> 0-based slice bounds."""
    xs, ys = section.strip("[]").split(",")
    (a, b), (c, d) = (map(int, xs.split(":")), map(int, ys.split(":")))
    return a - 1, b, c - 1, d


def test_make_whole_image_by_id(cutouts):
    request, targets = prepare(cutouts, ("ID", DEMO_ID))
    body = cutouts.make(targets, request, cutouts.limits(None))  # 1024 x 1024 = the anonymous limit
    with fits.open(io.BytesIO(body)) as out:
        assert out[0].header["NCUTOUTS"] == 1
        assert out["SCI"].data.shape == (1024, 1024)
        assert out["SCI"].header["REGION"] == "whole image"
        assert out["SCI"].header["SRCBOX"] == "[1:1024,1:1024]"


def test_make_off_the_image_is_none(cutouts):
    request, targets = prepare(cutouts, ("POS", OFF_IMAGE), ("FILTER", "r"))
    assert targets[0].image is not None  # the tile serves the position ...
    assert cutouts.make(targets, request, cutouts.limits("alice")) is None  # ... its image does not reach it
    assert cutouts.make_one(targets[0], request, cutouts.limits("alice")) is None
    nowhere = [Target("01_r", None, problem="no image")]
    assert cutouts.make(nowhere, request, cutouts.limits("alice")) is None


def test_make_skips_targets_without_pixels(cutouts):
    request, targets = prepare(cutouts, ("POS", f"CIRCLE {RA0} {DEC0} 0.003"), ("POS", OFF_IMAGE),
                               ("FILTER", "i"))
    assert len(targets) == 2
    with fits.open(io.BytesIO(cutouts.make(targets, request, cutouts.limits("alice")))) as out:
        assert out[0].header["NCUTOUTS"] == 1
        assert out["SCI", 1].header["DATASET"].endswith("_i")


def test_pixel_limit_names_the_limit(tmp_path, demo_root):
    small = make_cutouts(tmp_path, demo_root, max_cutout_pixels="20000", anonymous_max_cutout_pixels="10000")
    request, targets = prepare(small, ("POS", NEAR), ("FILTER", "r"))
    with pytest.raises(UsageError) as anonymous:
        small.make(targets, request, small.limits(None))
    assert "more than the limit for anonymous callers (log in for larger cutouts) of 10000" in anonymous.value.message
    assert anonymous.value.message.startswith(f"the cutout from {DEMO_ID} would have ")
    with pytest.raises(UsageError, match="more than this service's limit of 20000; ask for a smaller region"):
        small.make(targets, request, small.limits("alice"))
    tiny_request, tiny = prepare(small, ("POS", f"CIRCLE {RA0} {DEC0} 0.002"), ("FILTER", "r"))
    assert small.make(tiny, tiny_request, small.limits(None)) is not None  # ~55 x 55 pixels fit


# --- pictures and the observer ---------------------------------------------------------------

def test_observer_is_told_each_cutout_made(tmp_path, demo_root):
    seen: list[tuple[str, float]] = []
    observed = make_cutouts(tmp_path, demo_root, observe=lambda ext, seconds: seen.append((ext, seconds)))
    request, targets = prepare(observed, ("POS", NEAR), ("FILTER", "g,r"))
    observed.make(targets, request, observed.limits("alice"))
    assert [ext for ext, _ in seen] == ["fits"]
    png, [target] = prepare(observed, ("ID", DEMO_ID), ("CIRCLE", NEAR.split(" ", 1)[1]),
                            ("RESPONSEFORMAT", "png"))
    observed.make([target], png, observed.limits("alice"))
    jpeg, [jpeg_target] = prepare(observed, ("POS", NEAR), ("FILTER", "i"), ("RESPONSEFORMAT", "jpg"),
                                  ("SIZE", "64"))
    observed.make_one(jpeg_target, jpeg, observed.limits("alice"))
    off, off_targets = prepare(observed, ("POS", OFF_IMAGE), ("FILTER", "r"))
    observed.make(off_targets, off, observed.limits("alice"))  # nothing made, nothing told
    assert [ext for ext, _ in seen] == ["fits", "png", "jpg"]
    assert all(seconds > 0 for _, seconds in seen)


def test_grey_and_colour_pictures(cutouts):
    request, [target] = prepare(cutouts, ("POS", NEAR), ("FILTER", "r"), ("RESPONSEFORMAT", "png"))
    with Image.open(io.BytesIO(cutouts.make([target], request, cutouts.limits(None)))) as grey:
        assert grey.format == "PNG" and grey.mode == "L"
        assert 260 <= grey.width <= 290 and grey.height == grey.width
        assert grey.text["dataset"] == DEMO_ID
    colour, [rgb] = prepare(cutouts, ("POS", NEAR), ("RGB", "default"), ("RESPONSEFORMAT", "jpeg"),
                            ("SIZE", "100"))
    assert [i.band for i in rgb.rgb] == ["i", "r", "g"]
    with Image.open(io.BytesIO(cutouts.make([rgb], colour, cutouts.limits(None)))) as picture:
        assert picture.format == "JPEG" and picture.mode == "RGB"
        # SIZE caps the longest side; the cut is averaged over whole f x f blocks.
        side = grey.width
        factor = -(-side // 100)
        assert picture.size == (-(-side // factor),) * 2
        assert max(picture.size) <= 100


def test_preview_source_limit(tmp_path, demo_root):
    small = make_cutouts(tmp_path, demo_root, max_preview_source_pixels="1000")
    request, [target] = prepare(small, ("ID", DEMO_ID), ("RESPONSEFORMAT", "png"))
    with pytest.raises(UsageError, match="1024x1024 pixels, more than this service's limit of 1000"):
        small.make([target], request, small.limits("alice"))


def test_an_unreadable_image_is_a_service_error_without_its_path(tmp_path):
    # Indexed when it was whole; broken since.
    build_des_demo(tmp_path, tiles=(TILE,), bands=("r",), size=32)
    catalogue = scanned_catalogue(tmp_path)
    [image] = catalogue.images
    image.path.write_bytes(b"not a FITS file at all" * 200)
    settings = load_settings(environ={"CUTOUT_DATA_DIR": str(tmp_path)})
    broken = Cutouts(Datasets({"des": DESSurvey(catalogue, "demo.cutout")}, "demo.cutout"), settings)
    request, targets = prepare(broken, ("ID", DEMO_ID))
    with pytest.raises(ServiceError) as caught:
        broken.make(targets, request, broken.limits("alice"))
    assert type(caught.value) is ServiceError and caught.value.status == 500
    assert caught.value.message == (f"the image of {DEMO_ID} cannot be read; the operators have been told")


# --- the SODA job kind, run without a web server ---------------------------------------------------

def test_soda_job_writes_one_result_per_target(tmp_path, cutouts):
    db = open_database(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    migrate(db, [("uws", MIGRATIONS)])
    store = JobStore(db, LocalNotifier())
    service = UWSService(uws_config(load_settings(environ={})), store, LocalStore(tmp_path / "results"),
                         store.notifier)
    kind = cutout_job_kind(cutouts)
    service.register(kind)
    pairs = [("POS", NEAR), ("POS", OFF_IMAGE), ("FILTER", "r,z")]
    too_many = [("POS", f"CIRCLE {RA0} {DEC0} {0.001 * (i + 1):g}") for i in range(21)]
    with pytest.raises(MultiValuedParamNotSupported):
        service.parse(kind, too_many, None)  # 21 cutouts: too many for an anonymous job
    parsed = service.parse(kind, pairs, "alice")
    assert parsed.shown == pairs and parsed.value == cutouts.parse(pairs)
    job = service.create(kind, owner="alice", parameters=parsed, run_id=None,
                         execution_duration=None, destruction=None)
    assert store.queue(job.id)
    service.execute(kind, job.id)
    done = store.get(job.id)
    assert done.phase is Phase.COMPLETED
    assert [(r.id, r.mime_type) for r in done.results] == [
        (f"01_{TILE}_r.fits", "application/fits"), ("01_z.txt", "text/plain"),
        (f"02_{TILE}_r.txt", "text/plain"), ("02_z.txt", "text/plain")]
    results = tmp_path / "results" / "jobs" / job.id
    with fits.open(results / f"01_{TILE}_r.fits") as out:
        assert out[0].header["NCUTOUTS"] == 1
    assert (results / "01_z.txt").read_text().startswith("UsageError: no des z-band image holds CIRCLE")
    assert (results / f"02_{TILE}_r.txt").read_text() == \
        f"UsageError: CIRCLE {RA0:g} {DEC0 + 0.2:g} 0.01 does not overlap {DEMO_ID}\n"
    db.close()


def test_a_sweep_orders_targets_by_pixel_row_and_its_boxes_hold_their_cuts(cutouts):
    """A bulk group's cuts (``Cutouts.sweeping``): cut going down the image, and each cut's
    pixels inside the box the sweep told the engine about (so its tiles were decoded ahead)."""
    from soda.engine.tiles import current_sweep
    from soda.sky.regions import Circle

    rng = np.random.default_rng(9)
    image = cutouts.datasets.surveys["des"].at(RA0, DEC0, ["r"])[0]
    with fits.open(image.path) as hdul:
        wcs = WCS(hdul[image.hdus[0]].header, naxis=2)
    xy = rng.uniform(30, 990, size=(40, 2))
    ra, dec = wcs.pixel_to_world_values(xy[:, 0], xy[:, 1])
    radii = rng.uniform(1, 12, 40) / 3600
    targets = [Target(str(k), Circle(float(a), float(d), float(r)), (image,))
               for k, (a, d, r) in enumerate(zip(ra, dec, radii, strict=True))]
    targets.append(Target("none", None, ()))  # no image: last
    with cutouts.sweeping(targets) as order:
        sweep = current_sweep()
        assert sweep is not None and sweep.sources == {str(image.source)} and len(sweep.boxes) == 40
        assert order[-1] == 40 and sorted(order) == list(range(41))
        assert list(np.round(xy[order[:-1], 1])) == sorted(np.round(xy[:, 1]))
        for k, box in zip(order, sweep.boxes, strict=False):
            [cut] = cutouts.cut_target(targets[k], cutouts.limits("alice"))
            b = cut.box
            assert box.x0 <= b.x0 and b.x1 <= box.x1 and box.y0 <= b.y0 and b.y1 <= box.y1, (k, b, box)
    assert current_sweep() is None


def test_a_sweep_names_the_file_the_engine_reads_a_retiled_copy(cutouts, tmp_path):
    """An image with a faster copy to cut from (``cutout retile``): the sweep's files are the
    copy, which the engine reads, not the file a download serves."""
    import dataclasses
    import shutil

    from soda.engine.tiles import current_sweep
    from soda.sky.regions import Circle

    image = cutouts.datasets.surveys["des"].at(RA0, DEC0, ["r"])[0]
    copy = tmp_path / "copy.fits.fz"
    shutil.copy(image.source, copy)
    retiled = dataclasses.replace(image, pixels=copy)
    targets = [Target(str(k), Circle(RA0 + k * 1e-3, DEC0, 3e-3), (retiled,)) for k in range(3)]
    with cutouts.sweeping(targets):
        sweep = current_sweep()
        assert sweep is not None and sweep.sources == {str(copy)}
        assert sweep.wanted(str(copy), sweep.shape, (1, sweep.shape[1])) is not None
        assert sweep.wanted(str(image.path), sweep.shape, (1, sweep.shape[1])) is None
