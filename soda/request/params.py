"""SODA 1.0 request parameters (SODA §3, DALI 1.1 §3) parsed into one model.

Decisions (the why; the rules themselves are at the code):

- Unknown parameters are ignored. DALI 1.1 has no rule for them: §3 only says that
  most parameters are "defined by the service specification", and the only parameter
  errors it requires are for repeated single-valued parameters (§3.2) and, as a
  "should", for an unsupported RESPONSEFORMAT (§3.4.3). SODA §3.5 expects services and
  clients to add custom parameters, and UWS control parameters (RUNID, PHASE, WAIT,
  REQUEST, ...) arrive in the same request, so rejecting unknown names would break
  generic clients. ``PARAM_NAMES`` lists the names read here.
- Clockwise polygons are accepted and reversed to the DALI §3.3.7 order. The text of
  §3.3.7 ("counter-clockwise when viewed from the origin") contradicts its own example
  (and SODA §3.3.1/§3.3.3's), which are counter-clockwise with RA increasing to the
  right, i.e. seen from outside the sphere. Since a client that read the sentence
  literally would send the other order, and a cutout region larger than a hemisphere
  is meaningless, we take the smaller region either way and store the examples' order.
- A POLYGON must be simple (no repeated vertex, some area, no crossing edges) and lie
  within 89 degrees of its vertices' mean direction, so that the gnomonic tangent plane
  that the checks and the cutout engine both use holds it (``soda.sky.polygons``).
- A scalar BAND or TIME must be sent as a pair (DALI §3.3.4: "must still be serialised
  as a pair"); a single number is refused with a hint rather than guessed.
- RANGE needs ra1 <= ra2: a RANGE across RA = 0 is not defined by SODA §3.3.1, so a
  POLYGON must be used for that.
- RANGE is also read as a parameter of its own, beside CIRCLE and POLYGON (what Aladin
  Lite's SODA form sends): ``RANGE=ra1 ra2 dec1 dec2`` means ``POS=RANGE ra1 ra2 dec1 dec2``.
  SODA §3.3.1 has no such parameter, but DALI 1.2 defines the ``range`` xtype it carries.
- RESPONSEFORMAT answers with the media type the client named (DALI §3.4.3: "the response
  ... must set that media type"): ``image/fits`` is answered as ``image/fits``, and
  ``image/jpg`` as ``image/jpg`` although IANA registers only ``image/jpeg``, since the rule
  lets the client choose the Content-Type its software reacts to. A short form (``fits``,
  ``png``, ``jpeg``, ``jpg``) names no media type, so it is answered with the canonical one.
  MIME parameters are dropped: none of the formats offered has a parameter we act on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from dali.errors import MultiValuedParamNotSupported, UsageError
from soda.sky.polygons import check_polygon
from soda.sky.regions import Circle, Polygon, Range, Shape
from soda.sky.sphere import same_point

FITS = "application/fits"
# Accepted RESPONSEFORMAT values -> the canonical media type of the format they name.
FITS_FORMATS: Mapping[str, str] = MappingProxyType({FITS: FITS, "image/fits": FITS, "fits": FITS})

# SODA §3.3.6: the ObsCore pol_states vocabulary.
POL_STATES = ("I", "Q", "U", "V", "RR", "LL", "RL", "LR", "XX", "YY", "XY", "YX", "POLI", "POLA")
SHAPES = ("CIRCLE", "RANGE", "POLYGON")
PARAM_NAMES = frozenset({"ID", "POS", "CIRCLE", "RANGE", "POLYGON", "BAND", "TIME", "POL", "FILTER",
                         "RESPONSEFORMAT"})
MAX_ECHO = 100  # characters of an offending value quoted in an error message

# DALI §3.3.1 -> VOTable numbers (TABLEDATA). ASCII digits only: Python's float() would
# also take "1_000", "١٢" or "infinity".
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INFINITIES = {"+Inf": math.inf, "Inf": math.inf, "-Inf": -math.inf}
_FILTER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")

Interval = tuple[float, float]


@dataclass(frozen=True)
class ShapeLimits:
    """What one request's regions may hold (settings ``max_request_shapes``,
    ``max_polygon_vertices``, ``max_request_polygon_vertices``): checking a polygon costs
    time in the square of its vertices, so both are bounded before any is checked."""

    max_shapes: int
    max_polygon_vertices: int
    max_request_polygon_vertices: int


class _ShapeBudget:
    """Counts a request's regions and polygon vertices as they are read."""

    def __init__(self, limits: ShapeLimits | None) -> None:
        self.limits = limits
        self.shapes = 0
        self.polygon_vertices = 0

    def shape(self, name: str) -> None:
        self.shapes += 1
        if self.limits and self.shapes > self.limits.max_shapes:
            raise UsageError(f"{name}: a request may name at most {self.limits.max_shapes} regions "
                             f"(POS, CIRCLE, RANGE and POLYGON values together; max_request_shapes)")

    def numbers(self, name: str, value: str, count: int) -> None:
        """Before a polygon's numbers are read: not more than the vertices allowed and a
        closing vertex (``vertices`` then checks the exact count)."""
        if self.limits and count // 2 > self.limits.max_polygon_vertices + 1:
            self._too_many(name, value, count // 2)

    def vertices(self, name: str, value: str, count: int) -> None:
        if self.limits is None:
            return
        if count > self.limits.max_polygon_vertices:
            self._too_many(name, value, count)
        self.polygon_vertices += count
        if self.polygon_vertices > self.limits.max_request_polygon_vertices:
            raise _bad(name, value, f"a request's polygons may have at most "
                                    f"{self.limits.max_request_polygon_vertices} vertices together "
                                    f"(max_request_polygon_vertices)")

    def _too_many(self, name: str, value: str, count: int) -> None:
        assert self.limits is not None
        raise _bad(name, value, f"a polygon may have at most {self.limits.max_polygon_vertices} "
                                f"vertices, not {count} (max_polygon_vertices)")


@dataclass(frozen=True)
class CutoutParams:
    ids: tuple[str, ...] = ()                     # ID, opaque, used as-is (SODA §3.2.1)
    shapes: tuple[Shape, ...] = ()                # POS, CIRCLE, RANGE, POLYGON, in request order
    bands: tuple[Interval, ...] = ()              # BAND intervals in metres
    filters: tuple[str, ...] = ()                 # FILTER band names (custom parameter)
    times: tuple[Interval, ...] = ()              # TIME intervals, MJD
    pols: tuple[str, ...] = ()                    # POL states: one filter (SODA §3.3.6)
    response_format: str = FITS                   # the media type to answer with (DALI §3.4.3)


def parse_cutout(pairs: Iterable[tuple[str, str]], formats: Mapping[str, str] = FITS_FORMATS,
                 limits: ShapeLimits | None = None) -> CutoutParams:
    """Validate SODA parameters; raise UsageError / MultiValuedParamNotSupported.

    ``limits`` None: the regions are not counted (the service always passes its settings).
    """
    values: dict[str, list[str]] = {name: [] for name in PARAM_NAMES}
    shapes: list[Shape] = []
    budget = _ShapeBudget(limits)
    for name, value in pairs:
        key = name.upper()  # DALI §3.1: names are case-insensitive, values are not
        if key not in PARAM_NAMES or not value.strip():
            continue  # unknown: see the module docstring; empty: the same as absent
        if key in SHAPES or key == "POS":
            budget.shape(key)
            shapes.append(_parse_shape(key, value, budget))
        else:
            values[key].append(value)
    return CutoutParams(
        ids=tuple(values["ID"]),
        shapes=tuple(shapes),
        bands=tuple(_parse_interval("BAND", v, "metres", wavelength=True) for v in values["BAND"]),
        filters=_unique(n for v in values["FILTER"] for n in _parse_filters(v)),
        times=tuple(_parse_interval("TIME", v, "MJD") for v in values["TIME"]),
        pols=_unique(_parse_pol(v) for v in values["POL"]),
        response_format=_parse_format(values["RESPONSEFORMAT"], formats),
    )


def to_pairs(params: CutoutParams) -> list[tuple[str, str]]:
    """Canonical pairs: ``parse_cutout(to_pairs(p)) == p`` for every parsed ``p``."""
    pairs = [("ID", i) for i in params.ids]
    pairs += [_shape_pair(s) for s in params.shapes]
    pairs += [("BAND", _numbers(band)) for band in params.bands]
    pairs += [("FILTER", f) for f in params.filters]
    pairs += [("TIME", _numbers(time)) for time in params.times]
    pairs += [("POL", p) for p in params.pols]
    pairs.append(("RESPONSEFORMAT", params.response_format))
    return pairs


# --- errors and numbers ---------------------------------------------------------------

def _short(text: str) -> str:
    return text if len(text) <= MAX_ECHO else text[:MAX_ECHO] + "..."


def _bad(name: str, value: str, reason: str) -> UsageError:
    return UsageError(f"{name}={_short(value)!r}: {reason}")


def _number(name: str, value: str, token: str, *, infinite: bool = False) -> float:
    """One VOTable number; +Inf/-Inf only where an interval bound may be open."""
    if token in _INFINITIES:
        if not infinite:
            raise _bad(name, value, f"{token} is allowed only as an open bound of RANGE, BAND or TIME")
        return _INFINITIES[token]
    if token.lower() in ("nan", "+nan", "-nan"):
        raise _bad(name, value, "NaN is not a usable value")
    if token.lower().lstrip("+-") in ("inf", "infinity"):
        raise _bad(name, value, f"{token!r} is not a number; write infinity as +Inf or -Inf")
    if not _NUMBER.fullmatch(token):
        hint = "; separate numbers with spaces" if "," in token else ""
        raise _bad(name, value, f"{_short(token)!r} is not a number{hint}")
    number = float(token)
    if math.isinf(number):
        raise _bad(name, value, f"{_short(token)} is too large for a double")
    return number


def _numbers_of(name: str, value: str, tokens: list[str], *, infinite: bool = False) -> list[float]:
    return [_number(name, value, t, infinite=infinite) for t in tokens]


def _format_number(x: float) -> str:
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return repr(x)  # shortest text that reads back as the same double


def _numbers(xs: Iterable[float]) -> str:
    return " ".join(_format_number(x) for x in xs)


def _check_ra(name: str, value: str, ra: float) -> None:
    if math.isfinite(ra) and not 0.0 <= ra <= 360.0:
        raise _bad(name, value, f"RA {_format_number(ra)} is outside [0, 360] degrees")


def _check_dec(name: str, value: str, dec: float) -> None:
    if math.isfinite(dec) and not -90.0 <= dec <= 90.0:
        raise _bad(name, value, f"Dec {_format_number(dec)} is outside [-90, 90] degrees")


def _check_bounds(name: str, value: str, low: float, high: float, what: str = "") -> None:
    """DALI §3.3.4: finite bounds are included; an infinite one opens that end."""
    prefix = f"{what}: " if what else ""
    if low > high:
        raise _bad(name, value, f"{prefix}the lower bound {_format_number(low)} exceeds the upper "
                                f"bound {_format_number(high)}")
    if low == math.inf or high == -math.inf:
        raise _bad(name, value, f"{prefix}the interval {_format_number(low)} {_format_number(high)} is empty")


# --- shapes: POS (SODA §3.3.1), CIRCLE (§3.3.2), RANGE (DALI 1.2 range), POLYGON (§3.3.3) ---

def _parse_shape(name: str, value: str, budget: _ShapeBudget) -> Shape:
    tokens = value.split()
    if name == "POS":
        return _parse_pos(value, tokens, budget)
    if tokens[0].upper() in SHAPES:
        raise _bad(name, value, f"the {name} parameter takes numbers only; the shape keyword "
                                f"{tokens[0]!r} belongs in POS (POS={name} ...)")
    if name == "CIRCLE":
        return _circle(name, value, tokens)
    if name == "RANGE":
        return _range(name, value, tokens)
    return _polygon(name, value, tokens, budget)


def _parse_pos(value: str, tokens: list[str], budget: _ShapeBudget) -> Shape:
    keyword, numbers = tokens[0], tokens[1:]
    if keyword == "CIRCLE":
        return _circle("POS", value, numbers)
    if keyword == "RANGE":
        return _range("POS", value, numbers)
    if keyword == "POLYGON":
        return _polygon("POS", value, numbers, budget)
    if keyword.upper() in SHAPES:
        raise _bad("POS", value, f"shape keywords are upper case: write {keyword.upper()}, not "
                                 f"{keyword!r} (values are case-sensitive, DALI §3.1)")
    raise _bad("POS", value, f"POS must start with a shape keyword CIRCLE, RANGE or POLYGON, "
                             f"not {keyword!r}")


def _circle(name: str, value: str, tokens: list[str]) -> Circle:
    """DALI §3.3.6: ra in [0,360], dec in [-90,90], radius in (0,180]."""
    numbers = _numbers_of(name, value, tokens)
    if len(numbers) != 3:
        raise _bad(name, value, f"a circle needs 3 numbers (ra dec radius), not {len(numbers)}")
    ra, dec, radius = numbers
    _check_ra(name, value, ra)
    _check_dec(name, value, dec)
    if not 0.0 < radius <= 180.0:
        raise _bad(name, value, f"radius {_format_number(radius)} is outside (0, 180] degrees")
    return Circle(ra, dec, radius)


def _range(name: str, value: str, tokens: list[str]) -> Range:
    """SODA §3.3.1: RANGE ra1 ra2 dec1 dec2, open ends as -Inf/+Inf."""
    numbers = _numbers_of(name, value, tokens, infinite=True)
    if len(numbers) != 4:
        raise _bad(name, value, f"a RANGE needs 4 numbers (ra1 ra2 dec1 dec2), not {len(numbers)}")
    ra1, ra2, dec1, dec2 = numbers
    for ra in (ra1, ra2):
        _check_ra(name, value, ra)
    for dec in (dec1, dec2):
        _check_dec(name, value, dec)
    if ra1 > ra2:
        raise _bad(name, value, f"ra1 {_format_number(ra1)} > ra2 {_format_number(ra2)}: ra1 <= ra2 is required "
                                "(for a region across RA 0 use a POLYGON)")
    _check_bounds(name, value, ra1, ra2, "RA")
    _check_bounds(name, value, dec1, dec2, "Dec")
    return Range(ra1, ra2, dec1, dec2)


def _polygon(name: str, value: str, tokens: list[str], budget: _ShapeBudget) -> Polygon:
    """DALI §3.3.7: an even count, >= 3 vertices, a simple polygon."""
    budget.numbers(name, value, len(tokens))
    numbers = _numbers_of(name, value, tokens)
    if len(numbers) % 2:
        raise _bad(name, value, f"a polygon needs an even count of numbers (ra dec pairs), not {len(numbers)}")
    vertices = list(zip(numbers[::2], numbers[1::2]))
    for ra, dec in vertices:
        _check_ra(name, value, ra)
        _check_dec(name, value, dec)
    if len(vertices) >= 2 and same_point(vertices[0], vertices[-1]):
        vertices.pop()  # an explicit closing vertex (DALI 1.2 discourages it; harmless)
    if len(vertices) < 3:
        raise _bad(name, value, f"a polygon needs at least 3 vertices, not {len(vertices)}")
    budget.vertices(name, value, len(vertices))
    reason, clockwise = check_polygon(vertices)  # repeats, hemisphere, no area, self-intersection
    if reason:
        raise _bad(name, value, reason)
    if clockwise:
        vertices.reverse()  # see the module docstring
    return Polygon(tuple(vertices))


def _shape_pair(shape: Shape) -> tuple[str, str]:
    if isinstance(shape, Circle):
        return "CIRCLE", _numbers((shape.ra, shape.dec, shape.radius))
    if isinstance(shape, Range):
        return "POS", "RANGE " + _numbers((shape.ra_min, shape.ra_max, shape.dec_min, shape.dec_max))
    return "POLYGON", _numbers(x for vertex in shape.vertices for x in vertex)


# --- BAND (SODA §3.3.4), TIME (§3.3.5), POL (§3.3.6), FILTER, RESPONSEFORMAT -----------

def _parse_interval(name: str, value: str, unit: str, *, wavelength: bool = False) -> Interval:
    """DALI §3.3.4: two numbers, -Inf/+Inf for open ends; a scalar is written as a pair."""
    tokens = value.split()
    if wavelength and len(tokens) == 1 and _FILTER_NAME.fullmatch(tokens[0]) \
            and tokens[0].lower() not in ("inf", "nan", "infinity"):
        raise _bad(name, value, f"BAND takes wavelengths in metres, not band names; use FILTER={tokens[0]}")
    numbers = _numbers_of(name, value, tokens, infinite=True)
    if len(numbers) == 1:
        raise _bad(name, value, f"an interval is 2 numbers 'low high' in {unit}; write a single "
                                f"value as a pair ({tokens[0]} {tokens[0]}), DALI §3.3.4")
    if len(numbers) != 2:
        raise _bad(name, value, f"an interval is 2 numbers 'low high' in {unit}, not {len(numbers)}")
    low, high = numbers
    if wavelength and any(math.isfinite(x) and x < 0 for x in (low, high)):
        raise _bad(name, value, "wavelengths cannot be negative (BAND is in metres)")
    _check_bounds(name, value, low, high)
    return low, high


def _parse_pol(value: str) -> str:
    state = value.strip()
    if state in POL_STATES:
        return state
    if len(state.split()) > 1:
        reason = "give one state per POL parameter (POL=I&POL=Q)"
    elif state.upper() in POL_STATES:
        reason = f"states are case-sensitive: write {state.upper()}"
    else:
        reason = f"not a polarization state; use one of {' '.join(POL_STATES)}"
    raise _bad("POL", value, reason)


def _parse_filters(value: str) -> list[str]:
    """FILTER is repeated and/or a comma-separated list: FILTER=g,r&FILTER=i."""
    names = [n.strip() for n in value.split(",")]
    for name in names:
        if not _FILTER_NAME.fullmatch(name):
            what = "an empty name" if not name else f"the name {name!r}"
            raise _bad("FILTER", value, f"{what} is not a band name (a letter, then letters, "
                                        "digits or _; separate names with commas)")
    return names


def _parse_format(values: list[str], formats: Mapping[str, str]) -> str:
    """DALI §3.4.3: single-valued; a media type named is echoed, a short form made canonical."""
    if not values:
        return FITS
    if len(values) > 1:
        raise MultiValuedParamNotSupported(
            f"RESPONSEFORMAT was given {len(values)} values ({', '.join(map(repr, values))}); "
            "it takes one (DALI §3.4.3)")
    value = values[0]
    media_type = value.split(";")[0].strip().lower()  # RFC 2045: type/subtype are case-insensitive
    if media_type not in formats:
        raise _bad("RESPONSEFORMAT", value, f"unsupported format; supported: {', '.join(formats)}")
    return media_type if "/" in media_type else formats[media_type]


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
