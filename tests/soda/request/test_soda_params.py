"""SODA parameter parsing (soda/request/params.py): the bad-request table and the good forms."""

from __future__ import annotations

import math

import pytest

from conf import Settings
from soda.request.params import FITS_FORMATS, CutoutParams, ShapeLimits, parse_cutout, to_pairs
from soda.sky.regions import Circle, Polygon, Range
from soda_bad_params import BAD_PARAMS, DEMO_ID
from dali.errors import MultiValuedParamNotSupported, ServiceError, UsageError

INF = math.inf
LABELS = {"UsageError": UsageError, "MultiValuedParamNotSupported": MultiValuedParamNotSupported}
DALI_POLYGON = "10.0 10.0 10.2 10.0 10.2 10.2 10.0 10.2"  # DALI §3.3.7's example
_SODA = Settings().soda
SERVICE_LIMITS = ShapeLimits(_SODA.max_request_shapes, _SODA.max_polygon_vertices,
                             _SODA.max_request_polygon_vertices)  # the service's defaults


def one_shape(value: str, name: str = "POS"):
    return parse_cutout([(name, value)]).shapes[0]


# --- bad requests ----------------------------------------------------------------------

def test_bad_table_is_big_and_unique() -> None:
    ids = [case[0] for case in BAD_PARAMS]
    assert len(ids) >= 45
    assert len(set(ids)) == len(ids)
    assert {case[2] for case in BAD_PARAMS} <= set(LABELS)


@pytest.mark.parametrize(("pairs", "label", "fragment"), [case[1:] for case in BAD_PARAMS],
                         ids=[case[0] for case in BAD_PARAMS])
def test_bad_params(pairs: list[tuple[str, str]], label: str, fragment: str) -> None:
    with pytest.raises(ServiceError) as caught:
        parse_cutout(pairs, limits=SERVICE_LIMITS)
    error = caught.value
    assert type(error) is LABELS[label]
    assert error.text.startswith(f"{label}: ")
    assert error.status == 400
    assert fragment in error.message
    named = [(n, v) for n, v in pairs if n.upper() != "ID"]
    assert any(n.upper() in error.message and v[:50] in error.message for n, v in named), \
        "the message must name the parameter and quote the offending value"


def test_the_bad_requests_are_good_without_their_fault() -> None:
    """The table's base request (ID + the demo region) is itself accepted."""
    params = parse_cutout([("ID", DEMO_ID), ("CIRCLE", "24.8 -44.9 0.05")])
    assert params.ids == (DEMO_ID,)


# --- shapes ----------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "value", "shape"), [
    ("POS", "CIRCLE 12 34 0.5", Circle(12, 34, 0.5)),
    ("CIRCLE", "12 34 0.5", Circle(12, 34, 0.5)),
    ("POS", "CIRCLE 0 -90 180", Circle(0, -90, 180)),
    ("POS", "CIRCLE 360 90 1e-3", Circle(360, 90, 0.001)),
    ("CIRCLE", "+12 .5 5.", Circle(12, 0.5, 5)),
    ("CIRCLE", "1.2E1 -3.4e+1 5E-1", Circle(12, -34, 0.5)),
    ("POS", "RANGE 12 14 34 36", Range(12, 14, 34, 36)),
    ("POS", "RANGE 0 360 89 90", Range(0, 360, 89, 90)),
    ("POS", "RANGE 12 12 34 34", Range(12, 12, 34, 34)),
    ("POS", "RANGE -Inf +Inf -Inf +Inf", Range(-INF, INF, -INF, INF)),
    ("POS", "RANGE 10 +Inf -Inf -30", Range(10, INF, -INF, -30)),
    ("POS", "RANGE -Inf 20 0 Inf", Range(-INF, 20, 0, INF)),
    ("RANGE", "12 14 34 36", Range(12, 14, 34, 36)),
    ("RANGE", "10 +Inf -Inf -30", Range(10, INF, -INF, -30)),
    ("POS", "POLYGON 12 34 14 34 14 36 12 36", Polygon(((12, 34), (14, 34), (14, 36), (12, 36)))),
    ("POLYGON", "12 34 14 34 14 36 12 36", Polygon(((12, 34), (14, 34), (14, 36), (12, 36)))),
    ("POLYGON", "359.5 -1 0.5 -1 0.5 1 359.5 1", Polygon(((359.5, -1), (0.5, -1), (0.5, 1), (359.5, 1)))),
    ("POLYGON", "0 -1 1 -1 1 1 360 1", Polygon(((0, -1), (1, -1), (1, 1), (360, 1)))),
    ("POLYGON", "0 80 120 80 240 80", Polygon(((0, 80), (120, 80), (240, 80)))),
    ("POLYGON", "24.7 -45 24.9 -45 24.9 -44.8 24.8 -44.9 24.7 -44.8",  # concave
     Polygon(((24.7, -45), (24.9, -45), (24.9, -44.8), (24.8, -44.9), (24.7, -44.8)))),
])
def test_shapes(name: str, value: str, shape: object) -> None:
    assert one_shape(value, name) == shape


@pytest.mark.parametrize("value", ["CIRCLE  12\t34 \n 0.5", "  CIRCLE 12 34 0.5  ", "CIRCLE 12.0 34.00 5e-1"])
def test_whitespace_and_number_spellings(value: str) -> None:
    assert one_shape(value) == Circle(12, 34, 0.5)


def test_pos_circle_equals_circle_param() -> None:
    assert parse_cutout([("POS", "CIRCLE 24.8 -44.9 0.05")]) == parse_cutout([("CIRCLE", "24.8 -44.9 0.05")])


def test_pos_range_equals_range_param() -> None:
    # Aladin Lite's SODA form sends RANGE on its own; it means POS=RANGE (SODA §3.3.1).
    assert parse_cutout([("POS", "RANGE 24.8 24.9 -45 -44.9")]) == parse_cutout([("range", "24.8 24.9 -45 -44.9")])


@pytest.mark.parametrize(("value", "fragment"), [
    ("24.8 24.9 -45", "RANGE='24.8 24.9 -45': a RANGE needs 4 numbers (ra1 ra2 dec1 dec2), not 3"),
    ("RANGE 24.8 24.9 -45 -44.9", "the RANGE parameter takes numbers only; the shape keyword 'RANGE' belongs in POS"),
    ("25 24 -45 -44", "ra1 25.0 > ra2 24.0: ra1 <= ra2 is required"),
    ("24 25 -44 -45", "Dec: the lower bound -44.0 exceeds the upper bound -45.0"),
    ("24 25 -95 -44", "Dec -95.0 is outside [-90, 90] degrees"),
    ("24 25 -45 NaN", "NaN is not a usable value"),
    ("24,25,-45,-44", "separate numbers with spaces"),
])
def test_range_param_is_checked_like_pos_range(value: str, fragment: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_cutout([("RANGE", value)])
    assert caught.value.status == 400
    assert fragment in caught.value.message, caught.value.message


def test_pos_polygon_equals_polygon_param() -> None:
    assert parse_cutout([("POS", "POLYGON " + DALI_POLYGON)]) == parse_cutout([("POLYGON", DALI_POLYGON)])


def test_counter_clockwise_polygon_is_kept_as_given() -> None:
    polygon = one_shape(DALI_POLYGON, "POLYGON")
    assert polygon.vertices == ((10, 10), (10.2, 10), (10.2, 10.2), (10, 10.2))


def test_clockwise_polygon_is_reversed_to_dali_order() -> None:
    numbers = DALI_POLYGON.split()
    pairs = [" ".join(numbers[k:k + 2]) for k in range(0, len(numbers), 2)]
    clockwise = " ".join(reversed(pairs))
    assert one_shape(clockwise, "POLYGON") == one_shape(DALI_POLYGON, "POLYGON")


def test_clockwise_polygon_across_ra_zero_is_reversed() -> None:
    assert one_shape("359.5 1 0.5 1 0.5 -1 359.5 -1", "POLYGON") == \
        Polygon(((359.5, -1), (0.5, -1), (0.5, 1), (359.5, 1)))


def test_explicit_closing_vertex_is_dropped() -> None:
    assert one_shape(DALI_POLYGON + " 10.0 10.0", "POLYGON") == one_shape(DALI_POLYGON, "POLYGON")


# --- names, multiplicity, order --------------------------------------------------------

def test_names_are_case_insensitive() -> None:
    lower = parse_cutout([("id", "x"), ("pos", "CIRCLE 1 2 3"), ("band", "1e-7 2e-7"), ("time", "1 2"),
                          ("pol", "I"), ("filter", "g"), ("responseformat", "fits")])
    mixed = parse_cutout([("Id", "x"), ("Pos", "CIRCLE 1 2 3"), ("Band", "1e-7 2e-7"), ("Time", "1 2"),
                          ("Pol", "I"), ("Filter", "g"), ("ResponseFormat", "fits")])
    assert lower == mixed == CutoutParams(ids=("x",), shapes=(Circle(1, 2, 3),), bands=((1e-7, 2e-7),),
                                          filters=("g",), times=((1, 2),), pols=("I",))


def test_ids_are_opaque_and_ordered() -> None:
    ids = ["ivo://demo.cutout/des?DES0139-4457_r", "ivo://demo.cutout/des?DES0139-4457_G", " odd id &?=% "]
    assert parse_cutout([("ID", i) for i in ids]).ids == tuple(ids)


def test_shapes_keep_request_order_across_parameters() -> None:
    params = parse_cutout([("CIRCLE", "1 2 0.1"), ("POS", "RANGE 1 2 3 4"), ("POLYGON", "1 1 2 1 2 2"),
                           ("POS", "CIRCLE 5 6 0.2"), ("ID", "a"), ("ID", "b")])
    assert params.shapes == (Circle(1, 2, 0.1), Range(1, 2, 3, 4), Polygon(((1, 1), (2, 1), (2, 2))),
                             Circle(5, 6, 0.2))
    assert params.ids == ("a", "b")


def test_intervals() -> None:
    params = parse_cutout([("BAND", "5e-7 6e-7"), ("BAND", "-Inf 3e-7"), ("BAND", "7.5e-7 +Inf"),
                           ("BAND", "5.5e-7 5.5e-7"), ("BAND", "0 1e-6"),
                           ("TIME", "55100.0 +Inf"), ("TIME", "55123.456 55123.466"), ("TIME", "-Inf -10")])
    assert params.bands == ((5e-7, 6e-7), (-INF, 3e-7), (7.5e-7, INF), (5.5e-7, 5.5e-7), (0, 1e-6))
    assert params.times == ((55100, INF), (55123.456, 55123.466), (-INF, -10))


def test_filters_lists_and_repeats() -> None:
    params = parse_cutout([("FILTER", "g,r,i"), ("FILTER", "z"), ("FILTER", " Y , g "), ("FILTER", "VR_2")])
    assert params.filters == ("g", "r", "i", "z", "Y", "VR_2")


def test_pol_states_repeat_as_one_filter() -> None:
    params = parse_cutout([("POL", "I"), ("POL", "Q"), ("POL", "U"), ("POL", "I"), ("POL", "POLI")])
    assert params.pols == ("I", "Q", "U", "POLI")


@pytest.mark.parametrize(("value", "answered"), [
    ("application/fits", "application/fits"), ("fits", "application/fits"), ("FITS", "application/fits"),
    ("Application/FITS", "application/fits"), ("application/fits;x=1", "application/fits"),
    ("image/fits", "image/fits"), (" image/fits ; charset=binary ", "image/fits")])
def test_responseformat_aliases(value: str, answered: str) -> None:
    # DALI §3.4.3: the media type the client named is the one answered; a short form, the canonical one.
    assert parse_cutout([("RESPONSEFORMAT", value)]).response_format == answered


def test_responseformat_default_and_custom_mapping() -> None:
    assert parse_cutout([]).response_format == "application/fits"
    formats = {**FITS_FORMATS, "image/png": "image/png", "png": "image/png"}
    assert parse_cutout([("RESPONSEFORMAT", "png")], formats).response_format == "image/png"
    with pytest.raises(UsageError, match="image/png"):
        parse_cutout([("RESPONSEFORMAT", "jpeg")], formats)


def test_empty_values_are_absent() -> None:
    params = parse_cutout([("POS", ""), ("CIRCLE", "   "), ("BAND", ""), ("ID", ""), ("POL", ""),
                           ("RESPONSEFORMAT", ""), ("RESPONSEFORMAT", "fits")])
    assert params == CutoutParams()


def test_unknown_and_uws_control_names_are_ignored() -> None:
    params = parse_cutout([("ID", "x"), ("RUNID", "run 1"), ("PHASE", "RUN"), ("REQUEST", "doit"),
                           ("WAIT", "30"), ("MAXREC", "10"), ("FOO", "bar"), ("runid", "again")])
    assert params == CutoutParams(ids=("x",))


def test_error_text_echoes_long_values_shortened() -> None:
    with pytest.raises(UsageError) as caught:
        parse_cutout([("CIRCLE", "1 2 " + "9" * 500)])
    assert len(caught.value.message) < 400


# --- to_pairs ---------------------------------------------------------------------------

ROUND_TRIPS = [
    [],
    [("ID", DEMO_ID)],
    [("ID", "a"), ("ID", "b"), ("POS", "CIRCLE 24.8 -44.9 0.05"), ("CIRCLE", "0.1 0.2 0.30000000000000004")],
    [("POS", "RANGE -Inf +Inf -Inf 0"), ("POS", "RANGE 0 360 89 90")],
    [("POS", "POLYGON 12 34 14 34 14 36 12 36"), ("POLYGON", "359.5 1 0.5 1 0.5 -1 359.5 -1")],
    [("BAND", "-Inf 3e-7"), ("BAND", "1e-7 1e-7"), ("TIME", "55100.0 +Inf"), ("TIME", "-0.0 0")],
    [("FILTER", "g,r"), ("POL", "I"), ("POL", "V"), ("RESPONSEFORMAT", "image/fits; x=y")],
    [("CIRCLE", "123.456789012345678 -12.3456789e-5 1e-10"), ("FILTER", "z"), ("ID", " spaced ")],
]


@pytest.mark.parametrize("pairs", ROUND_TRIPS)
def test_round_trip(pairs: list[tuple[str, str]]) -> None:
    params = parse_cutout(pairs)
    assert parse_cutout(to_pairs(params)) == params
    assert to_pairs(parse_cutout(to_pairs(params))) == to_pairs(params)


def test_to_pairs_is_canonical() -> None:
    params = parse_cutout([("pos", "CIRCLE 1 2 3"), ("Polygon", "1 1 2 1 2 2"), ("pos", "RANGE 1 2 -Inf 4"),
                           ("band", "1e-7 +Inf"), ("filter", "g,r"), ("pol", "I"), ("id", "x"),
                           ("responseformat", "FITS")])
    assert to_pairs(params) == [
        ("ID", "x"),
        ("CIRCLE", "1.0 2.0 3.0"),
        ("POLYGON", "1.0 1.0 2.0 1.0 2.0 2.0"),
        ("POS", "RANGE 1.0 2.0 -Inf 4.0"),
        ("BAND", "1e-07 +Inf"),
        ("FILTER", "g"), ("FILTER", "r"),
        ("POL", "I"),
        ("RESPONSEFORMAT", "application/fits"),
    ]
