"""SIA 2.0 query parameters (SIA 2.0 §2.1) -> a typed ``SiaQuery``.

Every parameter may be repeated: values of one parameter OR together, different
parameters AND (SIA 2.0 §2.1). Names are case-insensitive, empty values are absent and
unknown parameters are ignored (DALI §3.1, §3.2). Numeric constraints are DALI intervals
(§3.3.4: two numbers, -Inf/+Inf open ends; a single value is written as a pair); POS takes
the SODA/DALI shapes CIRCLE, RANGE and POLYGON, read by the same parser as SODA's POS.
Every bad value is a UsageError naming the parameter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dali.errors import MultiValuedParamNotSupported, UsageError
from soda.request.params import POL_STATES, ShapeLimits, parse_cutout
from soda.sky.regions import Shape

Interval = tuple[float, float]

# SIA 2.0 §2.1.1-2.1.17 (MAXREC, RESPONSEFORMAT: DALI §3.2.4, §3.2.3).
INTERVALS = ("BAND", "TIME", "FOV", "SPATRES", "EXPTIME")
STRINGS = ("ID", "COLLECTION", "FACILITY", "INSTRUMENT", "DPTYPE", "TARGET", "FORMAT")
NAMES = frozenset({"POS", "POL", "CALIB", "MAXREC", "RESPONSEFORMAT", *INTERVALS, *STRINGS})
DPTYPES = ("image", "cube")  # SIA 2.0 §2.1.13
CALIB_LEVELS = (0, 1, 2, 3, 4)  # ObsCore 1.1 calib_level
VOTABLE_FORMATS = ("votable", "application/x-votable+xml", "text/xml")
MAX_ECHO = 100


@dataclass(frozen=True)
class SiaQuery:
    shapes: tuple[Shape, ...] = ()
    bands: tuple[Interval, ...] = ()          # metres
    times: tuple[Interval, ...] = ()          # MJD
    fovs: tuple[Interval, ...] = ()           # degrees
    spatres: tuple[Interval, ...] = ()        # arcsec
    exptimes: tuple[Interval, ...] = ()       # seconds
    pols: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    collections: tuple[str, ...] = ()
    facilities: tuple[str, ...] = ()
    instruments: tuple[str, ...] = ()
    dptypes: tuple[str, ...] = ()
    calibs: tuple[int, ...] = ()
    targets: tuple[str, ...] = ()
    formats: tuple[str, ...] = ()
    maxrec: int = 0                           # DALI §4.3, within the hard limit


@dataclass(frozen=True)
class SiaLimits:
    maxrec_default: int   # DALI §3.2.4: the default MAXREC
    maxrec_limit: int     # its hard limit: a larger MAXREC is lowered to it
    max_values: int       # the most values one parameter may take (POS and every other)
    shapes: ShapeLimits | None = None  # the regions POS may hold, as for SODA (None: uncounted)


def _short(value: str) -> str:
    return value if len(value) <= MAX_ECHO else value[:MAX_ECHO] + "..."


def _bad(name: str, value: str, reason: str) -> UsageError:
    return UsageError(f"{name}={_short(value)!r}: {reason}")


def parse_sia(pairs: Iterable[tuple[str, str]], limits: SiaLimits) -> SiaQuery:
    values: dict[str, list[str]] = {name: [] for name in NAMES}
    for name, value in pairs:
        key = name.upper()
        if key in values and value.strip():
            values[key].append(value)
    for key, given in values.items():
        if len(given) > limits.max_values:
            raise UsageError(f"{key} was given {len(given)} times; at most {limits.max_values} "
                             "values are taken per parameter")
    _response_format(values["RESPONSEFORMAT"])
    return SiaQuery(
        shapes=_positions(values["POS"], limits.shapes),
        bands=tuple(_soda_interval("BAND", v) for v in values["BAND"]),
        times=tuple(_soda_interval("TIME", v) for v in values["TIME"]),
        fovs=tuple(_interval("FOV", v, "degrees") for v in values["FOV"]),
        spatres=tuple(_interval("SPATRES", v, "arcsec") for v in values["SPATRES"]),
        exptimes=tuple(_interval("EXPTIME", v, "seconds") for v in values["EXPTIME"]),
        pols=tuple(dict.fromkeys(_pol(v) for v in values["POL"])),
        ids=tuple(values["ID"]),
        collections=tuple(values["COLLECTION"]),
        facilities=tuple(values["FACILITY"]),
        instruments=tuple(values["INSTRUMENT"]),
        dptypes=tuple(_dptype(v) for v in values["DPTYPE"]),
        calibs=tuple(_calib(v) for v in values["CALIB"]),
        targets=tuple(values["TARGET"]),
        formats=tuple(values["FORMAT"]),
        maxrec=_maxrec(values["MAXREC"], limits),
    )


def _positions(values: list[str], limits: ShapeLimits | None) -> tuple[Shape, ...]:
    """SIA 2.0 §2.1.1: CIRCLE, RANGE or POLYGON, as SODA's POS (SODA §3.3.1), within the
    same bounds on regions and polygon vertices as a cutout request."""
    return parse_cutout([("POS", v) for v in values], limits=limits).shapes


def _soda_interval(name: str, value: str) -> Interval:
    """SIA 2.0 §2.1.2 BAND (metres), §2.1.3 TIME (MJD): read as SODA reads them."""
    if name == "BAND" and value.strip().isalpha():
        raise _bad(name, value, "BAND takes wavelengths in metres (two numbers, low high), "
                                "not band names")
    params = parse_cutout([(name, value)])
    return params.bands[0] if name == "BAND" else params.times[0]


def _interval(name: str, value: str, unit: str) -> Interval:
    """SIA 2.0 §2.1.5-2.1.7 FOV, SPATRES, EXPTIME: DALI intervals of non-negative numbers."""
    try:
        low, high = parse_cutout([("TIME", value)]).times[0]  # the same DALI interval grammar
    except UsageError as exc:
        raise _bad(name, value, exc.message.split(": ", 1)[-1]
                   .replace("in MJD", f"in {unit}")) from None
    if low < 0 or high < 0:
        raise _bad(name, value, f"{name} cannot be negative ({unit})")
    return low, high


def _pol(value: str) -> str:
    """SIA 2.0 §2.1.4: one ObsCore polarization state per value."""
    state = value.strip()
    if state not in POL_STATES:
        raise _bad("POL", value, f"not a polarization state; use one of {' '.join(POL_STATES)}")
    return state


def _dptype(value: str) -> str:
    if value.strip() not in DPTYPES:
        raise _bad("DPTYPE", value, "takes image or cube (SIA 2.0 §2.1.13)")
    return value.strip()


def _calib(value: str) -> int:
    text = value.strip()
    # isdecimal, not isdigit: int() refuses digits such as "²" that isdigit accepts
    if not (text.isdecimal() and len(text) == 1 and int(text) in CALIB_LEVELS):
        raise _bad("CALIB", value, "takes a calibration level 0, 1, 2, 3 or 4 (ObsCore calib_level)")
    return int(text)


def _maxrec(given: list[str], limits: SiaLimits) -> int:
    """DALI §3.2.4: a non-negative integer; beyond the hard limit it is the hard limit."""
    if not given:
        return limits.maxrec_default
    if len(given) > 1:
        raise MultiValuedParamNotSupported(f"MAXREC was given {len(given)} times; it takes one value")
    text = given[0].strip().lstrip("0") or "0"
    if not text.isdecimal() or not text.isascii():
        raise _bad("MAXREC", given[0], "takes a non-negative integer")
    # Compared as text first: int() refuses more than 4300 digits.
    return limits.maxrec_limit if len(text) > len(str(limits.maxrec_limit)) else min(int(text), limits.maxrec_limit)


def _response_format(given: list[str]) -> None:
    """DALI §3.2.3: single-valued; this service answers VOTable only."""
    if len(given) > 1:
        raise MultiValuedParamNotSupported(f"RESPONSEFORMAT was given {len(given)} times; it takes one value")
    if given and given[0].split(";")[0].strip().lower() not in VOTABLE_FORMATS:
        raise _bad("RESPONSEFORMAT", given[0], "not offered; the SIA query answers VOTable "
                                               "(application/x-votable+xml)")
