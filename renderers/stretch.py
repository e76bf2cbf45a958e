"""Pixel values to 8-bit intensities: single-band stretches and Lupton et al. (2004) colour.

Both work in horizontal strips of float32 so that a large plane never has more than a
strip's worth of temporaries besides the 8-bit result. The result keeps the input's
row order (FITS: row 0 at the bottom); flipping for display is the encoder's business.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
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
LIMITS = ("zscale", "minmax", "percentile")

# Pixels per strip. astropy's Lupton mapping needs ~80 bytes of temporaries per pixel (~20 MB a strip).
GREY_STRIP = 1 << 20
RGB_STRIP = 1 << 18

# Lupton defaults, measured on a regular subsample of at most this many pixels per band.
SAMPLE_PIXELS = 1 << 20
SKY_PERCENTILE = 10.0  # minimum: this percentile of each band, a little below the sky
BRIGHT_PERCENTILE = 99.5  # stretch: this percentile of the combined intensity ...
BRIGHT_LEVEL = 0.8  # ... is shown at this fraction of full brightness


@dataclass(frozen=True)
class Scaling:
    """How a single band becomes grey.

    ``limits`` picks the values shown as black and white: ``zscale`` (IRAF's zscale),
    ``minmax`` (the finite extremes) or ``percentile`` (the ``percentiles`` pair, in %).
    ``stretch`` maps that range non-linearly: ``linear``, ``sqrt``, ``asinh``, ``log``.
    """

    stretch: str = "asinh"
    limits: str = "zscale"
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


# --- single band -------------------------------------------------------------------------

def grey_limits(plane: np.ndarray, scaling: Scaling) -> tuple[float, float] | None:
    """The values shown as black and white, or None when the plane has no finite pixel."""
    if not np.isfinite(plane).any():
        return None
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

    ``minimum`` per band is subtracted first (it is shown black); ``stretch`` is the linear
    range of the combined intensity and ``q`` the asinh softening.
    """

    q: float
    stretch: float
    minimum: tuple[float, float, float]

    def __post_init__(self) -> None:
        _check_number("q", self.q)
        _check_number("stretch", self.stretch)
        object.__setattr__(self, "minimum", _minimum_triplet(self.minimum, []))


def lupton_params(bands: tuple[np.ndarray, np.ndarray, np.ndarray], *, q: float = 8.0,
                  stretch: float | None = None,
                  minimum: float | tuple[float, float, float] | None = None) -> Lupton:
    """Fill in what the caller left out from the data itself.

    Default ``minimum``: each band's 10th percentile (just below the sky, so the sky is dark
    but its noise still shows). Default ``stretch``: chosen so that the 99.5th percentile of
    the combined (minimum-subtracted, band-averaged) intensity appears at 80% brightness;
    with q = 8 only intensities above about 4× that reach full brightness.
    Percentiles come from a regular subsample of about 10⁶ pixels. Data without any range
    (constant or blank) gets stretch 1 and renders black.
    """
    _check_number("q", q)
    samples = [_subsample(band) for band in bands]
    mins = _minimum_triplet(minimum, samples)
    if stretch is None:
        stretch = _default_stretch(samples, mins, float(q))
    _check_number("stretch", stretch)
    return Lupton(float(q), float(stretch), mins)


def _check_number(name: str, value: object) -> None:
    try:
        positive = _real(value) > 0
    except (TypeError, ValueError):
        positive = False
    if not positive:
        raise ValueError(f"{name} must be a positive finite number, not {value!r}")


def _minimum_triplet(minimum: float | tuple[float, float, float] | None,
                     samples: list[np.ndarray]) -> tuple[float, float, float]:
    if minimum is None:
        found = [_finite_percentile(s, SKY_PERCENTILE, 0.0) for s in samples]
        return found[0], found[1], found[2]
    values = list(minimum) if isinstance(minimum, (tuple, list)) else [minimum] * 3
    try:
        if len(values) != 3:
            raise ValueError
        red, green, blue = (_real(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"minimum must be a finite number or three of them, not {minimum!r}") from None
    return red, green, blue


def _subsample(band: np.ndarray) -> np.ndarray:
    """A float32 copy of every n-th pixel in both directions, blanks included."""
    step = max(1, math.ceil(math.sqrt(band.size / SAMPLE_PIXELS)))
    return band[::step, ::step].astype(np.float32)


def _finite_percentile(values: np.ndarray, percentile: float, empty: float) -> float:
    finite = values[np.isfinite(values)]
    return float(np.percentile(finite, percentile)) if finite.size else empty


def _default_stretch(samples: list[np.ndarray], mins: tuple[float, float, float], q: float) -> float:
    intensity = np.zeros(samples[0].shape, np.float32)
    for sample, low in zip(samples, mins):
        above = sample - np.float32(low)
        above[~np.isfinite(above)] = 0.0  # blank counts as sky, as in lupton8
        intensity += above
    intensity /= 3.0
    bright = _finite_percentile(intensity, BRIGHT_PERCENTILE, 0.0)
    if not bright > 0:
        return 1.0
    # Invert astropy's LuptonAsinhStretch: y = asinh(q·x/stretch) · 0.1 / asinh(0.1·q).
    return q * bright / math.sinh(BRIGHT_LEVEL * math.asinh(0.1 * q) / 0.1)


def lupton8(red: np.ndarray, green: np.ndarray, blue: np.ndarray, params: Lupton) -> np.ndarray:
    """An (H, W, 3) uint8 colour image. A band's blank pixels count as that band's minimum."""
    out = np.empty(red.shape + (3,), np.uint8)
    stretch = LuptonAsinhStretch(stretch=params.stretch, Q=params.q)
    intervals = [ManualInterval(vmin=m, vmax=None) for m in params.minimum]
    for rows in _strips(red.shape, RGB_STRIP):
        strip = [_filled(band[rows], m) for band, m in zip((red, green, blue), params.minimum)]
        # astropy divides f(I) by I everywhere before keeping only I > 0: 0/0 is expected.
        with np.errstate(divide="ignore", invalid="ignore"):
            out[rows] = make_lupton_rgb(*strip, interval=intervals, stretch_object=stretch)
    return out


def _filled(values: np.ndarray, fill: float) -> np.ndarray:
    x = values.astype(np.float32)
    x[~np.isfinite(x)] = fill
    return x
