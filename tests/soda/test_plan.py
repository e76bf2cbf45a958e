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
from soda.surveys.des import tile_centre
from soda.surveys.registry import Datasets

from conftest import demo_survey

AUTHORITY = "demo.cutout"
TILE, OTHER_TILE = DEFAULT_TILES  # DES0139-4457, DES0000+0209
RA0, DEC0 = tile_centre(TILE)
CIRCLE = f"CIRCLE {RA0} {DEC0} 0.01"
OUTSIDE = "CIRCLE 180 60 0.01"  # north of the DES tiling (+30.36 deg)


def did(tile: str, band: str) -> str:
    return f"ivo://{AUTHORITY}/des?{tile}_{band}"


@pytest.fixture(scope="module")
def datasets(demo_root: Path) -> Datasets:
    survey = demo_survey(demo_root, AUTHORITY)
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
    # Each FILTER name is a combination of its own (SODA §6), numbered since both show the ID.
    other, kept = targets(datasets, ("ID", did(TILE, "r")), ("FILTER", "g,r"))
    assert (other.name, kept.name) == (f"{TILE}_r_b1", f"{TILE}_r_b2")
    assert other.image is None and other.problem.endswith("not FILTER g")
    assert kept.image is not None and kept.problem is None


def test_id_with_band_or_pol_that_excludes_it(datasets):
    [far] = targets(datasets, ("ID", did(TILE, "r")), ("BAND", "9e-7 9e-7"))  # z only
    assert far.image is None
    assert far.problem == f"dataset {did(TILE, 'r')} (5.42e-07-7.1e-07 m) does not overlap BAND 9e-07 9e-07"
    [near] = targets(datasets, ("ID", did(TILE, "r")), ("BAND", "6e-7 6e-7"))
    assert near.image is not None and near.problem is None
    [polarised] = targets(datasets, ("ID", did(TILE, "r")), ("POL", "Q"))
    assert polarised.image is None
    assert polarised.problem == f"dataset {did(TILE, 'r')} is unpolarised (POL I only)"
    [stokes_i] = targets(datasets, ("ID", did(TILE, "r")), ("POL", "Q"), ("POL", "I"))
    assert stokes_i.image is not None


# --- by position --------------------------------------------------------------------------

def test_position_gives_one_target_per_band_with_an_image_there(datasets):
    survey = datasets.surveys["des"]
    assert survey.bands == ("g", "r", "i", "z", "Y")  # DES has five bands ...
    assert DEFAULT_BANDS == ("g", "r", "i")           # ... the demo holds three of them
    found = targets(datasets, ("POS", CIRCLE))
    assert names(found) == [f"01_{TILE}_g", f"01_{TILE}_r", f"01_{TILE}_i"]
    assert [t.image.band for t in found] == ["g", "r", "i"]
    assert all(t.shape == Circle(RA0, DEC0, 0.01) for t in found)
    assert [(t.problem, t.cutouts) for t in found] == [(None, 1)] * 3


def test_position_with_no_image_there_is_one_combination_saying_so(datasets):
    ra, dec = tile_centre("DES0001-0458")  # a real tile the demo does not hold
    found = targets(datasets, ("POS", CIRCLE), ("CIRCLE", f"{ra} {dec} 0.01"), ("POS", OUTSIDE))
    assert names(found) == [f"01_{TILE}_g", f"01_{TILE}_r", f"01_{TILE}_i", "02", "03"]
    assert [t.cutouts for t in found] == [1, 1, 1, 0, 0]
    assert found[3].problem == f"no des image holds {Circle(ra, dec, 0.01).dali()}"
    assert found[4].problem == "no des image holds CIRCLE 180 60 0.01"


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


def test_a_band_value_is_one_combination_holding_every_band_it_overlaps(datasets):
    assert names(targets(datasets, ("POS", CIRCLE), ("BAND", "6e-7 6e-7"))) == [f"01_{TILE}_r"]
    # 545 nm is in both the g (398-548) and the r (542-710) bandpass: one combination, two cuts.
    [both] = targets(datasets, ("POS", CIRCLE), ("BAND", "5.45e-7 5.45e-7"))
    assert both.name == f"01_{TILE}_gr"
    assert [i.band for i in both.images] == ["g", "r"] and both.cutouts == 2
    # Y exists in DES but not in the demo: the combination stays, saying so.
    [y] = targets(datasets, ("POS", CIRCLE), ("BAND", "1.05e-6 +Inf"))
    assert (y.name, y.images) == ("01", ())
    assert y.problem == f"no des image in band Y (BAND 1.05e-06 +Inf) holds {Circle(RA0, DEC0, 0.01).dali()}"
    # FILTER names and BAND values are selectors of one axis: FILTER first, each one a combination.
    found = targets(datasets, ("POS", CIRCLE), ("BAND", "-Inf 6e-7"), ("FILTER", "i"))
    assert names(found) == [f"01_{TILE}_i", f"01_{TILE}_gr"]


def test_band_overlapping_no_band_keeps_each_combination_with_a_problem(datasets):
    found = targets(datasets, ("POS", CIRCLE), ("POS", OUTSIDE), ("BAND", "2e-6 3e-6"))
    assert names(found) == ["01", "02"]
    assert all(t.image is None and t.problem == "BAND 2e-06 3e-06 overlaps no band of survey des "
                                                "(g, r, i, z, Y)" for t in found)


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
    with pytest.raises(UsageError, match=r"RANGE with an open \(-Inf/\+Inf\) bound needs an ID"):
        targets(datasets, ("RANGE", "24 25 -Inf -44"))


def test_closed_range_is_planned_around_its_centre(datasets):
    box = f"{RA0 - 0.01} {RA0 + 0.01} {DEC0 - 0.01} {DEC0 + 0.01}"
    [target] = targets(datasets, ("POS", f"RANGE {box}"), ("FILTER", "g"))
    assert target.name == f"01_{TILE}_g"
    [alone] = targets(datasets, ("RANGE", box), ("FILTER", "g"))  # the RANGE parameter
    assert alone == target


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
    bare = Datasets({"des": demo_survey(demo_root, AUTHORITY)}, AUTHORITY)
    with pytest.raises(UsageError, match="survey des has no default colour bands; give RGB=R,G,B"):
        targets(bare, ("POS", CIRCLE), rgb=RGBRequest(None))
    [explicit] = targets(bare, ("POS", CIRCLE), rgb=RGBRequest(("i", "r", "g")))
    assert explicit.name == f"01_{TILE}_irg"


def test_names_are_unique_within_a_request(datasets):
    ra, dec = tile_centre(OTHER_TILE)
    found = targets(datasets, ("POS", CIRCLE), ("CIRCLE", f"{ra} {dec} 0.02"), ("POS", OUTSIDE),
                    ("POS", CIRCLE))
    assert len(found) == 3 + 3 + 1 + 3  # the bands with an image at each position
    assert len(set(names(found))) == len(found)


# --- the Cartesian product of SODA §6 -------------------------------------------------------

R_BAND = "6e-7 6e-7"      # inside the r bandpass only
NO_BAND = "2e-6 3e-6"     # overlaps no DES band


def test_two_circles_times_two_bands_are_four_combinations_in_order(datasets):
    a, b = f"{RA0} {DEC0} 0.01", f"{RA0 + 0.01} {DEC0} 0.01"
    found = targets(datasets, ("ID", did(TILE, "r")), ("CIRCLE", a), ("CIRCLE", b),
                    ("BAND", R_BAND), ("BAND", NO_BAND))
    assert names(found) == [f"01-01_{TILE}_r_b1", f"01-01_{TILE}_r_b2",
                            f"01-02_{TILE}_r_b1", f"01-02_{TILE}_r_b2"]
    assert [t.shape for t in found] == [Circle(RA0, DEC0, 0.01)] * 2 + [Circle(RA0 + 0.01, DEC0, 0.01)] * 2
    assert [t.cutouts for t in found] == [1, 0, 1, 0]
    assert found[1].problem == f"dataset {did(TILE, 'r')} (5.42e-07-7.1e-07 m) does not overlap BAND 2e-06 3e-06"


def test_band_numbers_are_added_only_when_names_would_repeat(datasets):
    alone = targets(datasets, ("POS", CIRCLE), ("BAND", R_BAND), ("BAND", NO_BAND))
    assert names(alone) == [f"01_{TILE}_r", "01"]  # already unique
    both = targets(datasets, ("POS", CIRCLE), ("POS", OUTSIDE), ("BAND", R_BAND), ("BAND", NO_BAND))
    assert names(both) == [f"01_{TILE}_r_b1", "01_b2", "02_b1", "02_b2"]  # "02" twice otherwise
    assert [t.cutouts for t in both] == [1, 0, 0, 0]
    assert both[2].problem == "no des image in band r (BAND 6e-07 6e-07) holds CIRCLE 180 60 0.01"
    same = targets(datasets, ("POS", CIRCLE), ("FILTER", "r"), ("BAND", R_BAND))
    assert names(same) == [f"01_{TILE}_r_b1", f"01_{TILE}_r_b2"]  # FILTER r and a BAND in r


def test_each_time_value_is_a_combination_of_the_same_pixels(datasets):
    found = targets(datasets, ("POS", CIRCLE), ("POS", OUTSIDE), ("FILTER", "g,r"),
                    ("TIME", "55000 56000"), ("TIME", "57000 +Inf"))
    assert names(found) == [f"01_{TILE}_g_t1", f"01_{TILE}_g_t2", f"01_{TILE}_r_t1", f"01_{TILE}_r_t2",
                            "02_g_t1", "02_g_t2", "02_r_t1", "02_r_t2"]
    assert found[0].images == found[1].images and found[0].shape == found[1].shape
    assert [t.cutouts for t in found] == [1, 1, 1, 1, 0, 0, 0, 0]
    [one] = targets(datasets, ("ID", did(TILE, "r")), ("TIME", "55000 56000"))
    assert one.name == f"{TILE}_r"  # one TIME value multiplies nothing


def test_time_and_band_numbers_together(datasets):
    found = targets(datasets, ("ID", did(TILE, "r")), ("BAND", R_BAND), ("BAND", NO_BAND),
                    ("TIME", "1 2"), ("TIME", "3 4"))
    assert names(found) == [f"{TILE}_r_b1_t1", f"{TILE}_r_b1_t2", f"{TILE}_r_b2_t1", f"{TILE}_r_b2_t2"]


def test_pol_values_are_one_filter_not_an_axis(datasets):
    kept = targets(datasets, ("POS", CIRCLE), ("FILTER", "g,r"), ("POL", "I"), ("POL", "Q"), ("POL", "U"))
    assert names(kept) == [f"01_{TILE}_g", f"01_{TILE}_r"]
    assert all(t.cutouts == 1 for t in kept)
    gone = targets(datasets, ("POS", CIRCLE), ("FILTER", "g,r"), ("POL", "Q"), ("POL", "U"))
    assert names(gone) == names(kept)  # the names still say what was asked for
    assert [t.problem for t in gone] == [f"dataset {did(TILE, b)} is unpolarised (POL I only)" for b in "gr"]
    assert all(t.images == () for t in gone)


def test_cutout_counts_count_only_images(datasets):
    found = targets(datasets, ("POS", CIRCLE), ("POS", OUTSIDE), ("BAND", "5.45e-7 5.45e-7"),
                    ("FILTER", "z"))
    assert names(found) == ["01_z", f"01_{TILE}_gr", "02_z", "02"]  # FILTER first, then BAND
    assert [t.cutouts for t in found] == [0, 2, 0, 0]


def test_rgb_times_time_values(datasets):
    found = targets(datasets, ("POS", CIRCLE), ("TIME", "1 2"), ("TIME", "3 4"), rgb=RGBRequest(None))
    assert names(found) == [f"01_{TILE}_irg_t1", f"01_{TILE}_irg_t2"]
    assert all(t.cutouts == 1 and t.colour and len(t.images) == 3 for t in found)


def test_why_empty_names_the_problem_or_the_missed_images(datasets):
    [served] = targets(datasets, ("ID", did(TILE, "r")), ("CIRCLE", "10 10 0.01"))
    assert served.why_empty() == f"CIRCLE 10 10 0.01 does not overlap {did(TILE, 'r')}"
    [empty] = targets(datasets, ("POS", OUTSIDE))
    assert empty.why_empty() == empty.problem == "no des image holds CIRCLE 180 60 0.01"
