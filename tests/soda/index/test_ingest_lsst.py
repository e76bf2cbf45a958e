"""`cutout ingest --survey lsst` on a generated Butler tree, into SQLite and PostgreSQL; the
configured LSST survey then answers from the index it filled."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conf import load_settings
from soda.index.catalogue import IndexCatalogue
from soda.ops.database import close_database, open_database
from soda.surveys.lsst import LSSTSurvey
from soda.surveys.lsst_demo import DEFAULT_RUN, DEFAULT_TRACT, build_lsst_demo, butler_path, central_patches
from soda.surveys.lsst_skymap import DEMO, skymap
from soda.surveys.registry import load_datasets

from conftest import ROOT

BANDS = ("g", "r", "i")
AUTHORITY = "demo.cutout"


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Butler repository: the demo's 2 x 2 patches, plus a file that is not a coadd."""
    root = tmp_path_factory.mktemp("butler") / "repo"
    build_lsst_demo(root, bands=BANDS)
    (root / DEFAULT_RUN / "notes.fits").write_bytes(b"SIMPLE  =" + b" " * 100)
    return root


@pytest.fixture(params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, str]]:
    """The survey name and the environment of `cutout`: on SQLite the shipped defaults'
    lsst survey; on the session's shared PostgreSQL a survey of this test's own name,
    configured as the defaults configure lsst."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUTOUT_")}
    env["CUTOUT_DATA_DIR"] = str(tmp_path / "data")
    if request.param == "sqlite":
        return "lsst", env
    name = f"lsst{uuid.uuid4().hex[:8]}"
    config = tmp_path / "site.toml"
    config.write_text(f'[surveys.{name}]\nfactory = "soda.surveys.lsst:LSSTSurvey"\nroot = "lsst"\n'
                      f'options = {{ skymap = "demo" }}\n')
    env |= {"CUTOUT_CONFIG": str(config), "CUTOUT_DATABASE_URL": request.getfixturevalue("postgres_url")}
    return name, env


def _ingest(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "soda.ops.cli", "ingest", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_butler_tree_is_ingested_and_served(tree: Path, site: tuple[str, dict[str, str]]) -> None:
    name, env = site
    out = _ingest(env, "--survey", name, str(tree)).splitlines()
    assert out[0].startswith(f"bad file {tree / DEFAULT_RUN / 'notes.fits'}: ")
    assert out[-1].startswith(f"survey {name}: 13 new, 0 changed, 0 unchanged, 0 removed, 1 bad files; "
                              f"12 images indexed in ")
    again = _ingest(env, "--survey", name, str(tree))
    assert "0 new, 0 changed, 13 unchanged, 0 removed" in again

    settings = load_settings(environ=env)
    db = open_database(settings.ops.effective_database_url)
    try:
        catalogue = IndexCatalogue(db)
        datasets = load_datasets(settings, catalogue)
        survey = datasets.surveys[name]
        assert isinstance(survey, LSSTSurvey)
        assert survey.images_per_band() == {"g": 4, "r": 4, "i": 4}

        sky = skymap(DEMO)
        wcs = sky.tract_wcs(DEFAULT_TRACT)
        patches = central_patches(sky, DEFAULT_TRACT)
        assert len(patches) == 4
        for patch in patches:
            field = f"{DEFAULT_TRACT}_{patch}"
            dataset_id = f"ivo://{AUTHORITY}/{name}?{field}_r"
            ref = datasets.by_id(dataset_id)
            prefix, _, query = dataset_id.partition("?")
            assert ref is not None and ref == survey.by_id(f"{prefix.upper()}?{query}")
            assert (ref.survey, ref.tile, ref.band, ref.hdus) == (name, field, "r", ("IMAGE", "MASK", "VARIANCE"))
            assert ref.path == tree / butler_path(DEFAULT_RUN, DEFAULT_TRACT, patch, "r")
            image = catalogue.get(name, f"{field}_r")
            assert image is not None and image.pixel_scale == pytest.approx(0.2)
            assert image.extra == {"tract": str(DEFAULT_TRACT), "patch": str(patch),
                                   "physical_filter": "r_sim_1.4", "dataset_type": "deepCoadd"}
            # The middle of the patch's inner box: this patch, in every band asked for.
            inner, outer = sky.patch_boxes(DEFAULT_TRACT, patch)
            assert image.shape == (outer.ny, outer.nx)
            ra, dec = (float(v) for v in wcs.all_pix2world([[inner.x0 + inner.nx / 2, inner.y0 + inner.ny / 2]], 0)[0])
            assert [(r.tile, r.band) for r in survey.at(ra, dec, ["i", "z", "g"])] == [(field, "i"), (field, "g")]
            sibling = survey.sibling(ref, "g")
            assert sibling is not None and sibling.dataset_id == f"ivo://{AUTHORITY}/{name}?{field}_g"
            assert sibling.path == tree / butler_path(DEFAULT_RUN, DEFAULT_TRACT, patch, "g")
            assert survey.sibling(ref, "y") is None
        assert survey.by_id(f"ivo://{AUTHORITY}/{name}?{DEFAULT_TRACT}_{patches[0]}_u") is None
        # Off the built patches, in the same tract: nothing.
        centre = sky.tract(DEFAULT_TRACT).centre
        assert survey.at(centre[0] + 1.0, centre[1], ["r"]) == []
    finally:
        close_database(db)
