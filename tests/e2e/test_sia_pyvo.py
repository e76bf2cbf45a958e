"""pyvo's SIA 2.0 client finds the demo images and follows their DataLink to a SODA cutout.

Two servers, both answering from the image index their runtime filled with the demo DES
survey at start (soda/index): the app in-process under uvicorn, and a real ``cutout serve``.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from astropy.io import fits
from pyvo.dal.sia2 import SIA2Service, search

from conftest import FAST_TIMINGS, base_env, free_port, link_demo, start_server
from soda.surveys.des import tile_centre

TILE = "DES0139-4457"
RA0, DEC0 = tile_centre(TILE)


@pytest.fixture(scope="module")
def in_process(tmp_path_factory, demo_root) -> Iterator[str]:  # type: ignore[no-untyped-def]
    from conf import load_settings
    from soda.web.app import create_app

    data = tmp_path_factory.mktemp("sia-pyvo") / "data"
    link_demo(data, demo_root)
    app = create_app(load_settings(environ={**FAST_TIMINGS, "CUTOUT_DATA_DIR": str(data)}), build_demo=False)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 30
    while not server.started and time.monotonic() < end:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield base
    server.should_exit = True
    thread.join(timeout=15)


def _finds_and_cuts(base: str) -> None:
    service = SIA2Service(base)  # the query endpoint from /capabilities
    assert service.query_ep == base + "/query"
    results = service.search(pos=(RA0, DEC0, 0.01))
    assert sorted(r.obs_id for r in results) == [f"{TILE}_g", f"{TILE}_i", f"{TILE}_r"]
    assert sorted(r.obs_id for r in search(base, pos=(RA0, DEC0, 0.01), band=(6.0e-7, 6.2e-7))) == [f"{TILE}_r"]
    record = next(r for r in results if r.obs_id == f"{TILE}_r")
    assert record.obs_publisher_did == f"ivo://demo.cutout/des?{TILE}_r"
    assert record.s_xel1 > 0 and record.em_min.to_value("m") < 6.1e-7 < record.em_max.to_value("m")
    # The results' DataLink service descriptor, then the row's SODA descriptor.
    links = next(results.iter_datalinks())
    assert {row.semantics for row in links} >= {"#this", "#cutout"}
    this = next(record.getdatalink().bysemantics("#this", include_narrower=False))
    assert this.id == record.obs_publisher_did
    with fits.open(io.BytesIO(this.processed(circle=(RA0, DEC0, 0.003)).read())) as hdul:
        assert hdul["SCI"].header["DATASET"].endswith(f"{TILE}_r")
        assert hdul["SCI"].data.shape[0] > 20


def test_pyvo_finds_the_demo_images_and_cuts_one(in_process):
    _finds_and_cuts(in_process)


@pytest.fixture(scope="module")
def served(tmp_path_factory, demo_root) -> Iterator[str]:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("sia-served")
    proc, base = start_server(base_env(tmp / "data", demo_root), tmp / "server.log")
    yield base
    proc.stop()


def test_pyvo_against_cutout_serve(served):
    assert httpx.get(served + "/query", params={"MAXREC": "0"}).status_code == 200
    _finds_and_cuts(served)
