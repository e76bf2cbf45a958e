"""The examples/ notebooks, run as a reader runs them: every cell, in order, in a Jupyter
kernel (nbclient), against a live ``cutout serve`` on the shipped defaults started in an empty
folder (``quickstart_server.py``), its URL given as ``CUTOUT_URL``. Any cell's error fails
the test. The pictures the notebooks save are checked: real PNGs of a sensible size that
are not one colour; the RGB stamp is in colour.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from PIL import Image

from quickstart_server import QuickStartServer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
CELL_SECONDS = 180

pytestmark = pytest.mark.slow

# The pictures each notebook saves in its working folder.
PICTURES = {
    "01-sync-cutout": ["sync-cutout.png"],
    "02-datalink": ["preview.png"],
    "03-sia-search": ["sia-footprints.png"],
    "04-async-many-positions": ["bulk-stamps.png"],
    "05-rgb-stamps": ["rgb-stamp.png", "rgb-stamps.png"],
}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("notebooks")
    server = QuickStartServer(tmp / "service", tmp / "serve.log")
    server.serve()
    yield server.url
    server.stop()


def test_the_examples_are_the_notebooks_the_test_knows() -> None:
    assert [p.stem for p in NOTEBOOKS] == sorted(PICTURES)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_a_notebook_is_committed_clean_and_reads_the_service_url(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code), \
        f"{path.name}: commit notebooks without outputs"
    assert 'os.environ.get("CUTOUT_URL", "http://127.0.0.1:8000")' in code[0].source
    assert nb.metadata.kernelspec.name == "python3"
    json.loads(path.read_text(encoding="utf-8"))   # plain JSON, as Jupyter writes it


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_a_notebook_runs_against_the_quick_start_server(path: Path, service: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUTOUT_URL", service)   # the kernel inherits the environment
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=CELL_SECONDS, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()   # CellExecutionError on any cell's error, with its traceback
    printed = "".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                      for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")
    assert f"service: {service}" in printed
    for name in PICTURES[path.stem]:
        check_picture(tmp_path / name)
    if path.stem == "05-rgb-stamps":
        check_colour(tmp_path / "rgb-stamp.png")


def check_picture(path: Path) -> None:
    """A PNG of a sensible size, with something drawn in it (many distinct colours)."""
    assert path.is_file() and path.stat().st_size > 0, f"{path.name} was not saved"
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG", (path.name, image.format)
        assert 128 <= image.width <= 4000 and 128 <= image.height <= 4000, (path.name, image.size)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 24)
        assert colours is not None and len(colours) >= 100, f"{path.name}: {len(colours or [])} colours"
        extrema = image.convert("L").getextrema()
        assert extrema[1] - extrema[0] >= 64, f"{path.name}: grey levels {extrema} only"


def check_colour(path: Path) -> None:
    """A colour composite: many pixels whose red, green and blue differ (a grey picture has none)."""
    with Image.open(path) as image:
        assert image.mode == "RGB"
        rgb = np.asarray(image, dtype=np.int16)
    coloured = int(((rgb.max(axis=2) - rgb.min(axis=2)) >= 24).sum())
    assert coloured >= rgb.shape[0] * rgb.shape[1] // 1000, f"{path.name}: {coloured} coloured pixels"
