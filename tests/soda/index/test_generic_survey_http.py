"""A survey of the operator's own images, ingested and served: astropy's M13 sample
images cut through /sync by dataset ID and by position, pixel for pixel as Cutout2D cuts."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import astropy
import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import Cutout2D
from astropy.wcs import WCS

from conftest import FAST_TIMINGS, ROOT, app_client, header_identity

SAMPLES = Path(astropy.__file__).parent / "io" / "fits" / "hdu" / "compressed" / "tests" / "data"
SITE = """
[surveys.m13]
factory = "soda.surveys.generic:GenericSurvey"
root = "m13"
band_map = {"" = "DSS"}
band_ranges = {"DSS" = [4.0e-7, 7.0e-7]}
"""


def ingest(env: dict[str, str], *paths: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "soda.ops.cli", "ingest", *map(str, paths)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_ingested_images_are_cut_by_id_and_by_position(tmp_path: Path, demo_root: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for name in ("m13.fits", "m13_rice.fits"):
        shutil.copy(SAMPLES / name, images / name)
    (tmp_path / "site.toml").write_text(SITE)
    env = {**FAST_TIMINGS, "CUTOUT_DATA_DIR": str(tmp_path / "data"), "CUTOUT_CONFIG": str(tmp_path / "site.toml")}
    process_env = {k: v for k, v in os.environ.items() if not k.startswith("CUTOUT_")} | env
    with app_client(tmp_path / "data", demo_root, identify=header_identity, **env) as client:
        # Nothing ingested yet: the survey has no images.
        assert client.get("/sync", params={"ID": "ivo://demo.cutout/m13?m13", "CIRCLE": "250.42 36.46 0.01"}
                          ).status_code == 400
        # Ingested while the service runs: served at once.
        assert "2 images indexed" in ingest(process_env, images)
        with fits.open(images / "m13.fits") as hdul:
            data, wcs = hdul[0].data, WCS(hdul[0].header)
        ra, dec = (float(v) for v in wcs.pixel_to_world_values(120.0, 170.0))
        radius = 0.01
        for params in ({"ID": "ivo://demo.cutout/m13?m13", "CIRCLE": f"{ra} {dec} {radius}"},
                       {"POS": f"CIRCLE {ra} {dec} {radius}", "FILTER": "DSS"}):
            r = client.get("/sync", params=params)
            assert r.status_code == 200, r.text
            with fits.open(io.BytesIO(r.content)) as cut:
                sci = cut[1]
                assert sci.header["DATASET"] in ("ivo://demo.cutout/m13?m13", "ivo://demo.cutout/m13?m13_rice")
                ny, nx = sci.data.shape
                assert abs(nx - 2 * radius * 3600) <= 3 and abs(ny - 2 * radius * 3600) <= 3
                # Where the service says its box is, Cutout2D cuts the same pixels.
                cx, cy = wcs.world_to_pixel_values(*WCS(sci.header).pixel_to_world_values((nx - 1) / 2, (ny - 1) / 2))
                expected = Cutout2D(data, SkyCoord(*wcs.pixel_to_world_values(cx, cy), unit=u.deg),
                                    (ny, nx), wcs=wcs, mode="partial")
                assert np.array_equal(sci.data, expected.data)
                assert abs(cx - 120.0) <= 1 and abs(cy - 170.0) <= 1
        # Each image is a dataset of its own.
        links = client.get("/links", params={"ID": "ivo://demo.cutout/m13?m13_rice"})
        assert links.status_code == 200 and b"m13_rice" in links.content
        # The front page lists the survey's band.
        assert "DSS" in client.get("/", headers={"Accept": "text/html"}).text
