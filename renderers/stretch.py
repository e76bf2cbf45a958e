"""Pixel values to 8-bit intensities: single-band stretches and Lupton et al. (2004) colour.

Survey coadds are mostly sky: the defaults measure each band's sky level and noise
(sigma-clipped, ``sky_stats``) and show the sky as a dark grey just above black, with its
noise still visible and the sources bright, as survey viewers do.

Both work in horizontal strips of float32 so that a large plane never has more than a
strip's worth of temporaries besides the 8-bit result. The result keeps the input's
row order (FITS: row 0 at the bottom); flipping for display is the encoder's business.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from astropy.stats import sigma_clipped_stats
from astropy.visualization import (
    AsinhStretch,
    AsymmetricPercentileInterval,
    BaseInterval,
    BaseStretch,
    LinearStretch,
    LogStretch,
    LuptonAsinhStretch,
    ManualInterval,
    MinMaxInterval,
    SqrtStretch,
    ZScaleInterval,
    make_lupton_rgb,
)

STRETCHES: dict[str, type[BaseStretch]] = {
    "linear": LinearStretch,
    "sqrt": SqrtStretch,
    "asinh": AsinhStretch,  # astropy's default softening a=0.1
    "log": LogStretch,  # astropy's default a=1000
}
LIMITS = ("sky", "zscale", "minmax", "percentile")

# Pixels per strip. astropy's Lupton mapping needs ~80 bytes of temporaries per pixel (~20 MB a strip).
GREY_STRIP = 1 << 20
RGB_STRIP = 1 << 18

# Sky level and noise: sigma-clipped statistics of a regular subsample of this many pixels.
SKY_PIXELS = 1 << 18
SKY_CLIP = 3.0  # clipping threshold, in standard deviations
# Grey ``sky`` limits, in sky noise σ: black a little below the sky, white far above its
# noise. With the asinh stretch the sky then shows at about 39/255, ±1σ at 20 and 57.
SKY_BELOW = 2.0
SKY_ABOVE = 40.0
# Lupton defaults: each band's sky is taken out and its noise scaled to the bands' mean
# noise σ̄ (a neutral sky; a band's scale kept within MAX_BAND_SCALE of 1); the sky is
# set RGB_FLOOR·σ̄ above black and the stretch puts it at RGB_SKY_LEVEL of full brightness.
RGB_FLOOR = 1.0
# The largest Lupton softening: q = 8 is usual, q = 100 already near a linear-then-flat
# picture; far beyond, sinh/asinh of the stretch overflow.
MAX_Q = 1e4
MIN_Q = 1e-3  # below, the stretch's sinh(Q/10) underflows toward 0 and divides by zero
RGB_SKY_LEVEL = 0.1
MAX_BAND_SCALE = 4.0
# Without any sky noise (synthetic data) the stretch comes from the bright end instead,
# measured on a regular subsample of at most SAMPLE_PIXELS per band:
SAMPLE_PIXELS = 1 << 20
BRIGHT_PERCENTILE = 99.5  # this percentile of the combined intensity ...
BRIGHT_LEVEL = 0.8  # ... is shown at this fraction of full brightness


@dataclass(frozen=True)
class Scaling:
    """How a single band becomes grey.

    ``limits`` picks the values shown as black and white: ``sky`` (SKY_BELOW sky σ below
    the sky level to SKY_ABOVE σ above it: a dark-grey sky, made for asinh), ``zscale``
    (IRAF's zscale, for inspecting faint levels: the sky is mid-grey), ``minmax`` (the
    finite extremes) or ``percentile`` (the ``percentiles`` pair, in %).
    ``stretch`` maps that range non-linearly: ``linear``, ``sqrt``, ``asinh``, ``log``.
    """

    stretch: str = "asinh"
    limits: str = "sky"
    percentiles: tuple[float, float] = (0.5, 99.5)

    def __post_init__(self) -> None:
        if not isinstance(self.stretch, str) or self.stretch not in STRETCHES:
            raise ValueError(f"unknown stretch {self.stretch!r}; expected one of {', '.join(STRETCHES)}")
        if not isinstance(self.limits, str) or self.limits not in LIMITS:
            raise ValueError(f"unknown limits {self.limits!r}; expected one of {', '.join(LIMITS)}")
        object.__setattr__(self, "percentiles", _percentile_pair(self.percentiles))


def _percentile_pair(value: object) -> tuple[float, float]:
    try:
        low, high = (_real(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"percentiles must be two numbers (low, high), not {value!r}") from None
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"percentiles {value!r} must satisfy 0 <= low < high <= 100")
    return low, high


def _real(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(value)
    if not math.isfinite(value):
        raise ValueError(value)
    return float(value)


def _strips(shape: tuple[int, ...], pixels: int) -> Iterator[slice]:
    rows = max(1, pixels // max(1, shape[1]))
    for start in range(0, shape[0], rows):
        yield slice(start, min(start + rows, shape[0]))


# --- sky ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sky:
    """A plane's sky: sigma-clipped median and standard deviation (0: no noise)."""

    level: float
    noise: float


def sky_stats(plane: np.ndarray) -> Sky | None:
    """The sky of ``plane`` from a regular subsample of about SKY_PIXELS pixels, or None
    when the plane has no finite pixel."""
    sample = _subsample(plane, SKY_PIXELS)
    finite = sample[np.isfinite(sample)]
    if not finite.size:
        return None
    _, median, std = sigma_clipped_stats(finite, sigma=SKY_CLIP, maxiters=5)
    return Sky(float(median), float(std))


def _sky_limits(plane: np.ndarray) -> tuple[float, float]:
    sky = sky_stats(plane)
    assert sky is not None  # the caller checked for finite pixels
    if sky.noise > 0:
        return sky.level - SKY_BELOW * sky.noise, sky.level + SKY_ABOVE * sky.noise
    # A noiseless sky (a model, a flat frame) is black; what rises above it is stretched.
    return sky.level, max(sky.level, float(MinMaxInterval().get_limits(plane)[1]))


# --- single band -------------------------------------------------------------------------

def grey_limits(plane: np.ndarray, scaling: Scaling) -> tuple[float, float] | None:
    """The values shown as black and white, or None when the plane has no finite pixel."""
    if not np.isfinite(plane).any():
        return None
    if scaling.limits == "sky":
        return _sky_limits(plane)
    interval: BaseInterval
    if scaling.limits == "zscale":
        interval = ZScaleInterval()
    elif scaling.limits == "minmax":
        interval = MinMaxInterval()
    else:
        interval = AsymmetricPercentileInterval(*scaling.percentiles)
    low, high = interval.get_limits(plane)
    return float(low), float(high)


def grey8(plane: np.ndarray, scaling: Scaling) -> np.ndarray:
    """An 8-bit image of ``plane``: blank (NaN, ±inf) pixels and all-blank planes are black (0).

    When the limits coincide (a constant image, say) that value is mid-grey (128),
    anything above white and anything below black, whatever the stretch.
    """
    out = np.zeros(plane.shape, np.uint8)
    limits = grey_limits(plane, scaling)
    if limits is None:
        return out
    stretch = STRETCHES[scaling.stretch]()
    for rows in _strips(plane.shape, GREY_STRIP):
        out[rows] = _grey_strip(plane[rows], *limits, stretch)
    return out


def _grey_strip(values: np.ndarray, low: float, high: float, stretch: BaseStretch) -> np.ndarray:
    x = values.astype(np.float32)
    blank = ~np.isfinite(x)
    # Overflow in (x - low) for extreme float32 values only saturates, which clip handles.
    with np.errstate(over="ignore", invalid="ignore"):
        if high > low:
            x -= low
            x /= high - low
            stretch(x, clip=True, out=x)
        else:
            above, below = x > low, x < low
            x.fill(0.5)
            x[above] = 1.0
            x[below] = 0.0
    x[blank] = 0.0
    x *= 255.0
    x += 0.5  # assigning into uint8 truncates, so this rounds
    return x


# --- colour --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Lupton:
    """Parameters of the Lupton et al. (2004) asinh colour mapping (astropy's convention).

    Each band is shifted by its ``minimum`` (shown black) and multiplied by its ``scale``;
    ``stretch`` is the linear range of the combined intensity and ``q`` the asinh softening.
    """

    q: float
    stretch: float
    minimum: tuple[float, float, float]
    scales: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        _check_number("q", self.q)
        _check_number("stretch", self.stretch)
        object.__setattr__(self, "minimum", _triplet("minimum", self.minimum))
        scales = _triplet("scales", self.scales)
        for value in scales:
            _check_number("scales", value)
        object.__setattr__(self, "scales", scales)


def lupton_params(bands: tuple[np.ndarray, np.ndarray, np.ndarray], *, q: float = 8.0,
                  stretch: float | None = None,
                  minimum: float | tuple[float, float, float] | None = None,
                  scales: float | tuple[float, float, float] | None = None) -> Lupton:
    """Fill in what the caller left out from the data itself.

    Each band's sky (``sky_stats``) gives the defaults. ``scales``: σ̄/σ for each band, σ
    its sky noise and σ̄ their mean, kept within [1/MAX_BAND_SCALE, MAX_BAND_SCALE], so the
    sky noise looks alike in the three colours. ``minimum``: RGB_FLOOR·σ̄ (scaled) below
    each band's sky, so the sky is dark, neutral, and its noise still shows. ``stretch``:
    an intensity of RGB_FLOOR·σ̄, the sky, appears at RGB_SKY_LEVEL of full brightness,
    whatever ``q``; ``q`` then only sets how softly bright sources saturate (at q = 8 near
    1000σ̄). Bands without noise count as scale 1; when none has any noise the stretch puts
    the 99.5th percentile of the combined intensity at 80% brightness. Data without any
    range (constant or blank) gets stretch 1 and renders black.
    """
    _check_number("q", q)
    if _real(q) > MAX_Q:
        raise ValueError(f"q must be at most {MAX_Q:g}, not {q!r}")
    if _real(q) < MIN_Q:
        raise ValueError(f"q must be at least {MIN_Q:g}, not {q!r}")
    skies = [sky_stats(band) for band in bands]
    noises = [sky.noise for sky in skies if sky is not None and sky.noise > 0]
    mean_noise = sum(noises) / len(noises) if noises else 0.0
    if scales is None:
        factors = _noise_scales(skies, mean_noise)
    else:
        factors = _triplet("scales", scales)
        for value in factors:
            _check_number("scales", value)
    if minimum is None:
        found = [_floor(sky, mean_noise / factor) for sky, factor in zip(skies, factors)]
        mins = found[0], found[1], found[2]
    else:
        mins = _triplet("minimum", minimum)
    if stretch is None:
        if mean_noise > 0:
            stretch = _stretch_for(RGB_FLOOR * mean_noise, RGB_SKY_LEVEL, float(q))
        else:
            stretch = _bright_stretch(bands, mins, factors, float(q))
    _check_number("stretch", stretch)
    return Lupton(float(q), float(stretch), mins, factors)


def _check_number(name: str, value: object) -> None:
    try:
        positive = _real(value) > 0
    except (TypeError, ValueError):
        positive = False
    if not positive:
        raise ValueError(f"{name} must be a positive finite number, not {value!r}")


def _triplet(name: str, value: float | tuple[float, float, float]) -> tuple[float, float, float]:
    values = list(value) if isinstance(value, (tuple, list)) else [value] * 3
    try:
        if len(values) != 3:
            raise ValueError
        red, green, blue = (_real(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number or three of them, not {value!r}") from None
    return red, green, blue


def _noise_scales(skies: list[Sky | None], mean_noise: float) -> tuple[float, float, float]:
    found = [min(MAX_BAND_SCALE, max(1 / MAX_BAND_SCALE, mean_noise / sky.noise))
             if sky is not None and sky.noise > 0 else 1.0 for sky in skies]
    return found[0], found[1], found[2]


def _floor(sky: Sky | None, below: float) -> float:
    if sky is None:
        return 0.0
    return sky.level - RGB_FLOOR * below


def _stretch_for(intensity: float, level: float, q: float) -> float:
    """The stretch at which ``intensity`` appears at ``level`` of full brightness."""
    # Invert astropy's LuptonAsinhStretch: y = asinh(q·x/stretch) · 0.1 / asinh(0.1·q).
    try:
        return q * intensity / math.sinh(level * math.asinh(0.1 * q) / 0.1)
    except OverflowError:
        raise ValueError(f"q={q:g} is too large a softening (at most {MAX_Q:g})") from None


def _subsample(band: np.ndarray, pixels: int = SAMPLE_PIXELS) -> np.ndarray:
    """A float32 copy of every n-th pixel in both directions, blanks included."""
    step = max(1, math.ceil(math.sqrt(band.size / pixels)))
    return band[::step, ::step].astype(np.float32)


def _finite_percentile(values: np.ndarray, percentile: float, empty: float) -> float:
    finite = values[np.isfinite(values)]
    return float(np.percentile(finite, percentile)) if finite.size else empty


def _bright_stretch(bands: tuple[np.ndarray, np.ndarray, np.ndarray], mins: tuple[float, float, float],
                    scales: tuple[float, float, float], q: float) -> float:
    samples = [_subsample(band) for band in bands]
    intensity = np.zeros(samples[0].shape, np.float32)
    for sample, low, scale in zip(samples, mins, scales):
        above = (sample - np.float32(low)) * np.float32(scale)
        above[~np.isfinite(above)] = 0.0  # blank counts as sky, as in lupton8
        intensity += above
    intensity /= 3.0
    bright = _finite_percentile(intensity, BRIGHT_PERCENTILE, 0.0)
    if not bright > 0:
        return 1.0
    return _stretch_for(bright, BRIGHT_LEVEL, q)


def lupton8(red: np.ndarray, green: np.ndarray, blue: np.ndarray, params: Lupton) -> np.ndarray:
    """An (H, W, 3) uint8 colour image. A band's blank pixels count as that band's minimum."""
    out = np.empty(red.shape + (3,), np.uint8)
    stretch = LuptonAsinhStretch(stretch=params.stretch, Q=params.q)
    black = ManualInterval(vmin=0.0, vmax=None)
    for rows in _strips(red.shape, RGB_STRIP):
        strip = [_shifted(band[rows], m, scale)
                 for band, m, scale in zip((red, green, blue), params.minimum, params.scales)]
        # astropy divides f(I) by I everywhere before keeping only I > 0: 0/0 is expected.
        with np.errstate(divide="ignore", invalid="ignore"):
            out[rows] = make_lupton_rgb(*strip, interval=black, stretch_object=stretch)
    return out


def _shifted(values: np.ndarray, minimum: float, scale: float) -> np.ndarray:
    x = values.astype(np.float32)
    blank = ~np.isfinite(x)
    with np.errstate(over="ignore", invalid="ignore"):  # extreme values only saturate
        x -= np.float32(minimum)
        x *= np.float32(scale)
    x[blank] = 0.0
    return x
