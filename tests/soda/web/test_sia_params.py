"""SIA 2.0 query parameters (soda.request.sia): every parameter, its bad values labelled."""

from __future__ import annotations

import dataclasses
import math

import pytest

from dali.errors import MultiValuedParamNotSupported, UsageError
from soda.request.params import ShapeLimits
from soda.request.sia import SiaLimits, parse_sia
from soda.sky.regions import Circle, Polygon, Range

LIMITS = SiaLimits(maxrec_default=100, maxrec_limit=1000, max_values=5)


def parse(*pairs: tuple[str, str]):  # type: ignore[no-untyped-def]
    return parse_sia(list(pairs), LIMITS)


def test_nothing_given_is_an_open_query_with_the_default_maxrec():
    query = parse()
    assert query.shapes == () and query.bands == () and query.maxrec == 100


def test_every_parameter_is_read():
    query = parse(("POS", "CIRCLE 24.9 -44.9 0.1"), ("POS", "RANGE 10 20 -5 5"),
                  ("POS", "POLYGON 10 10 12 10 11 13"), ("BAND", "5e-7 6e-7"), ("TIME", "55000 +Inf"),
                  ("POL", "I"), ("FOV", "0.5 +Inf"), ("SPATRES", "0 1.5"), ("EXPTIME", "10 100"),
                  ("ID", "ivo://demo.cutout/des?DES0139-4457_r"), ("COLLECTION", "des"),
                  ("FACILITY", "Blanco"), ("INSTRUMENT", "DECam"), ("DPTYPE", "image"), ("CALIB", "3"),
                  ("TARGET", "DES0139-4457"), ("FORMAT", "application/fits"), ("MAXREC", "7"),
                  ("RESPONSEFORMAT", "application/x-votable+xml"))
    assert query.shapes == (Circle(24.9, -44.9, 0.1), Range(10, 20, -5, 5),
                            Polygon(((10.0, 10.0), (12.0, 10.0), (11.0, 13.0))))
    assert query.bands == ((5e-7, 6e-7),) and query.times == ((55000.0, math.inf),)
    assert query.pols == ("I",) and query.fovs == ((0.5, math.inf),) and query.spatres == ((0.0, 1.5),)
    assert query.exptimes == ((10.0, 100.0),) and query.ids == ("ivo://demo.cutout/des?DES0139-4457_r",)
    assert (query.collections, query.facilities, query.instruments) == (("des",), ("Blanco",), ("DECam",))
    assert (query.dptypes, query.calibs, query.targets, query.formats) == (
        ("image",), (3,), ("DES0139-4457",), ("application/fits",))
    assert query.maxrec == 7


def test_names_are_case_insensitive_repeats_kept_and_unknown_parameters_ignored():
    query = parse(("collection", "des"), ("Collection", "lsst"), ("pos", "CIRCLE 1 2 3"),
                  ("REQUEST", "query"), ("VERB", "3"), ("whatever", "x"), ("BAND", ""))
    assert query.collections == ("des", "lsst") and query.shapes == (Circle(1, 2, 3),)
    assert query.bands == ()


def test_time_accepts_an_open_lower_bound():
    assert parse(("TIME", "-Inf 55000")).times == ((-math.inf, 55000.0),)


def test_maxrec_beyond_the_hard_limit_is_the_hard_limit_and_zero_is_kept():
    assert parse(("MAXREC", "5000")).maxrec == 1000
    assert parse(("MAXREC", "0")).maxrec == 0


@pytest.mark.parametrize("name, value, words", [
    ("POS", "CIRCLE 1 2", "3 numbers"),
    ("POS", "circle 1 2 3", "upper case"),
    ("POS", "BOX 1 2 3 4", "shape keyword"),
    ("POS", "CIRCLE 400 0 1", "outside [0, 360]"),
    ("POS", "RANGE 20 10 0 1", "ra1 <= ra2"),
    ("POS", "POLYGON 0 0 1 0 2 0", "no area"),
    ("BAND", "g", "not band names"),
    ("BAND", "6e-7 5e-7", "exceeds"),
    ("BAND", "5e-7", "as a pair"),
    ("BAND", "-1 2", "negative"),
    ("TIME", "abc def", "not a number"),
    ("TIME", "NaN 1", "NaN"),
    ("FOV", "1", "as a pair"),
    ("FOV", "-1 2", "negative"),
    ("SPATRES", "x y", "not a number"),
    ("EXPTIME", "10 5", "exceeds"),
    ("POL", "i", "polarization state"),
    ("POL", "I Q", "polarization state"),
    ("DPTYPE", "spectrum", "image or cube"),
    ("CALIB", "5", "calibration level"),
    ("CALIB", "three", "calibration level"),
    ("MAXREC", "-1", "non-negative integer"),
    ("MAXREC", "ten", "non-negative integer"),
    ("RESPONSEFORMAT", "text/csv", "not offered"),
])
def test_bad_values_are_usage_errors_naming_the_parameter(name, value, words):
    with pytest.raises(UsageError) as caught:
        parse((name, value))
    assert caught.value.status == 400
    assert caught.value.text.startswith(f"UsageError: {name}=") and words in caught.value.message


@pytest.mark.parametrize("name", ["MAXREC", "RESPONSEFORMAT"])
def test_single_valued_parameters(name):
    value = "5" if name == "MAXREC" else "votable"
    with pytest.raises(MultiValuedParamNotSupported):
        parse((name, value), (name, value))


def test_every_parameter_is_bounded_in_values():
    with pytest.raises(UsageError, match="at most 5 values"):
        parse(*[("POS", f"CIRCLE {i} 0 1") for i in range(6)])
    with pytest.raises(UsageError, match="at most 5 values"):
        parse(*[("ID", f"x{i}") for i in range(6)])
    assert len(parse(*[("POS", f"CIRCLE {i} 0 1") for i in range(5)]).shapes) == 5


@pytest.mark.parametrize("pairs", [
    [("CALIB", "²")], [("MAXREC", "²")], [("MAXREC", "1" * 5000 + "x")],
])
def test_numbers_int_refuses_are_usage_errors(pairs):
    with pytest.raises(UsageError):
        parse_sia(pairs, LIMITS)


def test_a_maxrec_of_thousands_of_digits_is_the_hard_limit():
    assert parse_sia([("MAXREC", "9" * 5000)], LIMITS).maxrec == LIMITS.maxrec_limit
    assert parse_sia([("MAXREC", "0007")], LIMITS).maxrec == 7


def test_pos_values_are_bounded_like_cutout_regions():
    limits = dataclasses.replace(LIMITS, shapes=ShapeLimits(1000, 10, 15))
    square = "POLYGON " + " ".join(f"{10 + 0.1 * (i in (1, 2))} {20 + 0.1 * (i >= 2)}" for i in range(4))
    assert len(parse_sia([("POS", square)], limits).shapes) == 1
    big = "POLYGON " + " ".join(f"{10 + 0.01 * i} {20 + 0.001 * i * i}" for i in range(11))
    with pytest.raises(UsageError, match="10"):
        parse_sia([("POS", big)], limits)
    with pytest.raises(UsageError, match="15"):
        parse_sia([("POS", square)] * 4, limits)
