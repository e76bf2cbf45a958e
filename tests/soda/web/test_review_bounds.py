"""Bounds found in review: inputs that reached an exception, or planned without a bound."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from astropy.io import fits

from conftest import app_client
from soda.engine.cutout import ImageUnreadable, celestial_wcs
from soda.ops.metrics import _method_of
from soda.plan import MAX_COMBINATIONS
from soda.surveys.des import tile_centre

TILE = "DES0139-4457"
RA0, DEC0 = tile_centre(TILE)
DID = f"ivo://demo.cutout/des?{TILE}_r"
CIRCLE = f"{RA0} {DEC0} 0.001"


@pytest.fixture
def client(tmp_path, demo_root) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    with app_client(tmp_path / "data", demo_root, CUTOUT_ANONYMOUS_RATE_LIMIT="0") as c:
        yield c


def test_a_request_naming_too_many_combinations_is_refused_before_planning(client: httpx.Client) -> None:
    bands = [f"{4e-7 + i * 1e-10!r} {4e-7 + i * 1e-10 + 1e-11!r}" for i in range(100)]
    times = [f"{50000 + i} {50000 + i}" for i in range(100)]
    circles = [f"{RA0 + i * 1e-4} {DEC0} 0.001" for i in range(30)]
    assert 100 * 100 * 30 > MAX_COMBINATIONS  # 230 fields, well within the form limits
    r = client.post("/sync", data={"ID": DID, "CIRCLE": circles, "BAND": bands, "TIME": times})
    assert r.status_code == 400 and r.text.startswith("UsageError:") and "combinations" in r.text, r.text[:300]


def test_a_vanishing_q_is_a_usage_error(client: httpx.Client) -> None:
    r = client.get("/sync", params={"POS": f"CIRCLE {CIRCLE}", "RGB": "default",
                                    "RESPONSEFORMAT": "png", "Q": "5e-324"})
    assert r.status_code == 400 and r.text.startswith("UsageError: Q="), r.text[:300]


def test_an_execution_duration_beyond_the_database_integers_is_a_usage_error(client: httpx.Client) -> None:
    r = client.post("/async", data={"ID": DID, "CIRCLE": CIRCLE, "EXECUTIONDURATION": "9" * 20})
    assert r.status_code == 400 and r.text.startswith("UsageError: EXECUTIONDURATION"), r.text[:300]


def test_the_method_label_takes_no_value_a_client_invents() -> None:
    assert _method_of({"method": "GET"}) == "GET"
    assert _method_of({"method": "XYZZY123"}) == "other"


def test_a_header_wcslib_refuses_makes_the_image_unreadable() -> None:
    header = fits.Header({"NAXIS": 2, "NAXIS1": 10, "NAXIS2": 10, "CTYPE1": "RA---TAN",
                          "CTYPE2": "DEC--TAN", "CD1_1": "x"})
    header["CUNIT1"] = "parsecs-per-fortnight"
    with pytest.raises(ImageUnreadable):
        celestial_wcs(header)
