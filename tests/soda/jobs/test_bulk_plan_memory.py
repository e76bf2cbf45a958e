"""Planning a bulk job of many rows keeps arrays of row indices, not an object per row:
its memory grows by bytes per row (it was an outcome and a target per row, about 1 kB)."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
from astropy.io import fits

from soda.jobs import bulk
from soda.surveys.des import tile_centre
from uws.kinds import JobContext

from conftest import app_client, header_identity

ROWS = 100_000


def test_planning_a_large_table_keeps_row_indices_only(tmp_path, demo_root) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(5)
    ra0, dec0 = tile_centre("DES0139-4457")  # a demo tile; rows on it, beside it and far away
    ra = np.concatenate([rng.uniform(ra0 - 0.05, ra0 + 0.05, ROWS - 1000), rng.uniform(0, 360, 1000)])
    dec = np.concatenate([rng.uniform(dec0 - 0.05, dec0 + 0.05, ROWS - 1000), rng.uniform(-80, 30, 1000)])
    table = "ra,dec,id\n" + "".join(f"{a:.7f},{d:.7f},s{n}\n" for n, (a, d) in enumerate(zip(ra, dec, strict=True)))
    with app_client(tmp_path / "data", demo_root, identify=header_identity, CUTOUT_BULK_MAX_ROWS=str(ROWS),
                    CUTOUT_BULK_MAX_PIXELS="0") as client:
        r = client.post("/bulk", data={"UPLOAD": "positions,param:positions", "RADIUS": "0.001"},
                        headers={"X-Test-User": "ann"}, files={"positions": ("p.csv", table, "text/csv")})
        assert r.status_code == 303, r.text
        runtime = client.app_state.runtime
        job = runtime.store.get(r.headers["location"].rsplit("/", 1)[1])
        kind = runtime.mounts["/bulk"]
        ctx = JobContext(job, kind.load(job.typed_parameters), runtime.store, runtime.storage)
        bulk._table(ctx)  # the table itself, read once per process, is not the plan
        tracemalloc.start()
        try:
            parts = bulk.plan_parts(ctx, runtime.cutouts)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        planned = sum(p.units for p in parts)
        unserved = client.get(r.headers["location"] + "/results/manifest-unserved.csv",
                              headers={"X-Test-User": "ann"}).text.splitlines()[1:]
        assert planned + len(unserved) == ROWS and planned >= ROWS - 1000 and unserved
        assert all(",no image," in line for line in unserved)
        # Row indices and positions as arrays (8-24 bytes a row), the parts' JSON keys and the
        # rows' band selections (a list of 8-byte references): well under 200 bytes a row.
        assert peak < 200 * ROWS, f"{peak / ROWS:.0f} bytes a row"


def test_a_field_of_more_rows_than_a_part_is_split_into_bands_of_its_pixel_rows(tmp_path, demo_root) -> None:  # type: ignore[no-untyped-def]
    """Each part then decodes its own band of a row-tiled image's rows, not every row of it."""
    from astropy.wcs import WCS

    rows = 2 * bulk.PART_ROWS + 500
    rng = np.random.default_rng(6)
    ra0, dec0 = tile_centre("DES0139-4457")
    ra, dec = rng.uniform(ra0 - 0.2, ra0 + 0.2, rows), rng.uniform(dec0 - 0.2, dec0 + 0.2, rows)
    table = "ra,dec\n" + "".join(f"{a:.7f},{d:.7f}\n" for a, d in zip(ra, dec, strict=True))
    with app_client(tmp_path / "data", demo_root, identify=header_identity, CUTOUT_BULK_MAX_PIXELS="0") as client:
        r = client.post("/bulk", data={"UPLOAD": "positions,param:positions", "RADIUS": "0.001", "FILTER": "r"},
                        headers={"X-Test-User": "ann"}, files={"positions": ("p.csv", table, "text/csv")})
        assert r.status_code == 303, r.text
        runtime = client.app_state.runtime
        job = runtime.store.get(r.headers["location"].rsplit("/", 1)[1])
        ctx = JobContext(job, runtime.mounts["/bulk"].load(job.typed_parameters), runtime.store, runtime.storage)
        parts = bulk.plan_parts(ctx, runtime.cutouts)
        image = runtime.cutouts.datasets.surveys["des"].at(ra0, dec0, ["r"])[0]
    assert [p.units for p in parts] == [bulk.PART_ROWS, bulk.PART_ROWS, 500]
    with fits.open(image.path) as hdul:
        wcs = WCS(hdul[image.hdus[0]].header, naxis=2)
    _, y = wcs.world_to_pixel_values(ra, dec)
    bands = [np.round(y[json.loads(p.key)["rows"]]) for p in parts]
    assert sorted(i for p in parts for i in json.loads(p.key)["rows"]) == list(range(rows))
    for above, below in zip(bands, bands[1:]):
        assert above.max() <= below.min()  # one part's pixel rows end where the next's begin
