"""The SODA job kind keeps the request typed from the API to the worker."""

from __future__ import annotations

import math

import pytest

from conf import load_settings
from dali.errors import MultiValuedParamNotSupported, UsageError
from soda.cutouts import Cutouts
from soda.jobs.cutout import cutout_job_kind
from soda.sky.regions import Polygon, Range
from soda.surveys.registry import load_datasets
from conftest import link_demo, scanned_catalogue

DID = "ivo://demo.cutout/des?DES0139-4457_r"


@pytest.fixture(scope="module")
def kind(tmp_path_factory, demo_root):  # type: ignore[no-untyped-def]
    data = link_demo(tmp_path_factory.mktemp("data"), demo_root)
    settings = load_settings(environ={"CUTOUT_DATA_DIR": str(data)})
    return cutout_job_kind(Cutouts(load_datasets(settings, scanned_catalogue(demo_root)), settings))


@pytest.mark.parametrize("pairs", [
    [("ID", DID), ("POS", "RANGE 24.9 25.0 -Inf +Inf"), ("BAND", "5e-7 +Inf")],
    [("POS", "POLYGON 24.96 -44.96 24.97 -44.96 24.97 -44.95"), ("FILTER", "g,r")],
    [("ID", DID), ("CIRCLE", "24.9655 -44.9583 0.01"), ("RESPONSEFORMAT", "png"),
     ("STRETCH", "log"), ("PERCENTILES", "1 99"), ("SIZE", "64")],
    [("POS", "CIRCLE 24.9655 -44.9583 0.01"), ("RGB", "i,r,g"), ("RESPONSEFORMAT", "image/jpeg"), ("Q", "3")],
    [("ID", DID), ("TIME", "-Inf 60000"), ("POL", "I")],
])
def test_the_stored_request_is_the_parsed_request(kind, pairs) -> None:  # type: ignore[no-untyped-def]
    parsed = kind.parse(pairs, "ann")
    assert kind.load(kind.dump(parsed)) == parsed


def test_open_bounds_survive_storage(kind) -> None:  # type: ignore[no-untyped-def]
    stored = kind.load(kind.dump(kind.parse([("ID", DID), ("POS", "RANGE 24.9 25.0 -Inf +Inf")], None)))
    shape = stored.cutout.shapes[0]
    assert isinstance(shape, Range) and shape.dec_min == -math.inf and shape.dec_max == math.inf


def test_shapes_keep_their_type(kind) -> None:  # type: ignore[no-untyped-def]
    stored = kind.load(kind.dump(kind.parse(
        [("POLYGON", "24.96 -44.96 24.97 -44.96 24.97 -44.95"), ("FILTER", "r")], None)))
    assert isinstance(stored.cutout.shapes[0], Polygon)


def test_a_job_is_checked_at_creation(kind) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError, match="names no dataset"):
        kind.parse([("ID", "ivo://demo.cutout/des?NOPE_r")], "ann")
    circles = [("CIRCLE", f"{24.96 + 0.001 * i} -44.9583 0.001") for i in range(21)]
    with pytest.raises(MultiValuedParamNotSupported, match="a job makes at most 20 for anonymous"):
        kind.parse([("ID", DID), *circles], None)  # anonymous callers: 20 cutouts per job
    assert len(kind.parse([("ID", DID), *circles[:20]], None).cutout.shapes) == 20
    assert len(kind.parse([("ID", DID), *circles], "ann").cutout.shapes) == 21


def test_the_parameters_document_shows_what_the_client_sent(kind) -> None:  # type: ignore[no-untyped-def]
    pairs = [("id", DID), ("circle", "24.9655 -44.9583 0.01")]
    assert kind.shown(kind.parse(pairs, "ann"), pairs) == pairs

