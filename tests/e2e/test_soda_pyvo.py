"""pyvo against a real server process: SodaQuery (sync) and an async SODA job."""

from __future__ import annotations

import io

import pytest
import requests
from astropy.io import fits
from pyvo.dal.adhoc import SodaQuery
from pyvo.dal.tap import AsyncTAPJob

from conftest import base_env, start_server
from soda.surveys.des import tile_centre

TILE = "DES0139-4457"
RA0, DEC0 = tile_centre(TILE)


@pytest.fixture(scope="module")
def server(tmp_path_factory, demo_root):
    tmp = tmp_path_factory.mktemp("pyvo-soda")
    proc, base = start_server(base_env(tmp / "data", demo_root), tmp / "server.log")
    yield base
    proc.stop()


def test_soda_query_sync_returns_fits(server):
    query = SodaQuery(server + "/sync", circle=(RA0, DEC0, 0.004))
    query["ID"] = f"ivo://demo.cutout/des?{TILE}_i"
    body = query.execute_stream().read()
    with fits.open(io.BytesIO(body)) as hdul:
        assert [h.name for h in hdul[1:]] == ["SCI", "MSK", "WGT"]
        assert hdul["SCI"].header["DATASET"].endswith(f"{TILE}_i")
        assert hdul["SCI"].data.shape[0] > 50


def test_async_soda_job_with_pyvo(server):
    created = requests.post(server + "/async", data={
        "ID": f"ivo://demo.cutout/des?{TILE}_r", "CIRCLE": f"{RA0} {DEC0} 0.003"}, allow_redirects=False)
    assert created.status_code == 303
    job = AsyncTAPJob(created.headers["Location"])
    assert job.phase == "PENDING"
    job.run().wait(timeout=60)
    assert job.phase == "COMPLETED"
    [uri] = job.result_uris
    with fits.open(io.BytesIO(requests.get(uri).content)) as hdul:
        assert hdul["SCI"].header["DATASET"].endswith(f"{TILE}_r")
    job.delete()


def test_datalink_processed_returns_a_fits_cutout(server):
    from pyvo.dal.adhoc import DatalinkResults

    did = f"ivo://demo.cutout/des?{TILE}_g"
    links = DatalinkResults.from_result_url(f"{server}/links?ID={requests.utils.quote(did, safe='')}")
    this = next(links.bysemantics("#this", include_narrower=False))  # no vocabulary download
    assert this.id == did and this.access_url.startswith(server + "/files?ID=")
    stream = this.processed(circle=(RA0, DEC0, 0.003))
    with fits.open(io.BytesIO(stream.read())) as hdul:
        assert hdul["SCI"].header["DATASET"] == did
        assert hdul["SCI"].data.shape[0] > 30


def test_async_descriptor_through_soda_query_and_async_job(server):
    from pyvo.dal.adhoc import DatalinkResults

    did = f"ivo://demo.cutout/des?{TILE}_r"
    links = DatalinkResults.from_result_url(f"{server}/links?ID={requests.utils.quote(did, safe='')}")
    descriptor = links.get_adhocservice_by_ivoid("ivo://ivoa.net/std/SODA#async-1.0")
    query = SodaQuery.from_resource(links[0], descriptor, circle=(RA0, DEC0, 0.003))
    response = query.submit(post=True)  # 303 to the new job, followed
    job = AsyncTAPJob(response.url)
    job.run().wait(timeout=60)
    assert job.phase == "COMPLETED"
    [uri] = job.result_uris
    with fits.open(io.BytesIO(requests.get(uri).content)) as hdul:
        assert hdul["SCI"].header["DATASET"] == did
    job.delete()
