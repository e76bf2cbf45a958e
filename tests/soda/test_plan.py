"""The planner (soda/plan.py) on the demo survey, without HTTP: which targets a request
becomes, their names, and the requests it refuses."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from dali.errors import UsageError
from soda.plan import Target, plan
from soda.request.params import CutoutParams, parse_cutout
from soda.request.render import RGBRequest
from soda.sky.regions import Circle, Range
from soda.surveys.demo import DEFAULT_BANDS, DEFAULT_TILES
from soda.surveys.des import DESSurvey, tile_centre
from soda.surveys.registry import Datasets

AUTHORITY = "demo.cutout"
TILE, OTHER_TILE = DEFAULT_TILES  # DES0139-4457, DES0000+0209
RA0, DEC0 = tile_centre(TILE)
CIRCLE = f"CIRCLE {RA0} {DEC0} 0.01"
OUTSIDE = "CIRCLE 180 60 0.01"  # north of the DES tiling (+30.36 deg)


def did(tile: str, band: str) -> str:
    return f"ivo://{AUTHORITY}/des?{tile}_{band}"


@pytest.fixture(scope="module")
def datasets(demo_root: Path) -> Datasets:
    survey = DESSurvey(root=demo_root, authority=AUTHORITY)
    return Datasets({"des": survey}, AUTHORITY, {"des": ("i", "r", "g")})


def targets(datasets: Datasets, *pairs: tuple[str, str], rgb: RGBRequest | None = None) -> list[Target]:
    return plan(parse_cutout(list(pairs)), datasets, rgb)


def names(found: list[Target]) -> list[str]:
    return [t.name for t in found]


# --- by ID ------------------------------------------------------------------------------

def test_id_alone_is_one_whole_image_target(datasets):
    [target] = targets(datasets, ("ID", did(TILE, "r")))
    assert target.name == f"{TILE}_r"
    assert target.shape is None
    assert target.problem is None and target.rgb is None
    assert target.image is not None
    assert (target.image.dataset_id, target.image.tile, target.image.band) == (did(TILE, "r"), TILE, "r")
    assert target.image.hdus == ("SCI", "MSK", "WGT")
    assert target.image.path.is_file()


def test_ids_times_shapes_are_numbered_in_request_order(datasets):
    found = targets(datasets, ("ID", did(TILE, "r")), ("ID", did(OTHER_TILE, "g")),
                    ("CIRCLE", "1 2 0.5"), ("POS", "RANGE 10 11 -5 -4"))
    assert names(found) == [f"01-01_{TILE}_r", f"01-02_{TILE}_r",
                            f"02-01_{OTHER_TILE}_g", f"02-02_{OTHER_TILE}_g"]
    assert [t.shape for t in found] == [Circle(1, 2, 0.5), Range(10, 11, -5, -4)] * 2
    assert [t.image.dataset_id for t in found] == [did(TILE, "r")] * 2 + [did(OTHER_TILE, "g")] * 2


def test_an_id_with_an_open_range_needs_no_centre(datasets):
    [target] = targets(datasets, ("ID", did(TILE, "i")), ("POS", "RANGE -Inf +Inf -Inf -44.9"))
    assert target.name == f"{TILE}_i"
    assert target.shape == Range(-math.inf, math.inf, -math.inf, -44.9)
    assert target.image is not None and target.problem is None


def test_unknown_id_is_a_400_usage_error_naming_it(datasets):
    # A well-formed ID naming nothing is a bad parameter value (DALI §4.2 keeps 404 for
    # resources that do not exist; /sync and /async do).
    missing = did("DES0001-0458", "r")  # a real tile the demo does not hold
    with pytest.raises(UsageError) as caught:
        targets(datasets, ("ID", did(TILE, "r")), ("ID", missing))
    assert caught.value.status == 400
    assert repr(missing) in caught.value.message
    with pytest.raises(UsageError) as other_authority:
        targets(datasets, ("ID", f"ivo://elsewhere.org/des?{TILE}_r"))
    assert other_authority.value.status == 400


def test_id_with_filter_of_another_band_keeps_its_place_with_a_problem(datasets):
    [target] = targets(datasets, ("ID", did(TILE, "r")), ("FILTER", "g"))
    assert target.name == f"{TILE}_r"
    assert target.image is None
    assert target.problem == f"dataset {did(TILE, 'r')} is band r, not FILTER g"
    [kept] = targets(datasets, ("ID", did(TILE, "r")), ("FILTER", "g,r"))
    assert kept.image is not None and kept.problem is None


def test_id_with_band_or_pol_that_excludes_it(datasets):
    [far] = targets(datasets, ("ID", did(TILE, "r")), ("BAND", "9e-7 9e-7"))  # z only
    assert far.image is None
    assert far.problem is not None and far.problem.endswith("does not overlap BAND")
    assert "5.42e-07-7.1e-07 m" in far.problem
    [near] = targets(datasets, ("ID", did(TILE, "r")), ("BAND", "6e-7 6e-7"))
    assert near.image is not None and near.problem is None
    [polarised] = targets(datasets, ("ID", did(TILE, "r")), ("POL", "Q"))
    assert polarised.image is None
    assert polarised.problem == f"dataset {did(TILE, 'r')} is unpolarised (POL I only)"
    [stokes_i] = targets(datasets, ("ID", did(TILE, "r")), ("POL", "Q"), ("POL", "I"))
    assert stokes_i.image is not None


# --- by position --------------------------------------------------------------------------

def test_position_gives_one_target_per_band_of_the_survey(datasets):
    survey = datasets.surveys["des"]
    assert survey.bands == ("g", "r", "i", "z", "Y")  # DES has five bands ...
    assert DEFAULT_BANDS == ("g", "r", "i")           # ... the demo holds three of them
    found = targets(datasets, ("POS", CIRCLE))
    assert names(found) == [f"01_{TILE}_g", f"01_{TILE}_r", f"01_{TILE}_i", "01_z", "01_Y"]
    assert [t.image.band for t in found[:3]] == ["g", "r", "i"]
    assert all(t.shape == Circle(RA0, DEC0, 0.01) for t in found)
    assert [t.problem for t in found[:3]] == [None] * 3
    assert [t.image for t in found[3:]] == [None, None]
    assert found[3].problem == f"no des z-band image holds {Circle(RA0, DEC0, 0.01).dali()}"
    assert found[4].problem.startswith("no des Y-band image holds CIRCLE")


def test_positions_pick_their_own_tiles(datasets):
    ra, dec = tile_centre(OTHER_TILE)
    found = targets(datasets, ("POS", CIRCLE), ("CIRCLE", f"{ra} {dec} 0.01"), ("FILTER", "r"))
    assert names(found) == [f"01_{TILE}_r", f"02_{OTHER_TILE}_r"]
    assert [t.image.dataset_id for t in found] == [did(TILE, "r"), did(OTHER_TILE, "r")]


def test_filter_selects_bands_in_the_order_given(datasets):
    found = targets(datasets, ("POS", CIRCLE), ("FILTER", "i,g"))
    assert names(found) == [f"01_{TILE}_i", f"01_{TILE}_g"]
    found = targets(datasets, ("POS", CIRCLE), ("FILTER", "r"), ("FILTER", "r,z"))
    assert names(found) == [f"01_{TILE}_r", "01_z"]
    assert found[1].image is None


def test_band_selects_every_band_it_overlaps(datasets):
    assert names(targets(datasets, ("POS", CIRCLE), ("BAND", "6e-7 6e-7"))) == [f"01_{TILE}_r"]
    # 545 nm is in both the g (398-548) and the r (542-710) bandpass.
    assert names(targets(datasets, ("POS", CIRCLE), ("BAND", "5.45e-7 5.45e-7"))) == \
        [f"01_{TILE}_g", f"01_{TILE}_r"]
    assert names(targets(datasets, ("POS", CIRCLE), ("BAND", "1.05e-6 +Inf"))) == ["01_Y"]
    # FILTER first, then what BAND adds, without repeating a band.
    assert names(targets(datasets, ("POS", CIRCLE), ("FILTER", "i"), ("BAND", "-Inf 6e-7"))) == \
        [f"01_{TILE}_i", f"01_{TILE}_g", f"01_{TILE}_r"]


def test_band_overlapping_no_band_keeps_each_position_with_a_problem(datasets):
    found = targets(datasets, ("POS", CIRCLE), ("POS", OUTSIDE), ("BAND", "2e-6 3e-6"))
    assert names(found) == ["01", "02"]
    assert all(t.image is None and t.problem == "no band of this survey overlaps BAND" for t in found)


def test_unknown_filter_is_a_usage_error_naming_the_bands(datasets):
    with pytest.raises(UsageError) as caught:
        targets(datasets, ("POS", CIRCLE), ("FILTER", "r,u,q"))
    assert caught.value.status == 400
    assert caught.value.message == "FILTER u, q is not a band of survey des (bands: g, r, i, z, Y)"


def test_position_outside_every_tile_has_no_image_and_says_why(datasets):
    found = targets(datasets, ("POS", OUTSIDE), ("FILTER", "g,r"))
    assert names(found) == ["01_g", "01_r"]
    assert [t.image for t in found] == [None, None]
    assert [t.problem for t in found] == ["no des g-band image holds CIRCLE 180 60 0.01",
                                          "no des r-band image holds CIRCLE 180 60 0.01"]


def test_position_in_a_tile_the_survey_does_not_hold(datasets):
    ra, dec = tile_centre("DES0001-0458")
    [target] = targets(datasets, ("CIRCLE", f"{ra} {dec} 0.01"), ("FILTER", "r"))
    assert target.image is None and target.problem.startswith("no des r-band image holds")


def test_open_range_without_id_is_refused(datasets):
    with pytest.raises(UsageError, match=r"RANGE with an open \(-Inf/\+Inf\) bound needs an ID"):
        targets(datasets, ("POS", "RANGE 24 25 -Inf -44"))


def test_closed_range_is_planned_around_its_centre(datasets):
    [target] = targets(datasets, ("POS", f"RANGE {RA0 - 0.01} {RA0 + 0.01} {DEC0 - 0.01} {DEC0 + 0.01}"),
                       ("FILTER", "g"))
    assert target.name == f"01_{TILE}_g"


def test_nothing_to_cut_around_is_refused(datasets):
    for pairs in ([], [("FILTER", "r")], [("BAND", "6e-7 7e-7")]):
        with pytest.raises(UsageError, match="give ID, or a position"):
            targets(datasets, *pairs)


def test_position_without_any_survey_is_refused():
    with pytest.raises(UsageError, match="no survey configured"):
        plan(CutoutParams(shapes=(Circle(RA0, DEC0, 0.01),)), Datasets({}, AUTHORITY))


# --- colour composites -------------------------------------------------------------------

def test_rgb_by_position_with_the_default_triplet(datasets):
    [target] = targets(datasets, ("POS", CIRCLE), rgb=RGBRequest(None))
    assert target.name == f"01_{TILE}_irg"
    assert target.rgb is not None
    assert [(i.tile, i.band) for i in target.rgb] == [(TILE, "i"), (TILE, "r"), (TILE, "g")]
    assert target.image == target.rgb[0]
    assert target.problem is None


def test_rgb_with_explicit_bands_by_id(datasets):
    [target] = targets(datasets, ("ID", did(OTHER_TILE, "g")), rgb=RGBRequest(("g", "r", "i")))
    assert target.name == f"{OTHER_TILE}_gri"
    assert [i.dataset_id for i in target.rgb] == [did(OTHER_TILE, b) for b in "gri"]
    several = targets(datasets, ("ID", did(TILE, "r")), ("POS", CIRCLE), ("CIRCLE", "1 2 3"),
                      rgb=RGBRequest(("r", "g", "i")))
    assert names(several) == [f"01-01_{TILE}_rgi", f"01-02_{TILE}_rgi"]


def test_rgb_with_filter_or_band_is_refused(datasets):
    for extra in (("FILTER", "r"), ("BAND", "6e-7 7e-7")):
        with pytest.raises(UsageError, match="RGB chooses the bands; leave out FILTER and BAND"):
            targets(datasets, ("POS", CIRCLE), extra, rgb=RGBRequest(None))


def test_rgb_bands_the_survey_or_the_demo_lacks(datasets):
    with pytest.raises(UsageError, match=r"RGB band u is not a band of survey des \(bands: g, r, i, z, Y\)"):
        targets(datasets, ("POS", CIRCLE), rgb=RGBRequest(("u", "r", "g")))
    with pytest.raises(UsageError, match=f"RGB needs bands z,r,g but {TILE} has no z image"):
        targets(datasets, ("POS", CIRCLE), rgb=RGBRequest(("z", "r", "g")))
    with pytest.raises(UsageError, match=f"but {TILE} has no Y image"):
        targets(datasets, ("ID", did(TILE, "r")), rgb=RGBRequest(("Y", "r", "g")))


def test_rgb_outside_every_tile_keeps_its_place(datasets):
    [target] = targets(datasets, ("POS", OUTSIDE), rgb=RGBRequest(None))
    assert target.name == "01_irg"
    assert target.image is None and target.rgb is None
    assert target.problem == "no des image holds CIRCLE 180 60 0.01"


def test_rgb_default_needs_a_configured_triplet(demo_root):
    bare = Datasets({"des": DESSurvey(root=demo_root, authority=AUTHORITY)}, AUTHORITY)
    with pytest.raises(UsageError, match="survey des has no default colour bands; give RGB=R,G,B"):
        targets(bare, ("POS", CIRCLE), rgb=RGBRequest(None))
    [explicit] = targets(bare, ("POS", CIRCLE), rgb=RGBRequest(("i", "r", "g")))
    assert explicit.name == f"01_{TILE}_irg"


def test_names_are_unique_within_a_request(datasets):
    ra, dec = tile_centre(OTHER_TILE)
    found = targets(datasets, ("POS", CIRCLE), ("CIRCLE", f"{ra} {dec} 0.02"), ("POS", OUTSIDE),
                    ("POS", CIRCLE))
    assert len(found) == 4 * 5
    assert len(set(names(found))) == len(found)
