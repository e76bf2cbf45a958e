"""PNG/JPEG previews: stretches, limits, blanks, thumbnails, orientation, WCS chunk, Lupton RGB, memory.

Every output is decoded with Pillow; expected pixel values are computed here from the
stretch formulas, not by calling the code under test.
"""

from __future__ import annotations

import io
import math
import os
import tracemalloc
import warnings
from pathlib import Path

import astropy.io.fits.hdu.compressed.tests as compressed_tests
import numpy as np
import pytest
from astropy.io import fits
from astropy.stats import sigma_clipped_stats
from astropy.wcs import WCS, FITSFixedWarning
from PIL import Image

from renderers import WCS_KEY, Scaling, render_grey, render_rgb
from renderers.image import block_factor, reduce
from renderers.stretch import lupton_params

pytestmark = pytest.mark.filterwarnings("error")

M13 = Path(os.path.dirname(compressed_tests.__file__)) / "data" / "m13.fits"

FORMULAS = {
    "linear": lambda x: x,
    "sqrt": np.sqrt,
    "asinh": lambda x: np.arcsinh(x / 0.1) / np.arcsinh(1 / 0.1),
    "log": lambda x: np.log(1000 * x + 1) / np.log(1001),
}


def decode(body: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(body))
    image.load()
    return image


def grey(data: np.ndarray, **kw: object) -> np.ndarray:
    image = decode(render_grey(data, **kw))  # type: ignore[arg-type]
    assert image.mode == "L"
    assert image.size == (data.shape[1], data.shape[0]) or "max_size" in kw
    return np.asarray(image)


def fits_rows(pixels: np.ndarray) -> np.ndarray:
    """Back to FITS row order (row 0 at the bottom), to compare with the input array."""
    return pixels[::-1]


def expected(x: np.ndarray, stretch: str) -> np.ndarray:
    return np.floor(255 * FORMULAS[stretch](np.clip(x, 0, 1)) + 0.5)


def ramp(width: int = 256, height: int = 4) -> np.ndarray:
    return np.tile(np.arange(width, dtype=np.float32), (height, 1))


def star(size: int = 41, sigma: float = 3.0, background: float = 100.0, amplitude: float = 1000.0) -> np.ndarray:
    y, x = np.mgrid[:size, :size]
    c = size // 2
    return (background + amplitude * np.exp(-((x - c) ** 2 + (y - c) ** 2) / (2 * sigma**2))).astype(np.float32)


# --- options ---------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "named"), [
    ({"stretch": "cubic"}, "'cubic'"),
    ({"limits": "auto"}, "'auto'"),
    ({"limits": "percentile", "percentiles": (99.0, 1.0)}, "(99.0, 1.0)"),
    ({"percentiles": (0.0, 101.0)}, "101.0"),
    ({"percentiles": (5.0,)}, "(5.0,)"),
    ({"percentiles": ("a", 9)}, "'a'"),
    ({"percentiles": (float("nan"), 9)}, "nan"),
    ({"stretch": ["asinh"]}, r"\['asinh'\]"),
])
def test_bad_scaling_is_named(kwargs: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named.replace("(", r"\(").replace(")", r"\)")):
        Scaling(**kwargs)


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"fmt": "gif"}, "'gif'"),
    ({"fmt": "jpeg", "quality": 0}, "quality.*0"),
    ({"quality": 96}, "96"),
    ({"quality": 50.5}, "50.5"),
    ({"quality": True}, "True"),
    ({"max_size": 0}, "max_size.*0"),
    ({"max_size": -5}, "-5"),
    ({"max_size": 2.5}, "2.5"),
    ({"text": {"": "x"}}, "''"),
    ({"text": {"k" * 80: "x"}}, "kkkk"),
    ({"text": {" lead": "x"}}, "' lead'"),
    ({"text": {"a  b": "x"}}, "'a  b'"),
    ({"text": {"snow☃": "x"}}, "snow"),
    ({"text": {WCS_KEY: "x"}}, "reserved"),
    ({"text": {"key": 5}}, "'key'"),
    ({"text": {"key": "a\x00b"}}, "NUL"),
])
def test_bad_output_options(kwargs: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        render_grey(ramp(), **kwargs)
    with pytest.raises(ValueError, match=named):
        render_rgb(ramp(), ramp(), ramp(), **kwargs)


@pytest.mark.parametrize("data", [
    np.zeros(5, np.float32), np.zeros((2, 3, 4), np.float32), np.zeros((0, 4), np.float32),
    np.zeros((3, 3), np.complex64), np.array([["a"]]), [[1.0, 2.0]],
])
def test_bad_planes(data: object) -> None:
    with pytest.raises(ValueError, match="expected"):
        render_grey(data)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"q": 0}, "q must.*0"), ({"q": float("nan")}, "nan"), ({"q": "8"}, "'8'"),
    ({"stretch": -1.0}, "stretch must.*-1.0"), ({"stretch": 0}, "stretch.*0"),
    ({"minimum": (1.0, 2.0)}, r"\(1.0, 2.0\)"), ({"minimum": float("inf")}, "inf"),
    ({"scales": (1.0, 0.0, 2.0)}, "scales must.*0.0"), ({"scales": (1.0, 2.0)}, r"scales.*\(1.0, 2.0\)"),
    ({"scales": -1.0}, "scales must.*-1.0"),
])
def test_bad_lupton_options(kwargs: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        render_rgb(ramp(), ramp(), ramp(), **kwargs)


def test_rgb_bands_must_match() -> None:
    with pytest.raises(ValueError, match=r"same shape.*\(4, 256\).*\(4, 255\)"):
        render_rgb(ramp(), ramp(255), ramp())


# --- single-band stretches ---------------------------------------------------------------

@pytest.mark.parametrize("stretch", FORMULAS)
def test_minmax_ramp_under_each_stretch(stretch: str) -> None:
    pixels = fits_rows(grey(ramp(), scaling=Scaling(stretch=stretch, limits="minmax")))
    want = expected(np.arange(256) / 255.0, stretch)
    assert np.abs(pixels[0].astype(int) - want).max() <= 1
    assert pixels[0, 0] == 0 and pixels[0, -1] == 255
    assert (np.diff(pixels[0].astype(int)) >= 0).all()
    assert (pixels == pixels[0]).all()


def test_linear_minmax_ramp_is_exact() -> None:
    pixels = fits_rows(grey(ramp(), scaling=Scaling(stretch="linear", limits="minmax")))
    assert (pixels[0] == np.arange(256)).all()


def test_zscale_of_a_ramp_spans_it() -> None:
    # zscale fits a line to the sorted samples; on a ramp it extends past both ends and is clipped.
    z = grey(ramp(), scaling=Scaling(stretch="linear", limits="zscale"))
    m = grey(ramp(), scaling=Scaling(stretch="linear", limits="minmax"))
    assert (z == m).all()


def test_percentile_limits() -> None:
    data = ramp(1000)
    pixels = fits_rows(grey(data, scaling=Scaling(stretch="linear", limits="percentile", percentiles=(10, 90))))
    low, high = 0.1 * 999, 0.9 * 999  # numpy's linear interpolation on 0..999
    want = expected((np.arange(1000) - low) / (high - low), "linear")
    assert np.abs(pixels[0].astype(int) - want).max() <= 1
    assert (pixels[0, :100] == 0).all() and (pixels[0, 900:] == 255).all()


@pytest.mark.parametrize("stretch", FORMULAS)
def test_gaussian_star_under_each_stretch(stretch: str) -> None:
    data = star()
    pixels = fits_rows(grey(data, scaling=Scaling(stretch=stretch, limits="minmax")))
    assert pixels[20, 20] == 255 and pixels[0, 0] == 0
    for dx, dy in [(1, 0), (2, 1), (3, 3), (5, 0), (6, 4)]:
        x = math.exp(-(dx**2 + dy**2) / (2 * 3.0**2))
        assert abs(int(pixels[20 + dy, 20 + dx]) - expected(np.array(x), stretch)) <= 1, (dx, dy)


def test_zscale_star_on_flat_sky() -> None:
    # zscale's range is (nearly) empty at the sky level: a black sky, a white star.
    pixels = fits_rows(grey(star(201), scaling=Scaling(limits="zscale")))
    assert pixels[0, 0] == 0 and pixels[100, 100] == 255
    assert set(np.unique(pixels)) == {0, 255}


def test_zscale_with_noise_shows_sky_grey_and_star_white() -> None:
    data = star() + np.random.default_rng(3).normal(0, 5, (41, 41)).astype(np.float32)
    pixels = fits_rows(grey(data, scaling=Scaling(stretch="linear", limits="zscale")))
    assert pixels[20, 20] == 255
    assert 60 < np.median(pixels[:5]) < 200


def sky_field(noise: float = 4.0, level: float = 0.0, size: int = 200, seed: int = 6) -> np.ndarray:
    """Noisy sky with a bright star in the middle and a faint one near a corner."""
    data = np.random.default_rng(seed).normal(level, noise, (size, size)).astype(np.float32)
    y, x = np.mgrid[:size, :size]
    data += 200 * noise * np.exp(-((x - size // 2) ** 2 + (y - size // 2) ** 2) / 8.0)
    data += 8 * noise * np.exp(-((x - 30) ** 2 + (y - 30) ** 2) / 8.0)
    return data


def test_sky_limits_by_default_make_the_sky_dark_grey() -> None:
    data = sky_field(level=50.0)
    pixels = fits_rows(grey(data))
    # Black 2σ below the sky, white 40σ above: asinh puts the sky at asinh(20/42·10)/asinh(10).
    sky_grey = 255 * np.arcsinh(2 / 42 / 0.1) / np.arcsinh(10)
    assert abs(np.median(pixels) - sky_grey) < 3
    assert 25 < np.median(pixels) < 60
    assert pixels[100, 100] == 255 and pixels[30, 30] > np.median(pixels) + 60
    assert 0.01 < (pixels == 0).mean() < 0.05  # about 2% of the sky is below -2σ
    zscale = fits_rows(grey(data, scaling=Scaling(limits="zscale")))
    assert np.median(zscale) > 150  # zscale, asked for, still shows the sky mid-grey


def test_sky_limits_follow_the_noise_not_the_level() -> None:
    base = grey(sky_field())
    assert (grey(sky_field(level=1000.0)) == base).mean() > 0.99
    scaled = grey(sky_field(noise=40.0) * np.float32(1.0))
    assert abs(np.median(scaled) - np.median(base)) <= 1


def test_sky_limits_blanks_and_noiseless_sky() -> None:
    data = sky_field()
    data[:10] = np.nan
    data[20, 20] = np.inf
    pixels = fits_rows(grey(data))
    assert (pixels[:10] == 0).all() and pixels[20, 20] == 0
    assert 25 < np.median(pixels[10:]) < 60
    model = np.zeros((100, 100), np.float32)  # a flat sky without noise is black ...
    model[40:45, 40:45] = np.linspace(50, 98, 25, dtype=np.float32).reshape(5, 5)
    pixels = fits_rows(grey(model, scaling=Scaling(stretch="linear")))
    # ... and what rises above it is stretched up to its maximum.
    assert pixels[0, 0] == 0 and pixels[44, 44] == 255 and pixels[40, 40] == round(255 * 50 / 98)


def test_integer_big_endian_input() -> None:
    data = ramp().astype(">i2")
    pixels = fits_rows(grey(data, scaling=Scaling(stretch="linear", limits="minmax")))
    assert (pixels[0] == np.arange(256)).all()


# --- blanks and constants ------------------------------------------------------------------

@pytest.mark.parametrize("limits", ["zscale", "minmax", "percentile"])
@pytest.mark.parametrize("stretch", FORMULAS)
def test_blank_pixels_are_black(stretch: str, limits: str) -> None:
    data = ramp()
    data[1, 100], data[2, 200], data[3, 255] = np.nan, np.inf, -np.inf
    pixels = fits_rows(grey(data, scaling=Scaling(stretch=stretch, limits=limits)))
    assert pixels[1, 100] == pixels[2, 200] == pixels[3, 255] == 0
    assert pixels[0, 255] == 255 and pixels[0, 200] > 0


@pytest.mark.parametrize("limits", ["sky", "zscale", "minmax", "percentile"])
@pytest.mark.parametrize("stretch", FORMULAS)
def test_constant_is_mid_grey_and_all_blank_is_black(stretch: str, limits: str) -> None:
    scaling = Scaling(stretch=stretch, limits=limits)
    constant = np.full((7, 9), 42.0, np.float32)
    constant[3, 3] = np.nan
    pixels = fits_rows(grey(constant, scaling=scaling))
    assert pixels[3, 3] == 0
    assert (np.delete(pixels.ravel(), 3 * 9 + 3) == 128).all()
    assert (grey(np.full((7, 9), np.nan, np.float32), scaling=scaling) == 0).all()
    assert (grey(np.zeros((4, 4), np.int16), scaling=scaling) == 128).all()


# --- thumbnails ----------------------------------------------------------------------------

@pytest.mark.parametrize(("shape", "max_size", "size"), [
    ((300, 700), 100, (100, 43)),  # f = 7: sides ceil(700/7), ceil(300/7)
    ((700, 300), 100, (43, 100)),
    ((4096, 2048), 1000, (410, 820)),  # 4096 rows, 2048 columns
    ((50, 60), 100, (60, 50)),  # never enlarged
    ((50, 60), 60, (60, 50)),
    ((50, 60), 59, (30, 25)),
    ((50, 60), 1, (1, 1)),
])
def test_thumbnail_sizes(shape: tuple[int, int], max_size: int, size: tuple[int, int]) -> None:
    data = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    for fmt in ("png", "jpeg"):
        image = decode(render_grey(data, max_size=max_size, fmt=fmt))  # type: ignore[arg-type]
        assert image.size == size
        assert max(image.size) <= max_size
        image = decode(render_rgb(data, data, data, max_size=max_size, fmt=fmt))  # type: ignore[arg-type]
        assert image.size == size and image.mode == "RGB"


def test_block_mean_ignores_blanks_and_handles_edges() -> None:
    data = np.array([[1, 2, np.nan, np.nan, 7],
                     [3, 4, np.nan, np.inf, 9],
                     [5, np.nan, 6, 8, 10]], np.float32)
    assert block_factor(data.shape, 3) == 2
    got = reduce(data, 2)
    want = np.array([[2.5, np.nan, 8], [5, 7, 10]], np.float32)
    np.testing.assert_array_equal(got, want)
    assert reduce(data, 1) is data


def test_thumbnail_averages_blocks() -> None:
    data = np.zeros((8, 8), np.float32)
    data[:4, :4] = 4.0  # FITS bottom-left quarter
    data[0, 4] = 4.0  # one pixel of the bottom-right 4×4 block: its mean is 0.25
    pixels = grey(data, max_size=2, scaling=Scaling(stretch="linear", limits="minmax"))
    assert pixels.tolist() == [[0, 0], [255, round(255 * 0.25 / 4)]]


# --- orientation and WCS -----------------------------------------------------------------

def test_fits_row_zero_is_the_bottom_row() -> None:
    data = np.zeros((5, 8), np.float32)
    data[0, 2] = 10.0
    data[4, 7] = 5.0
    pixels = grey(data, scaling=Scaling(stretch="linear", limits="minmax"))
    assert pixels[4, 2] == 255 and pixels[0, 7] == 128
    assert pixels.sum() == 255 + 128
    rgb = np.asarray(decode(render_rgb(data, data, data, minimum=0.0, stretch=1.0)))
    assert rgb[4, 2].min() > 0 and rgb[0, 7].min() > 0 and rgb[2, 2].max() == 0


def tan_header(*, crota: float | None = None, cube: bool = False, sip: bool = False) -> fits.Header:
    h = fits.Header()
    h["NAXIS"] = 3 if cube else 2
    h["CTYPE1"], h["CTYPE2"] = ("RA---TAN-SIP", "DEC--TAN-SIP") if sip else ("RA---TAN", "DEC--TAN")
    h["CRVAL1"], h["CRVAL2"] = 150.1, 2.2
    h["CRPIX1"], h["CRPIX2"] = 31.7, 22.3
    if crota is not None:
        h["CDELT1"], h["CDELT2"], h["CROTA2"] = -2e-4, 2e-4, crota
    else:  # north up, east left, a little rotated and skewed
        h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"] = -1.9e-4, 2.5e-5, 3e-5, 2.1e-4
    if cube:
        h["CTYPE3"], h["CRVAL3"], h["CRPIX3"], h["CUNIT3"] = "FREQ", 1.4e9, 1.0, "Hz"
        h["CDELT3" if crota is not None else "CD3_3"] = 1e6
    if sip:
        h["A_ORDER"], h["B_ORDER"] = 2, 2
        h["A_2_0"], h["A_1_1"], h["A_0_2"] = 2e-4, -1e-4, 3e-4
        h["B_2_0"], h["B_1_1"], h["B_0_2"] = -1e-4, 2e-4, 1.5e-4
    h["DATE-OBS"] = "2020-01-02"
    return h


def reference_wcs(header: fits.Header) -> WCS:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)  # 'datfix' sets MJD-OBS from DATE-OBS
        return WCS(header).celestial


def png_wcs(body: bytes) -> tuple[WCS, np.ndarray]:
    image = decode(body)
    header = fits.Header.fromstring(image.text[WCS_KEY], sep="\n")
    assert all(len(line) == 80 for line in image.text[WCS_KEY].split("\n"))
    assert (header["NAXIS1"], header["NAXIS2"]) == image.size
    return WCS(header), np.asarray(image)


@pytest.mark.parametrize("header", [
    tan_header(), tan_header(crota=25.0), tan_header(cube=True), tan_header(sip=True),
], ids=["cd", "crota", "cube", "sip"])
@pytest.mark.parametrize("max_size", [None, 30, 17])
def test_png_wcs_places_preview_pixels_where_the_source_had_them(header: fits.Header, max_size: int | None) -> None:
    height, width = 45, 64
    data = np.random.default_rng(1).normal(size=(height, width)).astype(np.float32)
    source = reference_wcs(header)
    preview, pixels = png_wcs(render_grey(data, max_size=max_size, wcs_header=header))
    f = 1 if max_size is None else math.ceil(width / max_size)
    rows = pixels.shape[0]
    for col, row in [(0, 0), (pixels.shape[1] - 1, rows - 1), (3, rows // 2), (pixels.shape[1] // 2, 1)]:
        # The preview pixel at (col, row from the top) averages source block (col, rows-1-row).
        x = f * col + (f - 1) / 2
        y = f * (rows - 1 - row) + (f - 1) / 2
        want = source.pixel_to_world_values(x, y)
        got = preview.pixel_to_world_values(col, row)
        assert np.allclose(got, want, rtol=0, atol=1e-9), (col, row)


def test_star_lands_on_its_sky_position() -> None:
    header = tan_header(sip=True)
    data = np.zeros((45, 64), np.float32)
    data[9:12, 17:20] = 1.0  # a 3×3 star centred on source pixel (18, 10)
    ra, dec = reference_wcs(header).pixel_to_world_values(18, 10)
    preview, pixels = png_wcs(render_grey(data, max_size=22, wcs_header=header,
                                          scaling=Scaling(stretch="linear", limits="minmax")))
    col, row = (int(round(float(v))) for v in preview.world_to_pixel_values(ra, dec))
    assert pixels[row, col] == pixels.max() == 255


def test_north_up_east_left() -> None:
    header = tan_header(crota=0.0)
    preview, _ = png_wcs(render_grey(np.ones((40, 40), np.float32), wcs_header=header))
    ra0, dec0 = preview.pixel_to_world_values(20, 20)
    ra_up, dec_up = preview.pixel_to_world_values(20, 10)  # ten rows nearer the top
    ra_left, _ = preview.pixel_to_world_values(10, 20)
    assert dec_up > dec0 and abs(ra_up - ra0) < 1e-6
    assert ra_left > ra0


def test_no_wcs_chunk_without_a_celestial_wcs() -> None:
    linear = fits.Header({"CTYPE1": "X", "CTYPE2": "Y", "CRPIX1": 1, "CRPIX2": 1})
    singular = tan_header()
    singular["CD2_1"], singular["CD2_2"] = 0.0, 0.0
    one_axis = fits.Header({"NAXIS": 1, "CTYPE1": "FREQ", "CRVAL1": 1e9})
    for header in (None, fits.Header(), linear, singular, one_axis):
        image = decode(render_grey(ramp(), wcs_header=header, text={"a": "b"}))
        assert WCS_KEY not in image.text and image.text == {"a": "b"}


def test_png_text_chunks() -> None:
    text = {"dataset": "ivo://test/m13?plain", "service": "cutout-service 0.1.0", "note": "Ångström ☃ ok"}
    for body in (render_grey(ramp(), wcs_header=tan_header(), text=text),
                 render_rgb(ramp(), ramp(), ramp(), wcs_header=tan_header(), text=text)):
        image = decode(body)
        assert {k: image.text[k] for k in text} == text
        assert image.text[WCS_KEY].startswith("NAXIS   =")


# --- JPEG ----------------------------------------------------------------------------------

def test_jpeg_quality_mode_and_comment() -> None:
    data = star(201) + np.random.default_rng(2).normal(0, 20, (201, 201)).astype(np.float32)
    text = {"dataset": "ivo://x/y", "note": "☃"}
    sizes = {}
    for quality in (10, 50, 95):
        body = render_grey(data, fmt="jpeg", quality=quality, text=text)
        image = decode(body)
        assert image.format == "JPEG" and image.mode == "L" and image.size == (201, 201)
        assert image.info["comment"].decode() == "dataset: ivo://x/y\nnote: ☃"
        sizes[quality] = len(body)
    assert sizes[10] < sizes[50] < sizes[95]
    low = np.asarray(decode(render_grey(data, fmt="jpeg", quality=95)), dtype=int)
    png = np.asarray(decode(render_grey(data)), dtype=int)
    assert np.abs(low - png).mean() < 3  # same picture, same orientation
    rgb = decode(render_rgb(data, data, data, fmt="jpeg", quality=80))
    assert rgb.mode == "RGB" and "comment" not in rgb.info


def test_jpeg_comment_size_limit() -> None:
    with pytest.raises(ValueError, match="JPEG comment"):
        render_grey(ramp(), fmt="jpeg", text={"big": "x" * 70000})


# --- Lupton RGB --------------------------------------------------------------------------

def three_stars() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    bands = []
    for cx in (15, 50, 85):  # a red, a green and a blue star
        band = rng.normal(10.0, 1.0, (60, 100)).astype(np.float32)
        y, x = np.mgrid[:60, :100]
        band += 500 * np.exp(-((x - cx) ** 2 + (y - 30) ** 2) / 8.0)
        bands.append(band)
    white = 300 * np.exp(-((x - 50) ** 2 + (y - 50) ** 2) / 8.0)
    return bands[0] + white, bands[1] + white, bands[2] + white


def test_lupton_dominant_channels() -> None:
    rgb = fits_rows(np.asarray(decode(render_rgb(*three_stars()))).astype(int))
    assert rgb.shape == (60, 100, 3)
    for channel, cx in enumerate((15, 50, 85)):
        pixel = rgb[30, cx]
        assert pixel.argmax() == channel and pixel[channel] > 150, pixel
        assert all(pixel[channel] > 3 * pixel[other] for other in range(3) if other != channel), pixel
    white = rgb[50, 50]
    assert white.min() > 150 and white.max() - white.min() < 20, white
    sky = rgb[5:15, 30:40]
    assert sky.mean() < 60  # dark, but with its noise


def lupton_brightness(intensity: float, stretch: float, q: float) -> float:
    """astropy's LuptonAsinhStretch, written out."""
    return math.asinh(q * intensity / stretch) * 0.1 / math.asinh(0.1 * q)


def test_lupton_defaults_from_the_data() -> None:
    red, green, blue = three_stars()
    params = lupton_params((red, green, blue))
    # Sky 10 ± 1 in every band: scales 1, black 1σ below the sky, the sky at 10% brightness.
    skies = [sigma_clipped_stats(band, sigma=3, maxiters=5) for band in (red, green, blue)]
    mean_noise = np.mean([std for _, _, std in skies])
    for (_, median, std), minimum, scale in zip(skies, params.minimum, params.scales):
        assert scale == pytest.approx(mean_noise / std, rel=1e-3)
        assert minimum == pytest.approx(median - mean_noise / scale, rel=1e-3)
        assert 8.7 < minimum < 9.3 and 0.9 < scale < 1.1
    assert params.q == 8.0
    assert lupton_brightness(mean_noise, params.stretch, 8.0) == pytest.approx(0.1, rel=1e-6)
    explicit = lupton_params((red, green, blue), q=3, stretch=7.0, minimum=2.0, scales=(1, 2, 3))
    assert (explicit.q, explicit.stretch, explicit.minimum, explicit.scales) == (3.0, 7.0, (2.0,) * 3, (1.0, 2.0, 3.0))


def test_lupton_scales_make_unequal_noise_look_alike() -> None:
    rng = np.random.default_rng(8)
    noises, levels = (1.0, 3.0, 8.0), (5.0, -2.0, 100.0)
    bands = [rng.normal(level, noise, (300, 300)).astype(np.float32) for level, noise in zip(levels, noises)]
    params = lupton_params((bands[0], bands[1], bands[2]))
    mean_noise = sum(noises) / 3
    for noise, level, scale, minimum in zip(noises, levels, params.scales, params.minimum):
        assert scale == pytest.approx(mean_noise / noise, rel=0.05)
        assert minimum == pytest.approx(level - noise, abs=0.05 * noise)
    rgb = np.asarray(decode(render_rgb(*bands))).astype(int)
    medians = np.median(rgb, axis=(0, 1))
    assert medians.max() - medians.min() <= 2 and 15 < medians.mean() < 35, medians
    spreads = rgb.reshape(-1, 3).std(axis=0)
    assert spreads.max() < 1.3 * spreads.min(), spreads  # the same noise in every colour
    flat = np.asarray(decode(render_rgb(*bands, scales=1.0))).astype(int)
    assert flat[..., 2].std() > 2 * flat[..., 0].std()  # unscaled, the noisiest band shows most


def test_lupton_sky_brightness_does_not_depend_on_q() -> None:
    bands = three_stars()
    soft = fits_rows(np.asarray(decode(render_rgb(*bands, q=20.0))).astype(int))
    hard = fits_rows(np.asarray(decode(render_rgb(*bands, q=2.0))).astype(int))
    assert abs(np.median(soft[5:15]) - np.median(hard[5:15])) <= 2
    # A red star's wing, some 20σ above the sky: a harder asinh (small Q) shows it brighter.
    assert hard[30, 20, 0] > soft[30, 20, 0] + 30


def test_lupton_explicit_parameters_change_the_picture() -> None:
    bands = three_stars()
    soft = np.asarray(decode(render_rgb(*bands, stretch=500.0, minimum=10.0)), dtype=int)
    hard = np.asarray(decode(render_rgb(*bands, stretch=5.0, minimum=10.0)), dtype=int)
    assert hard.mean() > soft.mean() + 10


def test_lupton_blank_pixels_and_bands() -> None:
    red, green, blue = three_stars()
    red[30, 15] = np.nan
    blue[:, :] = np.nan
    rgb = fits_rows(np.asarray(decode(render_rgb(red, green, blue))))
    assert rgb[..., 2].max() == 0
    assert rgb[30, 15, 0] == 0 and rgb[30, 14, 0] > 150  # a blank counts as that band's sky
    assert rgb[30, 50, 1] > 150
    nothing = np.full((8, 8), np.nan, np.float32)
    assert np.asarray(decode(render_rgb(nothing, nothing, nothing))).max() == 0
    flat = np.full((8, 8), 3.0, np.float32)
    assert np.asarray(decode(render_rgb(flat, flat, flat))).max() == 0


# --- memory --------------------------------------------------------------------------------

def peak_during(render, *args, **kwargs) -> tuple[int, bytes]:  # type: ignore[no-untyped-def]
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        body = render(*args, **kwargs)
        return tracemalloc.get_traced_memory()[1], body
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def big() -> np.ndarray:
    data = np.random.default_rng(5).normal(100, 5, (4096, 4096)).astype(np.float32)
    data[::97, ::89] = np.nan
    return data


# Measured (numpy allocations; Pillow's own buffers are not traced): grey ≈ 1.5× the input
# with zscale/minmax and 2.25× with percentiles (astropy copies the finite values, then
# np.percentile copies them again); RGB ≈ 1.5× one band (8-bit result plus its flipped copy).
@pytest.mark.parametrize("limits", ["sky", "zscale", "minmax", "percentile"])
def test_grey_memory_4096(big: np.ndarray, limits: str) -> None:
    peak, body = peak_during(render_grey, big, scaling=Scaling(limits=limits), fmt="jpeg")
    assert decode(body).size == (4096, 4096)
    assert peak < 3 * big.nbytes, f"peak {peak / big.nbytes:.2f}× the input"


def test_rgb_memory_4096(big: np.ndarray) -> None:
    peak, body = peak_during(render_rgb, big, big, big, fmt="jpeg")
    assert decode(body).size == (4096, 4096)
    assert peak < 2 * big.nbytes, f"peak {peak / big.nbytes:.2f}× one band"


def test_thumbnail_memory_4096(big: np.ndarray) -> None:
    peak, body = peak_during(render_grey, big, scaling=Scaling(limits="percentile"), max_size=1024)
    assert decode(body).size == (1024, 1024)
    assert peak < 0.5 * big.nbytes, f"peak {peak / big.nbytes:.2f}× the input"


# --- a real image --------------------------------------------------------------------------

def m13() -> tuple[np.ndarray, fits.Header]:
    with fits.open(M13) as hdul:
        return np.array(hdul[0].data), hdul[0].header.copy()


def test_m13_preview(tmp_path: Path) -> None:
    data, header = m13()
    path = tmp_path / "m13.png"
    path.write_bytes(render_grey(data, wcs_header=header, text={"dataset": "m13"}))
    with Image.open(path) as image:
        assert image.mode == "L" and image.size == (300, 300)
        pixels = np.asarray(image).astype(int)
        preview = WCS(fits.Header.fromstring(image.text[WCS_KEY], sep="\n"))
    histogram = np.bincount(pixels.ravel(), minlength=256)
    assert (histogram > 0).sum() > 80  # many grey levels in use (the data are integers)
    assert histogram.max() < 0.3 * pixels.size  # no single level dominates
    assert np.percentile(pixels, 95) - np.percentile(pixels, 5) > 100
    # The cluster: the brightest 50×50 region is in the middle, the corners are sky.
    centre = pixels[125:175, 125:175].mean()
    assert centre > 1.5 * max(pixels[:50, :50].mean(), pixels[-50:, -50:].mean())
    # Same picture as the FITS array, flipped: PNG row r is FITS row 299 - r.
    _, dec_top = preview.pixel_to_world_values(150, 0)
    _, dec_bottom = preview.pixel_to_world_values(150, 299)
    assert dec_top > dec_bottom  # north up
    src = WCS(header)
    assert np.allclose(preview.pixel_to_world_values(40, 260), src.pixel_to_world_values(40, 39), atol=1e-9)


def test_m13_thumbnail_and_colour(tmp_path: Path) -> None:
    data, header = m13()
    small = decode(render_grey(data, max_size=100, wcs_header=header))
    assert small.size == (100, 100) and np.asarray(small).std() > 20
    fdata = data.astype(np.float32)
    rgb = decode(render_rgb(fdata, fdata, fdata, wcs_header=header))
    pixels = np.asarray(rgb).astype(int)
    assert rgb.mode == "RGB" and pixels.std() > 20
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
