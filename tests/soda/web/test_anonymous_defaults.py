"""The anonymous limits exactly as shipped (most tests switch them off with FAST_TIMINGS):
cutouts per /sync and per job at, under and over the limit, whole-image pictures for
anonymous callers, the rate limit and the result space of anonymous jobs.

The images are the shipped demo's size (2048² pixels), larger than an anonymous cutout."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lxml import etree
from PIL import Image

from auth import ANONYMOUS
from conf import Settings
from conftest import app_client
from dali.errors import UsageError
from soda.surveys.demo import build_des_demo
from soda.surveys.des import tile_centre
from uws.quota import Usage, check_run

TILE = "DES0139-4457"
RA0, DEC0 = tile_centre(TILE)
DID = f"ivo://demo.cutout/des?{TILE}_r"
SHIPPED = Settings().limits
VOTABLE = "{http://www.ivoa.net/xml/VOTable/v1.3}"


@pytest.fixture(scope="module")
def shipped_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo2048") / "des"
    build_des_demo(root, size=2048, tiles=(TILE,), bands=("r",))
    return root


@pytest.fixture
def client(tmp_path: Path, shipped_demo: Path) -> Iterator[httpx.Client]:
    with app_client(tmp_path / "data", shipped_demo) as c:   # no limit changed
        yield c


def circles(count: int) -> list[str]:
    return [f"{RA0 + 0.002 * i} {DEC0} 0.001" for i in range(count)]


def test_the_shipped_anonymous_limits() -> None:
    assert (SHIPPED.anonymous_max_sync_cutouts, SHIPPED.anonymous_max_job_cutouts) == (5, 20)
    assert SHIPPED.anonymous_max_cutout_pixels == 1024 * 1024 < 2048 * 2048
    assert (SHIPPED.anonymous_rate_limit, SHIPPED.anonymous_rate_window_seconds) == (60, 60)
    assert SHIPPED.anonymous_async == "limited" and SHIPPED.anonymous_quota_bytes == 2**30


@pytest.mark.parametrize("count,status", [(4, 200), (5, 200), (6, 400)])
def test_cutouts_per_sync_request_under_at_and_over(client: httpx.Client, count: int, status: int) -> None:
    r = client.post("/sync", data={"ID": DID, "CIRCLE": circles(count)})
    assert r.status_code == status, r.text
    if status == 400:
        assert r.text.startswith("MultiValuedParamNotSupported: this request asks for 6 cutouts; /sync "
                                 "makes at most 5 for anonymous callers (use /async (up to 20 per job)")


@pytest.mark.parametrize("count,status", [(19, 303), (20, 303), (21, 400)])
def test_cutouts_per_job_under_at_and_over(client: httpx.Client, count: int, status: int) -> None:
    r = client.post("/async", data={"ID": DID, "CIRCLE": circles(count)})   # PENDING: nothing runs
    assert r.status_code == status, r.text
    if status == 400:
        assert r.text.startswith("MultiValuedParamNotSupported: this request asks for 21 cutouts; a job "
                                 "makes at most 20 for anonymous callers")


def test_a_pending_job_cannot_grow_over_the_limit(client: httpx.Client) -> None:
    job = client.post("/async", data={"ID": DID, "CIRCLE": circles(20)}).headers["location"]
    r = client.post(job + "/parameters", data={"CIRCLE": circles(21)})
    assert r.status_code == 400 and r.text.startswith("MultiValuedParamNotSupported:")
    assert client.post(job + "/parameters", data={"CIRCLE": circles(3)}).status_code == 303


def test_an_anonymous_job_of_the_readme_runs(client: httpx.Client) -> None:
    job = client.post("/async", data={"ID": DID, "CIRCLE": circles(3), "PHASE": "RUN"}).headers["location"]
    doc = etree.fromstring(client.get(job, params={"WAIT": "20", "PHASE": "QUEUED"}).content)
    if doc.findtext("{http://www.ivoa.net/xml/UWS/v1.0}phase") == "EXECUTING":
        doc = etree.fromstring(client.get(job, params={"WAIT": "20", "PHASE": "EXECUTING"}).content)
    assert doc.findtext("{http://www.ivoa.net/xml/UWS/v1.0}phase") == "COMPLETED"
    assert len(doc.findall(".//{http://www.ivoa.net/xml/UWS/v1.0}result")) == 3


def test_the_datalink_preview_of_a_whole_image_for_an_anonymous_caller(client: httpx.Client) -> None:
    links = etree.fromstring(client.get("/links", params={"ID": DID}).content)
    rows = [[td.text for td in tr] for tr in links.iter(f"{VOTABLE}TR")]
    [preview] = [row[1] for row in rows if row[5] == "#preview"]
    r = client.get(preview.removeprefix("http://testserver"))
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(r.content)) as png:
        assert png.size == (512, 512)
    thumbnails = list((Path(client.app_state.runtime.settings.ops.data_dir) / "thumbnails").glob("*.npy"))  # type: ignore[attr-defined]
    assert len(thumbnails) == 1   # made once, from the whole 2048² image
    again = client.get(preview.removeprefix("http://testserver"))
    assert again.status_code == 200 and again.content == r.content


def test_the_most_detailed_whole_image_picture_an_anonymous_caller_gets(client: httpx.Client) -> None:
    r = client.get("/sync", params={"ID": DID, "RESPONSEFORMAT": "jpeg", "SIZE": "1025"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(r.content)) as jpeg:
        assert jpeg.size == (1024, 1024)   # 2048/1025 rounds up to 1/2: the thumbnail itself


@pytest.mark.parametrize("params,why", [
    ({}, "the whole image in FITS"), ({"RESPONSEFORMAT": "png"}, "a full-resolution picture"),
    ({"RESPONSEFORMAT": "png", "SIZE": "2048"}, "pixels finer than the thumbnail's (1025 still rounds to 1/2)")])
def test_whole_images_beyond_the_anonymous_limit_are_refused(client: httpx.Client, params, why) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/sync", params={"ID": DID, **params})
    assert r.status_code == 400, why
    assert r.text.startswith("UsageError:") and "anonymous callers" in r.text, why


def test_the_rate_limit_is_on(client: httpx.Client) -> None:
    statuses = [client.get("/async").status_code for _ in range(SHIPPED.anonymous_rate_limit + 1)]
    assert statuses == [200] * SHIPPED.anonymous_rate_limit + [429]
    over = client.get("/sync", params={"ID": DID, "CIRCLE": circles(1)[0]})
    assert over.status_code == 429 and 1 <= int(over.headers["retry-after"]) <= 60


def test_anonymous_jobs_share_a_result_space(client: httpx.Client) -> None:
    allowance = client.app_state.access.allowance(ANONYMOUS)  # type: ignore[attr-defined]
    assert allowance.max_result_bytes == SHIPPED.anonymous_quota_bytes
    check_run(allowance, Usage(active_jobs=0, result_bytes=SHIPPED.anonymous_quota_bytes - 1), "anonymous")
    with pytest.raises(UsageError) as caught:
        check_run(allowance, Usage(active_jobs=0, result_bytes=SHIPPED.anonymous_quota_bytes), "anonymous")
    assert caught.value.status == 403
