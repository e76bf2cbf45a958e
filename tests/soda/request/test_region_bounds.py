"""The regions one request may name are bounded before they are checked (a POLYGON's
self-intersection check costs time in the square of its vertices)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import httpx
import pytest

from conftest import app_client
from dali.errors import UsageError
from soda.request.params import ShapeLimits, parse_cutout

LIMITS = ShapeLimits(max_shapes=5, max_polygon_vertices=10, max_request_polygon_vertices=25)


def ring(n: int, ra: float = 24.8, dec: float = -44.9) -> str:
    return " ".join(f"{ra + 0.01 * math.cos(2 * math.pi * k / n):.6f} "
                    f"{dec + 0.01 * math.sin(2 * math.pi * k / n):.6f}" for k in range(n))


def test_more_regions_than_allowed_are_refused_naming_the_limit() -> None:
    assert len(parse_cutout([("CIRCLE", "24.8 -44.9 0.01")] * 5, limits=LIMITS).shapes) == 5
    with pytest.raises(UsageError, match=r"at most 5 regions .*max_request_shapes"):
        parse_cutout([("CIRCLE", "24.8 -44.9 0.01")] * 3 + [("POS", "RANGE 24 25 -45 -44")] * 3, limits=LIMITS)


def test_a_polygon_with_more_vertices_than_allowed_is_refused_before_its_numbers_are_read() -> None:
    assert len(parse_cutout([("POLYGON", ring(10))], limits=LIMITS).shapes[0].vertices) == 10
    closed = ring(10) + " " + " ".join(ring(10).split()[:2])  # an explicit closing vertex is not counted
    assert len(parse_cutout([("POLYGON", closed)], limits=LIMITS).shapes[0].vertices) == 10
    with pytest.raises(UsageError, match=r"at most 10 vertices, not 11 \(max_polygon_vertices\)"):
        parse_cutout([("POS", "POLYGON " + ring(11))], limits=LIMITS)
    # Far too many: refused from the count of its words, so not even a bad number is read.
    with pytest.raises(UsageError, match=r"at most 10 vertices, not 1000"):
        parse_cutout([("POLYGON", "x " * 2000)], limits=LIMITS)


def test_the_polygons_of_a_request_share_one_vertex_budget() -> None:
    assert len(parse_cutout([("POLYGON", ring(5))] * 5, limits=LIMITS).shapes) == 5
    with pytest.raises(UsageError, match=r"at most 25 vertices together \(max_request_polygon_vertices\)"):
        parse_cutout([("POLYGON", ring(10))] * 3, limits=LIMITS)


@pytest.fixture
def client(tmp_path, demo_root) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    with app_client(tmp_path / "data", demo_root, CUTOUT_ANONYMOUS_RATE_LIMIT="0") as c:
        yield c


def test_a_body_full_of_polygons_is_refused_at_once(client: httpx.Client) -> None:
    """A 1 MiB body of the largest polygons allowed took ~20 s of CPU to check."""
    settings = client.app_state.runtime.settings.soda  # type: ignore[attr-defined]
    polygon = ring(settings.max_polygon_vertices)
    count = 1_000_000 // (len(polygon) + 9)
    assert count * settings.max_polygon_vertices > settings.max_request_polygon_vertices
    started = time.process_time()
    r = client.post("/sync", data={"POLYGON": [polygon] * count})
    assert r.status_code == 400 and r.text.startswith("UsageError: POLYGON="), r.text[:300]
    assert "max_request_polygon_vertices" in r.text
    assert time.process_time() - started < 3  # ~0.3 s here; the bound, not the machine, is tested


def test_the_region_count_is_a_setting(tmp_path, demo_root) -> None:  # type: ignore[no-untyped-def]
    with app_client(tmp_path / "data", demo_root, CUTOUT_ANONYMOUS_RATE_LIMIT="0",
                    CUTOUT_MAX_REQUEST_SHAPES="2") as c:
        r = c.post("/sync", data={"ID": "ivo://demo.cutout/des?DES0139-4457_r",
                                  "CIRCLE": ["24.8 -44.9 0.01"] * 3})
    assert r.status_code == 400 and "at most 2 regions" in r.text, r.text[:300]
