"""All of a job's results as one archive: ``{job}/results.zip`` and ``{job}/results.tar``,
through the embedded app with the selftest kind and the SODA kind over the demo survey
(RFC 9110 §14 for the ranges)."""

from __future__ import annotations

import io
import tarfile
import tracemalloc
import uuid
import zipfile
import zlib
from pathlib import Path
from typing import Any

import anyio
import pytest
from astropy.io import fits

from conftest import eventually
from soda.ops.database import migrate, open_database, version_table
from test_rest import Caller, completed, create, hdr, path_of, wait_phase
from uws.tables import MIGRATIONS

FORMS = ("zip", "tar")


@pytest.fixture
def client(embedded: Any) -> Caller:
    return Caller(embedded, f"user-{uuid.uuid4().hex[:10]}")


def finished_job(client: Caller, results: int = 3, size: int = 5000) -> str:
    job = path_of(create(client, {"RESULTS": str(results), "SIZE": str(size), "PHASE": "RUN"}))
    completed(client, job)
    return job


def members(form: str, body: bytes) -> dict[str, bytes]:
    if form == "zip":
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            assert archive.testzip() is None  # every CRC-32 right
            assert all(i.compress_type == zipfile.ZIP_STORED for i in archive.infolist())
            return {name: archive.read(name) for name in archive.namelist()}
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers()}  # type: ignore[union-attr]


def stored(client: Caller, job: str) -> dict[str, bytes]:
    results = client.app_state.runtime.store.get(job.rsplit("/", 1)[1]).results
    return {r.id: client.get(f"{job}/results/{r.id}").content for r in results}


@pytest.mark.parametrize("form", FORMS)
def test_the_archive_holds_every_result_as_stored(client: Caller, form: str) -> None:
    job = finished_job(client)
    r = client.get(f"{job}/results.{form}")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == {"zip": "application/zip", "tar": "application/x-tar"}[form]
    assert r.headers["content-length"] == str(len(r.content))
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-disposition"] == f'attachment; filename="{job.rsplit("/", 1)[1]}.{form}"'
    expected = stored(client, job)
    assert len(expected) == 3 and all(len(v) == 5000 for v in expected.values())
    assert members(form, r.content) == expected
    # Each result's CRC-32 was kept when it was written, so the archive reads no file twice.
    kept = client.app_state.runtime.store.get(job.rsplit("/", 1)[1]).results
    assert {x.id: x.crc32 for x in kept} == {k: zlib.crc32(v) for k, v in expected.items()}
    # The same bytes and ETag every time: what a resumed download relies on.
    again = client.get(f"{job}/results.{form}")
    assert again.content == r.content and again.headers["etag"] == r.headers["etag"]


def test_the_results_list_links_its_archives(client: Caller) -> None:
    job = finished_job(client, results=1)
    link = client.get(f"{job}/results").headers["link"]
    assert f'<http://testserver{job}/results.zip>; rel="alternate"; type="application/zip"' in link
    assert f'<http://testserver{job}/results.tar>; rel="alternate"; type="application/x-tar"' in link


@pytest.mark.parametrize("form", FORMS)
def test_a_job_without_results_gives_an_empty_valid_archive(client: Caller, form: str) -> None:
    job = finished_job(client, results=0)
    r = client.get(f"{job}/results.{form}")
    assert r.status_code == 200
    assert members(form, r.content) == {}


@pytest.mark.parametrize("form", FORMS)
def test_ranges_reassemble_the_whole(client: Caller, form: str) -> None:
    job = finished_job(client, results=4, size=3000)
    url = f"{job}/results.{form}"
    whole = client.get(url)
    size, etag = len(whole.content), whole.headers["etag"]
    pieces = []
    for start in range(0, size, 1000):
        stop = min(start + 1000, size) - 1
        r = client.get(url, headers={"Range": f"bytes={start}-{stop}", "If-Range": etag})
        assert r.status_code == 206, r.text
        assert r.headers["content-range"] == f"bytes {start}-{stop}/{size}"
        assert r.headers["content-length"] == str(stop - start + 1) == str(len(r.content))
        pieces.append(r.content)
    assert b"".join(pieces) == whole.content
    # Resumed after a cut: from an offset to the end, then the last bytes.
    cut = size // 3
    rest = client.get(url, headers={"Range": f"bytes={cut}-"})
    assert rest.status_code == 206 and whole.content[:cut] + rest.content == whole.content
    tail = client.get(url, headers={"Range": "bytes=-100"})
    assert tail.status_code == 206 and tail.content == whole.content[-100:]
    assert tail.headers["content-range"] == f"bytes {size - 100}-{size - 1}/{size}"
    # A range past the end is cut at the end; a suffix longer than the archive is all of it.
    assert client.get(url, headers={"Range": f"bytes={size - 5}-{size + 50}"}).content == whole.content[-5:]
    longer = client.get(url, headers={"Range": f"bytes=-{size * 2}"})
    assert longer.status_code == 206 and longer.content == whole.content


@pytest.mark.parametrize("form", FORMS)
def test_unsatisfiable_ranges_are_416(client: Caller, form: str) -> None:
    job = finished_job(client, results=1)
    url = f"{job}/results.{form}"
    size = len(client.get(url).content)
    for asked in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=-0"):
        r = client.get(url, headers={"Range": asked})
        assert r.status_code == 416, asked
        assert r.headers["content-range"] == f"bytes */{size}"


@pytest.mark.parametrize("asked", ["bytes=0-10, 20-30", "items=0-10", "bytes=abc", "bytes=9-3", "bytes=-"])
def test_ranges_we_do_not_serve_give_the_whole_archive(client: Caller, asked: str) -> None:
    job = finished_job(client, results=1)
    whole = client.get(f"{job}/results.zip").content
    r = client.get(f"{job}/results.zip", headers={"Range": asked})
    assert r.status_code == 200 and r.content == whole and "content-range" not in r.headers


def test_if_range_with_another_etag_gives_the_whole_archive(client: Caller) -> None:
    job = finished_job(client, results=2)
    url = f"{job}/results.tar"
    whole = client.get(url)
    for validator in ('"0123456789abcdef"', "Tue, 01 Dec 2026 00:00:00 GMT", "W/" + whole.headers["etag"]):
        r = client.get(url, headers={"Range": "bytes=100-", "If-Range": validator})
        assert r.status_code == 200 and r.content == whole.content, validator
    same = client.get(url, headers={"Range": "bytes=100-", "If-Range": whole.headers["etag"]})
    assert same.status_code == 206 and same.content == whole.content[100:]


@pytest.mark.parametrize("form", FORMS)
def test_head_gives_the_headers_alone(client: Caller, form: str) -> None:
    job = finished_job(client, results=2)
    url = f"{job}/results.{form}"
    got = client.get(url)
    head = client.request("HEAD", url)
    assert head.status_code == 200 and head.content == b""
    for name in ("content-length", "etag", "content-type", "accept-ranges"):
        assert head.headers[name] == got.headers[name]
    ranged = client.request("HEAD", url, headers={"Range": "bytes=10-19"})
    assert ranged.status_code == 206 and ranged.headers["content-length"] == "10"


@pytest.mark.parametrize("form", FORMS)
def test_another_callers_job_is_refused_as_its_results_are(client: Caller, form: str) -> None:
    job = finished_job(client, results=1)
    for user in ("someone-else", ""):
        result = client.get(f"{job}/results/result-1.txt", headers=hdr(user))
        archive = client.get(f"{job}/results.{form}", headers=hdr(user))
        assert archive.status_code == result.status_code == (403 if user else 401)
        assert archive.text == result.text
    assert client.get(f"/selftest/no-such-job/results.{form}").status_code == 404


def test_a_running_jobs_archive_holds_its_results_so_far(client: Caller) -> None:
    """Results published while EXECUTING are in the archive; each new one changes the ETag,
    so a Range with If-Range of the older one gets the whole new archive."""
    job = path_of(create(client, {"DURATION": "30", "RESULTS": "0", "PHASE": "RUN"}))
    wait_phase(client, job, "EXECUTING")
    job_id = job.rsplit("/", 1)[1]
    runtime = client.app_state.runtime
    empty = client.get(f"{job}/results.zip")
    assert members("zip", empty.content) == {}
    key = f"jobs/{job_id}/partial-1.txt"
    runtime.uws.storage.put_bytes(key, b"the first result\n")
    runtime.store.add_result(job_id, "partial-1.txt", key, "text/plain", 17)  # no CRC kept: computed
    first = client.get(f"{job}/results.zip")
    assert members("zip", first.content) == {"partial-1.txt": b"the first result\n"}
    assert first.headers["etag"] != empty.headers["etag"]
    resumed = client.get(f"{job}/results.zip", headers={"Range": "bytes=10-", "If-Range": empty.headers["etag"]})
    assert resumed.status_code == 200 and resumed.content == first.content
    client.post(f"{job}/phase", data={"PHASE": "ABORT"})
    eventually(lambda: client.get(f"{job}/phase").text == "ABORTED")


def test_a_result_gone_from_the_store_is_404(client: Caller) -> None:
    job = finished_job(client, results=2)
    client.app_state.runtime.uws.storage.delete_prefix(f"jobs/{job.rsplit('/', 1)[1]}/result-2.txt")
    r = client.get(f"{job}/results.tar")
    assert r.status_code == 404 and "result-2.txt" in r.text


def test_a_200_mb_archive_is_streamed_in_bounded_memory(client: Caller) -> None:
    """Sparse files of 50 MB each as a finished job's results, the archive taken through the
    ASGI app on the client's event loop with every piece dropped on arrival."""
    job = finished_job(client, results=0)
    job_id = job.rsplit("/", 1)[1]
    runtime = client.app_state.runtime
    for number in range(4):
        key = f"jobs/{job_id}/big-{number}.fits"
        with runtime.uws.storage.writer(key) as fh:
            fh.truncate(50 * 1000 * 1000)
        runtime.store.add_result(job_id, f"big-{number}.fits", key, "application/fits", 50 * 1000 * 1000)
    size = int(client.request("HEAD", f"{job}/results.zip").headers["content-length"])
    assert size > 200 * 1000 * 1000
    received = [0]

    async def download() -> int:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "http", "path": f"{job}/results.zip", "raw_path": f"{job}/results.zip".encode(),
                 "query_string": b"", "root_path": "", "server": ("testserver", 80),
                 "client": ("127.0.0.1", 50000), "headers": [(b"host", b"testserver"), (b"x-test-user", client.user.encode())]}
        status = [0]
        sent = [False]

        async def receive() -> dict[str, Any]:
            if not sent[0]:
                sent[0] = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await anyio.sleep_forever()  # the client never leaves; cancelled once the body is sent
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            elif message["type"] == "http.response.body":
                received[0] += len(message.get("body", b""))

        await client.client.app(scope, receive, send)
        return status[0]

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        status = client.client.portal.call(download)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert status == 200 and received[0] == size
    assert peak - before < 16 * 1024 * 1024, f"{(peak - before) / 1e6:.1f} MB held while streaming {size / 1e6:.0f} MB"


def test_migration_adds_the_checksum_column_to_an_older_database(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'old.sqlite'}")
    assert migrate(db, [("uws", MIGRATIONS[:4])]) == {"uws": 4}
    with db.connection_context():
        db.execute_sql("ALTER TABLE uws_result DROP COLUMN crc32")  # as version 4 made it
    assert migrate(db, [("uws", MIGRATIONS)]) == {"uws": len(MIGRATIONS)}
    with db.connection_context():
        assert "crc32" in {c.name for c in db.get_columns("uws_result")}
        assert version_table(db, "uws").select().first().version == len(MIGRATIONS)
    db.close()


def test_a_cutout_jobs_archive_holds_its_fits_files(client: Caller) -> None:
    """The SODA job kind over the demo survey: every cutout in the archive opens as FITS."""
    r = client.post("/async", data={"POS": "CIRCLE 24.9655 -44.9583 0.01", "FILTER": "g,r", "PHASE": "RUN"})
    assert r.status_code == 303, r.text
    job = path_of(r.headers["location"])
    completed(client, job, timeout=60)
    expected = stored(client, job)
    assert len(expected) == 2 and all(name.endswith(".fits") for name in expected)
    got = members("zip", client.get(f"{job}/results.zip").content)
    assert got == expected == members("tar", client.get(f"{job}/results.tar").content)
    for data in got.values():
        with fits.open(io.BytesIO(data)) as hdul:
            assert hdul[0].data is not None or hdul[1].data is not None
