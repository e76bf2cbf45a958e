"""Anonymous limits and per-user quotas, each at, just under and just over the limit."""

from __future__ import annotations

import dataclasses
import io
import datetime as dt
from collections.abc import Iterator

import httpx
import pytest
from astropy.io import fits

from auth.limits import MemoryRateLimiter, RedisRateLimiter
from conftest import app_client, assert_uws, eventually, uws_text
from soda.surveys.des import tile_centre

TILE = "DES0139-4457"
RA0, DEC0 = tile_centre(TILE)
DID = f"ivo://demo.cutout/des?{TILE}_r"
CIRCLE = f"{RA0} {DEC0} 0.01"


def bearer(client: httpx.Client, user: str) -> dict[str, str]:
    later = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=1)
    _, secret = client.app_state.access.tokens.create(user, "test", later)  # type: ignore[attr-defined]
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def client(tmp_path, demo_root) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    with app_client(tmp_path / "data", demo_root, CUTOUT_ANONYMOUS_RATE_LIMIT="0") as c:
        yield c


# --- anonymous cutouts: pixels and positions ------------------------------------------------

def test_anonymous_pixel_limit_at_under_and_over(client: httpx.Client) -> None:
    user = bearer(client, "alice")
    full = client.get("/sync", params={"ID": DID, "CIRCLE": CIRCLE}, headers=user)
    assert full.status_code == 200
    with fits.open(io.BytesIO(full.content)) as hdul:
        pixels = hdul[1].header["NAXIS1"] * hdul[1].header["NAXIS2"]
    cutouts = client.app_state.runtime.cutouts  # type: ignore[attr-defined]
    for limit, status in ((pixels + 1, 200), (pixels, 200), (pixels - 1, 400)):
        cutouts.anonymous_limits = dataclasses.replace(cutouts.anonymous_limits, max_pixels=limit)
        r = client.get("/sync", params={"ID": DID, "CIRCLE": CIRCLE})
        assert r.status_code == status, (limit, r.text)
        if status == 400:
            assert r.text.startswith("UsageError:") and "anonymous" in r.text
    # A logged-in user is held to the service's limit, not the anonymous one.
    assert client.get("/sync", params={"ID": DID, "CIRCLE": CIRCLE}, headers=user).status_code == 200


def test_anonymous_preview_reads_no_more_than_the_anonymous_limit(client: httpx.Client) -> None:
    cutouts = client.app_state.runtime.cutouts  # type: ignore[attr-defined]
    cutouts.anonymous_limits = dataclasses.replace(cutouts.anonymous_limits, max_preview_source=1000)
    r = client.get("/sync", params={"ID": DID, "CIRCLE": CIRCLE, "RESPONSEFORMAT": "image/png"})
    assert r.status_code == 400 and "anonymous" in r.text


@pytest.mark.parametrize("count,status", [(1, 200), (2, 200), (3, 400)])
def test_anonymous_positions_per_request_under_at_and_over(tmp_path, demo_root, count, status) -> None:  # type: ignore[no-untyped-def]
    circles = [f"{RA0 + 0.01 * i} {DEC0} 0.003" for i in range(count)]
    with app_client(tmp_path / "data", demo_root, CUTOUT_ANONYMOUS_RATE_LIMIT="0",
                    CUTOUT_ANONYMOUS_MAX_SYNC_CUTOUTS="2") as c:
        r = c.post("/sync", data={"ID": DID, "CIRCLE": circles})
        assert r.status_code == status, r.text
        if status == 400:
            assert r.text.startswith("MultiValuedParamNotSupported:") and "log in" in r.text
        user = c.post("/sync", data={"ID": DID, "CIRCLE": circles}, headers=bearer(c, "alice"))
        assert user.status_code == 200


# --- anonymous rate limit -----------------------------------------------------------------

def test_rate_limit_under_at_and_over_with_retry_after(tmp_path, demo_root) -> None:  # type: ignore[no-untyped-def]
    with app_client(tmp_path / "data", demo_root, CUTOUT_ANONYMOUS_RATE_LIMIT="5", CUTOUT_TRUSTED_PROXIES="127.0.0.1",
                    CUTOUT_ANONYMOUS_RATE_WINDOW_SECONDS="3600") as c:
        here = {"X-Forwarded-For": "192.0.2.7"}
        statuses = [c.get("/links", params={"ID": DID}, headers=here).status_code for _ in range(6)]
        assert statuses == [200, 200, 200, 200, 200, 429]   # 4 under, the 5th at, the 6th over
        over = c.get("/sync", params={"ID": DID, "CIRCLE": CIRCLE}, headers=here)
        assert over.status_code == 429 and over.text.startswith("ServiceUnavailable:")
        assert 1 <= int(over.headers["retry-after"]) <= 3600
        # Another client is counted apart; a logged-in user is not limited.
        assert c.get("/links", params={"ID": DID}, headers={"X-Forwarded-For": "192.0.2.8"}).status_code == 200
        user = {**here, **bearer(c, "alice")}
        assert all(c.get("/links", params={"ID": DID}, headers=user).status_code == 200 for _ in range(8))
        # VOSI stays reachable for the monitoring of a limited client.
        assert c.get("/availability", headers=here).status_code == 200


def test_memory_rate_limiter_window_resets() -> None:
    now = [1000.0]
    limiter = MemoryRateLimiter(limit=3, window=10, clock=lambda: now[0])
    assert [limiter.hit("a") for _ in range(3)] == [None, None, None]
    assert limiter.hit("a") == pytest.approx(10.0)
    now[0] = 1009.5
    assert limiter.hit("a") == pytest.approx(0.5)
    now[0] = 1010.0
    assert limiter.hit("a") is None


def test_redis_rate_limiter_is_shared_between_instances(redis_url: str) -> None:
    import uuid
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    first = RedisRateLimiter(redis_url, namespace, limit=2, window=60)
    second = RedisRateLimiter(redis_url, namespace, limit=2, window=60)
    assert first.hit("c") is None and second.hit("c") is None   # at the limit
    wait = first.hit("c")                                          # over it, seen by both
    assert wait is not None and 0 < wait <= 60
    assert second.hit("d") is None
    first.redis.delete(*first.redis.keys(f"{namespace}:*"))


# --- anonymous jobs -------------------------------------------------------------------------

def test_anonymous_async_off(tmp_path, demo_root) -> None:  # type: ignore[no-untyped-def]
    with app_client(tmp_path / "data", demo_root, CUTOUT_ANONYMOUS_ASYNC="off") as c:
        r = c.post("/async", data={"ID": DID, "CIRCLE": CIRCLE})
    assert r.status_code == 401
    assert any(c.startswith("Bearer") for c in r.headers.get_list("www-authenticate"))


def test_anonymous_async_limited_by_default(tmp_path, demo_root) -> None:  # type: ignore[no-untyped-def]
    with app_client(tmp_path / "data", demo_root, CUTOUT_ANONYMOUS_RATE_LIMIT="0",
                    CUTOUT_ANONYMOUS_MAX_ACTIVE_JOBS="2",
                    CUTOUT_ANONYMOUS_DESTRUCTION_SECONDS="600") as c:
        jobs = []
        for expected in (303, 303, 429):   # under, at, over the two active jobs
            r = c.post("/selftest", data={"DURATION": "30", "PHASE": "RUN"})
            assert r.status_code == expected, r.text
            if expected == 303:
                jobs.append(r.headers["location"].removeprefix("http://testserver"))
        assert r.text.startswith("ServiceUnavailable:") and int(r.headers["retry-after"]) > 0
        # Nothing was created for the refused request.
        assert len(c.app_state.runtime.store.list(owner=None)) == 2  # type: ignore[attr-defined]
        job_id = jobs[0].rsplit("/", 1)[1]
        assert len(job_id) >= 16   # 96 random bits: the URL is the key
        doc = assert_uws(c.get(jobs[0]).content)
        created = dt.datetime.fromisoformat(uws_text(doc, "uws:creationTime").replace("Z", "+00:00"))
        destroyed = dt.datetime.fromisoformat(uws_text(doc, "uws:destruction").replace("Z", "+00:00"))
        assert (destroyed - created).total_seconds() <= 600
        c.post(jobs[0] + "/destruction", data={"DESTRUCTION": "2099-01-01T00:00:00Z"})
        doc = assert_uws(c.get(jobs[0]).content)
        assert uws_text(doc, "uws:destruction") <= (created + dt.timedelta(seconds=601)).isoformat()
        assert len(assert_uws(c.get("/selftest").content)) == 0   # the job list shows nothing
        # A PENDING anonymous job is refused at RUN too; once one finishes, there is room.
        pending = c.post("/selftest", data={"DURATION": "0"}).headers["location"]
        assert c.post(pending + "/phase", data={"PHASE": "RUN"}).status_code == 429
        c.post(jobs[0] + "/phase", data={"PHASE": "ABORT"})
        eventually(lambda: c.get(jobs[0] + "/phase").text == "ABORTED")
        assert c.post(pending + "/phase", data={"PHASE": "RUN"}).status_code == 303
        for job in jobs[1:]:
            c.post(job + "/phase", data={"PHASE": "ABORT"})


# --- user quotas ----------------------------------------------------------------------------

def test_user_active_job_limit(tmp_path, demo_root) -> None:  # type: ignore[no-untyped-def]
    with app_client(tmp_path / "data", demo_root, CUTOUT_USER_MAX_ACTIVE_JOBS="2") as c:
        alice, bob = bearer(c, "alice"), bearer(c, "bob")
        made = []
        for expected in (303, 303, 429):
            r = c.post("/selftest", data={"DURATION": "30", "PHASE": "RUN"}, headers=alice)
            assert r.status_code == expected, r.text
            made.append(r.headers.get("location"))
        assert "active job limit" in r.text
        usage = c.get("/usage", headers=alice).json()
        assert usage["active_jobs"] == 2 and usage["max_active_jobs"] == 2
        # Bob has his own count.
        assert c.post("/selftest", data={"DURATION": "0", "PHASE": "RUN"}, headers=bob).status_code == 303
        for job in made[:2]:
            c.post(job + "/phase", data={"PHASE": "ABORT"}, headers=alice)


@pytest.mark.parametrize("quota_delta,status", [(1, 303), (0, 403)])
def test_user_result_space_quota(tmp_path, demo_root, quota_delta, status) -> None:  # type: ignore[no-untyped-def]
    """Results of 1000 bytes kept; the quota is just over, or at that. (Just under it, the
    job writing them stops: tests/soda/web/test_job_bounds_http.py.)"""
    with app_client(tmp_path / "data", demo_root, CUTOUT_USER_QUOTA_BYTES=str(1000 + quota_delta)) as c:
        alice = bearer(c, "alice")
        first = c.post("/selftest", data={"SIZE": "1000", "PHASE": "RUN"}, headers=alice).headers["location"]
        eventually(lambda: c.get(first + "/phase", headers=alice).text == "COMPLETED")
        usage = c.get("/usage", headers=alice).json()
        assert usage["result_bytes"] == 1000 and usage["quota_bytes"] == 1000 + quota_delta
        r = c.post("/selftest", data={"SIZE": "10", "PHASE": "RUN"}, headers=alice)
        assert r.status_code == status, r.text
        if status == 403:
            assert r.text.startswith("UsageError:") and "quota" in r.text
            # Deleting the job frees the space.
            c.delete(first, headers=alice)
            assert c.post("/selftest", data={"SIZE": "10", "PHASE": "RUN"}, headers=alice).status_code == 303
