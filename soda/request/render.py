"""The parameters of PNG and JPEG cutouts (a custom extension of SODA §3.5).

Parameters (names case-insensitive, used with RESPONSEFORMAT=image/png or image/jpeg):
  STRETCH      linear | asinh | log | sqrt            (default asinh)
  LIMITS       sky | zscale | minmax | percentile      (default sky: a dark-grey sky)
  PERCENTILES  "low high" in [0, 100]                  (implies LIMITS=percentile)
  SIZE         longest side of the image in pixels     (default: the cutout's own size)
  RGB          three bands as R,G,B (e.g. "i,r,g"), or "default" for the survey's triplet
  Q            Lupton softening for RGB, in [0.001, 1e4] (default 8)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from dali.errors import UsageError
from dali.params import Params, RequestParams
from renderers import Scaling
from renderers.stretch import MAX_Q, MIN_Q

PNG, JPEG = "image/png", "image/jpeg"
IMAGE_FORMATS = {PNG: PNG, "png": PNG, JPEG: JPEG, "jpeg": JPEG, "jpg": JPEG, "image/jpg": JPEG}
_WHOLE = re.compile("[0-9]+")  # ASCII digits: str.isdigit() also takes superscripts int() refuses
STRETCHES = ("linear", "asinh", "log", "sqrt")
LIMIT_KINDS = ("sky", "zscale", "minmax", "percentile")


@dataclass(frozen=True)
class RGBRequest:
    """A colour composite, as the planner needs it."""

    bands: tuple[str, str, str] | None  # None: the survey's default triplet


@dataclass(frozen=True)
class RenderParams:
    scaling: Scaling = Scaling()
    size: int | None = None
    rgb: tuple[str, str, str] | None = None  # bands as R, G, B
    q: float = 8.0
    use_default_rgb: bool = False  # RGB=default: the survey's triplet, resolved by the planner


def _shown(text: str, limit: int = 40) -> str:
    """A parameter value as an error message quotes it: shortened if long."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _choice(params: RequestParams, name: str, choices: tuple[str, ...], default: str) -> str:
    value = params.single(name)
    if value is None:
        return default
    if value not in choices:
        raise UsageError(f"{name}={value!r}: must be one of {', '.join(choices)}")
    return value


def _number(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{name}={_shown(text)}: not a number") from None
    if not math.isfinite(value):
        raise UsageError(f"{name}={_shown(text)}: must be finite")
    return value


def parse_render(pairs: Params, max_size: int) -> RenderParams:
    params = RequestParams(pairs)
    stretch = _choice(params, "STRETCH", STRETCHES, "asinh")
    percentiles_text = params.single("PERCENTILES")
    limits = _choice(params, "LIMITS", LIMIT_KINDS, "percentile" if percentiles_text else "sky")
    percentiles = (0.5, 99.5)
    if percentiles_text is not None:
        parts = percentiles_text.split()
        if len(parts) != 2:
            raise UsageError(f"PERCENTILES={percentiles_text!r}: give two numbers, low and high")
        low, high = (_number("PERCENTILES", p) for p in parts)
        if not 0 <= low < high <= 100:
            raise UsageError(f"PERCENTILES={percentiles_text!r}: need 0 <= low < high <= 100")
        percentiles = (low, high)
    size = None
    size_text = params.single("SIZE")
    if size_text is not None:
        # A length check first: int() refuses more than 4300 digits (and need not read them).
        digits = size_text.strip().lstrip("0") or "0"
        if (not _WHOLE.fullmatch(size_text.strip()) or len(digits) > len(str(max_size))
                or not 1 <= int(digits) <= max_size):
            raise UsageError(f"SIZE={_shown(size_text)}: must be a whole number of pixels from 1 to {max_size}")
        size = int(digits)
    q_text = params.single("Q")
    q = 8.0 if q_text is None else _number("Q", q_text)
    if not 0 < q <= MAX_Q:
        raise UsageError(f"Q={_shown(q_text or '')}: the Lupton softening must be greater than 0 "
                         f"and at most {MAX_Q:g}")
    if q < MIN_Q:  # smaller still underflows the stretch (sinh(Q/10) -> 0)
        raise UsageError(f"Q={_shown(q_text or '')}: the Lupton softening must be at least {MIN_Q:g}")
    rgb_text = params.single("RGB")
    rgb, use_default = None, False
    if rgb_text is not None:
        if rgb_text.strip() == "default":
            use_default = True
        else:
            bands = [b for b in rgb_text.replace(",", " ").split() if b]
            if len(bands) != 3:
                raise UsageError(f"RGB={rgb_text!r}: give three bands as R,G,B (e.g. i,r,g) or 'default'")
            rgb = (bands[0], bands[1], bands[2])
    return RenderParams(Scaling(stretch, limits, percentiles), size, rgb, q, use_default)
