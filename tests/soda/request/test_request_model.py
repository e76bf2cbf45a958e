"""One SODA request as the pipeline sees it (soda/request/model.py, render.py, params.py):
formats, picture options and their bounds, and the canonical pairs a job stores."""

from __future__ import annotations

import math

import pytest

from dali.errors import MultiValuedParamNotSupported, UsageError
from renderers import Scaling
from soda.request.model import SodaRequest, parse_request
from soda.request.params import FITS, parse_cutout, to_pairs
from soda.request.render import JPEG, PNG, RenderParams, RGBRequest, parse_render
from soda.sky.regions import Circle, Polygon, Range

MAX_SIZE = 512
ID = "ivo://demo.cutout/des?DES0139-4457_r"


def request(*pairs: tuple[str, str]) -> SodaRequest:
    return parse_request([("ID", ID), *pairs], MAX_SIZE)


# --- formats ------------------------------------------------------------------------------

# DALI §3.4.3: a media type named is the one answered; a short form gets the canonical type.
@pytest.mark.parametrize(("value", "mime", "kind", "extension"), [
    (None, FITS, FITS, "fits"),
    ("fits", FITS, FITS, "fits"),
    ("image/fits", "image/fits", FITS, "fits"),
    ("application/fits; charset=binary", FITS, FITS, "fits"),
    ("png", PNG, PNG, "png"),
    ("IMAGE/PNG", PNG, PNG, "png"),
    ("image/png;x-quality=high", PNG, PNG, "png"),
    ("jpeg", JPEG, JPEG, "jpg"),
    ("jpg", JPEG, JPEG, "jpg"),
    ("image/jpg", "image/jpg", JPEG, "jpg"),
    (" image/jpeg ; q=1", JPEG, JPEG, "jpg"),
])
def test_formats_short_forms_and_mime_parameters(value, mime, kind, extension):
    parsed = request() if value is None else request(("RESPONSEFORMAT", value))
    assert (parsed.mime, parsed.format, parsed.extension) == (mime, kind, extension)
    assert parsed.cutout.response_format == mime
    assert (parsed.render is None) == (kind == FITS)


def test_unsupported_format_names_the_supported_ones():
    with pytest.raises(UsageError) as caught:
        request(("RESPONSEFORMAT", "image/gif"))
    message = caught.value.message
    assert message.startswith("RESPONSEFORMAT='image/gif': unsupported format; supported: ")
    for name in ("application/fits", "image/png", "jpeg", "jpg"):
        assert name in message


def test_responseformat_twice_is_multivalued():
    with pytest.raises(MultiValuedParamNotSupported) as caught:
        request(("RESPONSEFORMAT", "png"), ("responseformat", "png"))
    assert caught.value.status == 400
    assert caught.value.text.startswith("MultiValuedParamNotSupported: RESPONSEFORMAT was given 2 values")


def test_fits_ignores_the_picture_options():
    parsed = request(("SIZE", "not a size"), ("RGB", "x"), ("Q", "-1"), ("STRETCH", "wobbly"))
    assert parsed.render is None
    assert parsed.rgb is None


def test_picture_defaults():
    parsed = request(("RESPONSEFORMAT", "png"))
    assert parsed.render == RenderParams()
    assert parsed.render.scaling == Scaling("asinh", "sky", (0.5, 99.5))
    assert (parsed.render.size, parsed.render.rgb, parsed.render.q) == (None, None, 8.0)
    assert parsed.render.use_default_rgb is False
    assert parsed.rgb is None


def test_rgb_requests():
    default = request(("RESPONSEFORMAT", "png"), ("RGB", " default "))
    assert default.render.use_default_rgb and default.render.rgb is None
    assert default.rgb == RGBRequest(None)
    explicit = request(("RESPONSEFORMAT", "jpeg"), ("rgb", "i, r ,g"))
    assert explicit.render.rgb == ("i", "r", "g")
    assert explicit.rgb == RGBRequest(("i", "r", "g"))
    spaced = request(("RESPONSEFORMAT", "png"), ("RGB", "z Y g"))
    assert spaced.rgb == RGBRequest(("z", "Y", "g"))


def test_picture_options_are_read():
    parsed = request(("RESPONSEFORMAT", "png"), ("stretch", "log"), ("PERCENTILES", "1 99"),
                     ("Size", str(MAX_SIZE)), ("Q", "0.5"))
    assert parsed.render.scaling == Scaling("log", "percentile", (1.0, 99.0))
    assert (parsed.render.size, parsed.render.q) == (MAX_SIZE, 0.5)
    minmax = parse_render([("LIMITS", "minmax"), ("PERCENTILES", "0 100")], MAX_SIZE)
    assert minmax.scaling == Scaling("asinh", "minmax", (0.0, 100.0))  # LIMITS given wins


# --- bounds of the picture options ---------------------------------------------------------

@pytest.mark.parametrize(("pairs", "fragment"), [
    ([("SIZE", str(MAX_SIZE + 1))], f"SIZE='{MAX_SIZE + 1}': must be a whole number of pixels from 1 to {MAX_SIZE}"),
    ([("SIZE", "0")], "from 1 to 512"),
    ([("SIZE", "-5")], "from 1 to 512"),
    ([("SIZE", "12.5")], "from 1 to 512"),
    ([("PERCENTILES", "99 1")], "PERCENTILES='99 1': need 0 <= low < high <= 100"),
    ([("PERCENTILES", "5 5")], "need 0 <= low < high <= 100"),
    ([("PERCENTILES", "-1 50")], "need 0 <= low < high <= 100"),
    ([("PERCENTILES", "1 100.5")], "need 0 <= low < high <= 100"),
    ([("PERCENTILES", "1")], "give two numbers, low and high"),
    ([("PERCENTILES", "1 nan")], "PERCENTILES='nan': must be finite"),
    ([("PERCENTILES", "1 x")], "PERCENTILES='x': not a number"),
    ([("Q", "0")], "Q='0': the Lupton softening must be greater than 0"),
    ([("Q", "-2")], "must be greater than 0"),
    ([("Q", "inf")], "Q='inf': must be finite"),
    ([("RGB", "i,r")], "RGB='i,r': give three bands as R,G,B"),
    ([("RGB", "i,r,g,z")], "give three bands"),
    ([("STRETCH", "ASINH")], "STRETCH='ASINH': must be one of linear, asinh, log, sqrt"),
    ([("LIMITS", "auto")], "LIMITS='auto': must be one of sky, zscale, minmax, percentile"),
])
def test_picture_option_bounds(pairs, fragment):
    with pytest.raises(UsageError) as caught:
        parse_render(pairs, MAX_SIZE)
    assert caught.value.status == 400
    assert fragment in caught.value.message


def test_picture_options_are_single_valued():
    with pytest.raises(MultiValuedParamNotSupported, match="SIZE was given 2 times"):
        request(("RESPONSEFORMAT", "png"), ("SIZE", "10"), ("size", "20"))


def test_size_with_a_superscript_digit_is_a_usage_error():
    with pytest.raises(UsageError, match="SIZE"):
        parse_render([("SIZE", "\u00b2")], MAX_SIZE)


# --- canonical pairs -----------------------------------------------------------------------

CLOCKWISE = "10.0 10.2 10.2 10.2 10.2 10.0 10.0 10.0"  # DALI §3.3.7's square, the other way round

ROUND_TRIPS = [
    [("ID", ID), ("CIRCLE", "24.9655 -44.9583 0.01")],
    [("ID", ID), ("POS", "RANGE -Inf 25 -45.1 +Inf"), ("RESPONSEFORMAT", "png")],
    [("POS", f"POLYGON {CLOCKWISE}"), ("FILTER", "r,g"), ("RESPONSEFORMAT", "image/jpeg")],
    [("POS", "CIRCLE 0.01 2.15 0.005"), ("BAND", "5e-7 6e-7"), ("BAND", "8.5e-7 +Inf")],
    [("ID", ID), ("ID", "other"), ("TIME", "56000.5 56001.25"), ("TIME", "-Inf 50000"),
     ("POL", "I"), ("POL", "Q")],
    [("polygon", "359.9 -0.1 0.1 -0.1 0.1 0.1"), ("pos", "CIRCLE 360 -90 180"), ("pol", "POLI")],
]


@pytest.mark.parametrize("pairs", ROUND_TRIPS)
def test_to_pairs_round_trips_through_parse_request(pairs):
    parsed = parse_request(pairs, MAX_SIZE)
    stored = to_pairs(parsed.cutout)
    again = parse_request(stored, MAX_SIZE)
    assert again.cutout == parsed.cutout
    assert again.mime == parsed.mime
    assert to_pairs(again.cutout) == stored
    assert all(isinstance(n, str) and isinstance(v, str) and v for n, v in stored)


def test_round_trip_keeps_values_exactly():
    parsed = parse_cutout([("POS", f"POLYGON {CLOCKWISE}"), ("POS", "RANGE -Inf 25 -45.1 +Inf"),
                           ("CIRCLE", "0.1 0.2 0.30000000000000004"), ("BAND", "1e-7 +Inf"),
                           ("TIME", "56000.5 56001.25"), ("POL", "V")])
    polygon, range_, circle = parsed.shapes
    # The clockwise polygon is stored in the DALI order, and that order survives the trip.
    assert isinstance(polygon, Polygon)
    assert polygon.vertices == ((10.0, 10.0), (10.2, 10.0), (10.2, 10.2), (10.0, 10.2))
    assert range_ == Range(-math.inf, 25.0, -45.1, math.inf)
    assert circle == Circle(0.1, 0.2, 0.30000000000000004)
    again = parse_cutout(to_pairs(parsed))
    assert again.shapes == (polygon, range_, circle)
    assert again.bands == ((1e-7, math.inf),)
    assert again.times == ((56000.5, 56001.25),)
    assert again.pols == ("V",)
    assert ("POS", "RANGE -Inf 25.0 -45.1 +Inf") in to_pairs(parsed)
