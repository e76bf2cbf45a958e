"""Previews of the DES-like demo survey as astronomers expect them: a dark sky, bright
sources, a neutral sky in colour composites (i, r, g as R, G, B).

The demo's pixels mimic DES coadds: sky-subtracted, noise of 3, 4 and 5 ADU in g, r, i.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from renderers import Scaling, render_grey, render_rgb

pytestmark = pytest.mark.filterwarnings("error")


@pytest.fixture(scope="module")
def field(demo_root: Path) -> dict[str, np.ndarray]:
    """The science planes of one demo tile, by band."""
    planes = {}
    for path in demo_root.glob("DES0139-4457_*.fits.fz"):
        with fits.open(path) as hdul:
            planes[hdul[0].header["BAND"]] = np.array(hdul["SCI"].data)
    return planes


def pixels(body: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(body)) as image:
        return np.asarray(image).astype(int)


def test_colour_composite_has_a_dark_neutral_sky_and_bright_sources(field: dict[str, np.ndarray]) -> None:
    rgb = pixels(render_rgb(field["i"], field["r"], field["g"]))
    sky = np.median(rgb, axis=(0, 1))  # the field is mostly sky
    assert sky.max() < 40, sky  # dark ...
    assert sky.min() > 8, sky  # ... but not black: its noise still shows
    assert sky.max() - sky.min() <= 4, sky  # and neither red nor blue
    brightness = rgb.mean(axis=2)
    assert np.percentile(brightness, 99.9) > 3 * np.median(brightness)
    assert (rgb.max(axis=2) == 255).sum() > 20  # the brightest stars saturate


def test_colour_composite_sources_keep_their_colours(field: dict[str, np.ndarray]) -> None:
    rgb = pixels(render_rgb(field["i"], field["r"], field["g"]))
    bright = rgb[rgb.mean(axis=2) > 80]
    assert len(bright) > 100
    redness = bright[:, 0] - bright[:, 2]
    # The demo's galaxies are red and some of its stars blue (g - r from 0.2 to 1.8).
    assert (redness > 40).sum() > 20 and (redness < -10).sum() > 5


def test_grey_preview_has_a_dark_grey_sky(field: dict[str, np.ndarray]) -> None:
    for band in ("g", "r", "i"):
        grey = pixels(render_grey(field[band]))
        assert 25 < np.median(grey) < 60, (band, np.median(grey))
        assert np.percentile(grey, 99.9) > 3 * np.median(grey) and (grey == 255).sum() > 20
        assert (grey == 0).mean() < 0.05  # the sky's noise is not clipped away


def test_zscale_when_asked_shows_the_sky_mid_grey(field: dict[str, np.ndarray]) -> None:
    grey = pixels(render_grey(field["r"], scaling=Scaling(limits="zscale")))
    assert 100 < np.median(grey) < 220
