"""What one job creation may consume, at the HTTP level on the shipped defaults: jobs not
yet finished, stored parameters, planned cutouts, result space while running, and no job
left behind when the queue is down."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import httpx
import pytest

from conftest import app_client, eventually, free_port
from soda.surveys.des import tile_centre

TILE = "DES0139-4457"
RA0, DEC0 = tile_centre(TILE)
DID = f"ivo://demo.cutout/des?{TILE}_r"
CIRCLE = f"{RA0} {DEC0} 0.001"
JUNK = "j" * 60_000  # under the form-field limit (64 KiB): it reaches the job kind
MEGABYTE = "j" * 1_000_000  # the reproduction's 1 MB junk parameter


def bearer(client: httpx.Client, user: str) -> dict[str, str]:
    later = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=1)
    _, secret = client.app_state.access.tokens.create(user, "test", later)  # type: ignore[attr-defined]
    return {"Authorization": f"Bearer {secret}"}


def store(client: httpx.Client):  # type: ignore[no-untyped-def]
    return client.app_state.runtime.store  # type: ignore[attr-defined]


@pytest.fixture
def client(tmp_path, demo_root) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    with app_client(tmp_path / "data", demo_root, CUTOUT_ANONYMOUS_RATE_LIMIT="0") as c:
        yield c


def test_a_megabyte_parameter_is_refused_before_any_job_exists(client: httpx.Client) -> None:
    r = client.post("/async", data={"ID": DID, "CIRCLE": CIRCLE, "JUNK": MEGABYTE})
    assert r.status_code == 413 and r.text.startswith("UsageError:"), r.text[:200]
    assert store(client).list(owner=None) == []


def test_unknown_parameters_are_neither_stored_nor_echoed(client: httpx.Client) -> None:
    r = client.post("/async", data={"ID": DID, "CIRCLE": CIRCLE, "JUNK": JUNK, "stretch": "log"})
    assert r.status_code == 303, r.text[:500]
    job = r.headers["location"]
    document = client.get(job + "/parameters")
    assert document.status_code == 200
    assert "JUNK" not in document.text and len(document.text) < 2000
    assert "STRETCH" not in document.text.upper()  # read only for pictures
    stored = store(client).get(job.rsplit("/", 1)[1])
    assert [name for name, _ in stored.parameters] == ["ID", "CIRCLE"]
    assert len(stored.typed_parameters or "") < 2000
    # A picture's own options are read, so kept.
    r = client.post("/async", data={"ID": DID, "CIRCLE": CIRCLE, "RESPONSEFORMAT": "image/png",
                                    "stretch": "log", "JUNK": "x"})
    kept = store(client).get(r.headers["location"].rsplit("/", 1)[1]).parameters
    assert [name for name, _ in kept] == ["ID", "CIRCLE", "RESPONSEFORMAT", "stretch"]


def test_pending_anonymous_jobs_are_bounded(client: httpx.Client) -> None:
    """The shipped limit: 20 jobs not yet finished for all anonymous callers together."""
    made = [client.post("/async", data={"ID": DID, "CIRCLE": CIRCLE, "JUNK": JUNK}) for _ in range(20)]
    assert {r.status_code for r in made} == {303}
    refused = client.post("/async", data={"ID": DID, "CIRCLE": CIRCLE})
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["retry-after"]) > 0
    assert refused.text.startswith("ServiceUnavailable: unfinished job limit reached")
    assert store(client).usage(None).unfinished_jobs == 20
    # A user is not held back by anonymous callers.
    assert client.post("/async", data={"ID": DID, "CIRCLE": CIRCLE}, headers=bearer(client, "ann")).status_code == 303


def test_a_users_pending_jobs_are_bounded(tmp_path, demo_root) -> None:  # type: ignore[no-untyped-def]
    with app_client(tmp_path / "data", demo_root, CUTOUT_USER_MAX_UNFINISHED_JOBS="3") as c:
        ann = bearer(c, "ann")
        made = [c.post("/async", data={"ID": DID, "CIRCLE": CIRCLE}, headers=ann) for _ in range(3)]
        assert {r.status_code for r in made} == {303}
        refused = c.post("/async", data={"ID": DID, "CIRCLE": CIRCLE, "PHASE": "RUN"}, headers=ann)
        assert refused.status_code == 429 and "ann has 3 jobs not yet finished" in refused.text
        c.delete(made[0].headers["location"], headers=ann)
        assert c.post("/async", data={"ID": DID, "CIRCLE": CIRCLE}, headers=ann).status_code == 303


def test_stored_parameters_are_bounded(tmp_path, demo_root) -> None:  # type: ignore[no-untyped-def]
    with app_client(tmp_path / "data", demo_root, CUTOUT_MAX_JOB_PARAMETERS="3") as c:
        ann = bearer(c, "ann")
        ok = c.post("/async", data={"ID": DID, "CIRCLE": CIRCLE, "BAND": "500e-9 700e-9"}, headers=ann)
        assert ok.status_code == 303, ok.text
        r = c.post("/async", data={"ID": DID, "CIRCLE": [CIRCLE, CIRCLE], "BAND": "500e-9 700e-9"},
                   headers=ann)
        assert r.status_code == 400 and "max_job_parameters is 3" in r.text
        assert store(c).usage("ann").unfinished_jobs == 1


def test_a_users_job_planning_too_many_cutouts_is_refused_before_it_exists(client: httpx.Client) -> None:
    ann = bearer(client, "ann")
    ids = [f"ivo://demo.cutout/des?{TILE}_{band}" for band in "gri"]
    circles = [f"{RA0} {DEC0 + i * 1e-5} 0.001" for i in range(667)]  # 3 x 667 = 2001 > 2000
    r = client.post("/async", data={"ID": ids, "CIRCLE": circles, "PHASE": "RUN"}, headers=ann)
    assert r.status_code == 400, r.text
    assert r.text.startswith("MultiValuedParamNotSupported: this request asks for 2001 cutouts; "
                             "a job makes at most 2000")
    assert store(client).usage("ann").unfinished_jobs == 0
    r = client.post("/async", data={"ID": ids, "CIRCLE": circles[:666]}, headers=ann)  # 1998: under the limit
    assert r.status_code == 303, r.text


def test_499_ids_by_499_circles_is_refused(client: httpx.Client) -> None:
    ann = bearer(client, "ann")
    ids = [DID] * 499
    circles = [f"{RA0} {DEC0} {0.001 + i * 1e-6:.6f}" for i in range(499)]
    r = client.post("/async", data={"ID": ids, "CIRCLE": circles}, headers=ann)
    assert r.status_code == 400 and "asks for 249001 cutouts" in r.text
    assert store(client).usage("ann").unfinished_jobs == 0


@pytest.mark.parametrize("quota_mb,kept_results", [(10, 0), (30, 2)])
def test_the_result_space_quota_stops_a_running_job(tmp_path, demo_root, quota_mb, kept_results) -> None:  # type: ignore[no-untyped-def]
    """A whole demo image is 12.6 MB of FITS; a job of five would keep 63 MB."""
    quota = quota_mb * 2**20
    with app_client(tmp_path / "data", demo_root, CUTOUT_USER_QUOTA_BYTES=str(quota)) as c:
        ann = bearer(c, "ann")
        whole = [f"ivo://demo.cutout/des?{tile}_{band}"
                 for tile in (TILE, "DES0000+0209") for band in "gri"][:5]  # 5 whole images
        r = c.post("/async", data={"ID": whole, "PHASE": "RUN"}, headers=ann)
        assert r.status_code == 303, r.text
        job = r.headers["location"]
        eventually(lambda: c.get(job + "/phase", headers=ann).text in ("COMPLETED", "ERROR"), timeout=60)
        assert c.get(job + "/phase", headers=ann).text == "ERROR"
        error = c.get(job + "/error", headers=ann).text
        assert "UsageError: result space quota reached" in error, error
        used = c.get("/usage", headers=ann).json()["result_bytes"]
        assert used <= quota
        kept = store(c).get(job.rsplit("/", 1)[1]).results
        assert len(kept) == kept_results and sum(r.size for r in kept) == used
        # The results kept are served; the one refused is not stored.
        for result in kept:
            assert c.get(f"{job}/results/{result.id}", headers=ann).status_code == 200
        files = list((tmp_path / "data" / "results" / "jobs" / job.rsplit("/", 1)[1]).glob("*"))
        assert len(files) == kept_results


def test_a_create_and_run_during_a_broker_outage_leaves_no_job(tmp_path, demo_root) -> None:  # type: ignore[no-untyped-def]
    with app_client(tmp_path / "data", demo_root, CUTOUT_ANONYMOUS_RATE_LIMIT="0",
                    CUTOUT_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0") as c:  # nothing listens
        for _ in range(3):
            r = c.post("/async", data={"ID": DID, "CIRCLE": CIRCLE, "PHASE": "RUN"})
            assert r.status_code == 503, r.text
            assert int(r.headers["retry-after"]) > 0 and "location" not in r.headers
            assert "no job was created" in r.text
        assert store(c).usage(None).unfinished_jobs == 0
        assert store(c).list(owner=None) == []
