"""Inputs that used to fail inside the service (500, logged twice) are usage errors, and
the error path itself takes any text."""

from __future__ import annotations

import logging
import math

import httpx
import numpy as np
import pytest
from lxml import etree
from starlette.testclient import TestClient

from conftest import assert_votable, eventually
from dali.votable import error_document
from renderers.stretch import lupton_params
from soda.surveys.des import tile_centre

TILE = "DES0139-4457"
RA0, DEC0 = tile_centre(TILE)
DID = f"ivo://demo.cutout/des?{TILE}_r"
PNG = {"ID": DID, "CIRCLE": f"{RA0} {DEC0} 0.01", "RESPONSEFORMAT": "image/png"}


def usage_error(r: httpx.Response, status: int = 400) -> str:
    assert r.status_code == status, r.text[:300]
    assert r.headers["content-type"].startswith("text/plain") and r.text.startswith("UsageError:"), r.text[:300]
    assert len(r.text) < 400, r.text  # the value is quoted shortened
    return r.text


def test_a_size_int_cannot_read_is_a_usage_error(embedded: httpx.Client) -> None:
    text = usage_error(embedded.get("/sync", params={**PNG, "SIZE": "9" * 4301}))
    assert "SIZE=" in text and "whole number of pixels" in text
    # Leading zeros are still a number.
    assert embedded.get("/sync", params={**PNG, "SIZE": "0" * 5000 + "64"}).status_code == 200


def test_an_overflowing_q_is_a_usage_error(embedded: httpx.Client) -> None:
    text = usage_error(embedded.get("/sync", params={**PNG, "RGB": "default", "Q": "1e300"}))
    assert "Q='1e300'" in text and "at most" in text


def test_an_overflowing_q_ends_an_async_job_with_a_usage_error(embedded: httpx.Client,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    job = {**PNG, "RGB": "default", "Q": "1e300", "PHASE": "RUN"}
    # Checked when the job is created ...
    assert "Q='1e300'" in usage_error(embedded.post("/async", data=job))
    # ... and, were that check gone, by the renderer in the worker: a usage error, not a failure.
    monkeypatch.setattr("soda.request.render.MAX_Q", math.inf, raising=False)
    created = embedded.post("/async", data=job)
    assert created.status_code == 303, created.text
    url = created.headers["location"]
    phase = eventually(lambda: embedded.get(url + "/phase").text.strip() in ("ERROR", "COMPLETED")
                       and embedded.get(url + "/phase").text.strip())
    assert phase == "ERROR", embedded.get(url).text
    error = embedded.get(url + "/error")
    assert "UsageError: cannot render this cutout: q must be at most" in error.text, error.text


def test_lupton_params_refuse_a_q_the_stretch_cannot_reach() -> None:
    band = np.zeros((50, 50), np.float32)
    band[:2] = 100  # no sky noise: the stretch comes from the bright end
    with pytest.raises(ValueError, match="q"):
        lupton_params((band, band, band), q=1e300)
    assert lupton_params((band, band, band), q=8).q == 8


def test_a_path_with_a_nul_gets_a_votable_404(embedded: httpx.Client) -> None:
    r = embedded.get("/x%00", headers={"Accept": "application/x-votable+xml"})
    assert r.status_code == 404, r.text
    doc = assert_votable(r.content)
    info = doc.xpath("//*[local-name()='INFO'][@name='QUERY_STATUS']")[0]
    assert info.get("value") == "ERROR" and info.text == "UsageError: no resource at /x\\x00"


def test_the_votable_error_document_takes_any_text() -> None:
    text = "bad \x00 \x01\x1b \ud800 \ufffe kept: tab\t, é, ✓"
    doc = etree.fromstring(error_document(text))
    written = doc.xpath("//*[local-name()='INFO']")[0].text
    assert written == "bad \\x00 \\x01\\x1b \\ud800 \\ufffe kept: tab\t, é, ✓"


def test_an_unexpected_failure_is_logged_once(embedded: httpx.Client, monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    def broken(dataset_id: str):  # type: ignore[no-untyped-def]
        raise RuntimeError("the image store fell over")
    monkeypatch.setattr(embedded.app_state.runtime.datasets, "by_id", broken)  # type: ignore[attr-defined]
    # A client that raises what the app raises: the server would log it a second time.
    strict = TestClient(embedded.app, base_url="http://testserver", raise_server_exceptions=True)  # type: ignore[attr-defined]
    with caplog.at_level(logging.ERROR):
        r = strict.get("/links", params={"ID": DID})
    assert r.status_code == 500 and "internal failure, logged as incident" in r.text
    logged = [rec for rec in caplog.records if rec.exc_info]
    assert len(logged) == 1 and "unexpected failure" in logged[0].getMessage(), logged
