"""Bad SODA requests: (case id, request pairs, expected error label, message fragment).

A data module, shared by the parser tests and the HTTP-level tests. Each request is
valid except for one thing: it names the demo dataset and cuts a small region of it,
so the only reason to refuse it is the one the case id names.
"""

from __future__ import annotations

DEMO_ID = "ivo://demo.cutout/des?DES0139-4457_r"
GOOD_CIRCLE = "24.8 -44.9 0.05"  # inside tile DES0139-4457

USAGE = "UsageError"
MULTI = "MultiValuedParamNotSupported"

Pairs = list[tuple[str, str]]


def _req(*pairs: tuple[str, str]) -> Pairs:
    return [("ID", DEMO_ID), *pairs]


BAD_PARAMS: list[tuple[str, Pairs, str, str]] = [
    # --- POS: shape keywords (SODA §3.3.1; values are case-sensitive, DALI §3.1)
    ("pos-unknown-shape", _req(("POS", "BOX 24.8 -44.9 0.1 0.1")), USAGE, "'BOX'"),
    ("pos-lowercase-circle", _req(("POS", "circle 24.8 -44.9 0.05")), USAGE, "write CIRCLE"),
    ("pos-mixedcase-polygon", _req(("POS", "Polygon 24.7 -45 24.9 -45 24.8 -44.8")), USAGE, "write POLYGON"),
    ("pos-lowercase-range", _req(("POS", "range 24.7 24.9 -45 -44.8")), USAGE, "write RANGE"),
    ("pos-no-keyword", _req(("POS", "24.8 -44.9 0.05")), USAGE, "shape keyword"),
    ("pos-keyword-only", _req(("POS", "CIRCLE")), USAGE, "3 numbers"),
    # --- POS=CIRCLE and CIRCLE (DALI §3.3.6)
    ("pos-circle-too-few", _req(("POS", "CIRCLE 24.8 -44.9")), USAGE, "3 numbers"),
    ("pos-circle-too-many", _req(("POS", "CIRCLE 24.8 -44.9 0.05 1")), USAGE, "not 4"),
    ("pos-circle-text", _req(("POS", "CIRCLE 24.8 south 0.05")), USAGE, "'south' is not a number"),
    ("pos-circle-nan", _req(("POS", "CIRCLE NaN -44.9 0.05")), USAGE, "NaN"),
    ("pos-circle-inf-radius", _req(("POS", "CIRCLE 24.8 -44.9 +Inf")), USAGE, "open bound"),
    ("pos-circle-ra-above-360", _req(("POS", "CIRCLE 360.5 -44.9 0.05")), USAGE, "RA 360.5 is outside [0, 360]"),
    ("pos-circle-ra-negative", _req(("POS", "CIRCLE -1 -44.9 0.05")), USAGE, "RA -1.0 is outside [0, 360]"),
    ("pos-circle-dec-above-90", _req(("POS", "CIRCLE 24.8 91 0.05")), USAGE, "Dec 91.0 is outside [-90, 90]"),
    ("pos-circle-dec-below-90", _req(("POS", "CIRCLE 24.8 -90.5 0.05")), USAGE, "Dec -90.5 is outside"),
    ("pos-circle-radius-zero", _req(("POS", "CIRCLE 24.8 -44.9 0")), USAGE, "radius 0.0 is outside (0, 180]"),
    ("pos-circle-radius-negative", _req(("POS", "CIRCLE 24.8 -44.9 -1")), USAGE, "radius -1.0"),
    ("pos-circle-radius-181", _req(("POS", "CIRCLE 24.8 -44.9 181")), USAGE, "radius 181.0"),
    ("circle-two-numbers", _req(("CIRCLE", "24.8 -44.9")), USAGE, "3 numbers"),
    ("circle-four-numbers", _req(("CIRCLE", "24.8 -44.9 0.05 0.05")), USAGE, "3 numbers"),
    ("circle-with-keyword", _req(("CIRCLE", "CIRCLE 24.8 -44.9 0.05")), USAGE, "belongs in POS"),
    ("circle-radius-zero", _req(("CIRCLE", "24.8 -44.9 0")), USAGE, "(0, 180]"),
    ("circle-commas", _req(("CIRCLE", "24.8,-44.9,0.05")), USAGE, "separate numbers with spaces"),
    ("circle-lowercase-nan", _req(("CIRCLE", "24.8 nan 0.05")), USAGE, "NaN"),
    ("circle-lowercase-inf", _req(("CIRCLE", "24.8 -44.9 inf")), USAGE, "+Inf or -Inf"),
    ("circle-underscore-digits", _req(("CIRCLE", "2_4.8 -44.9 0.05")), USAGE, "'2_4.8' is not a number"),
    ("circle-non-ascii-digits", _req(("CIRCLE", "\u0662\u0664 -44.9 0.05")), USAGE, "is not a number"),
    ("circle-hex", _req(("CIRCLE", "0x18 -44.9 0.05")), USAGE, "'0x18' is not a number"),
    ("circle-overflow", _req(("CIRCLE", "24.8 -44.9 1e999")), USAGE, "too large"),
    ("circle-lowercase-name", _req(("circle", "24.8 -44.9 0")), USAGE, "CIRCLE="),
    # --- POS=RANGE (SODA §3.3.1)
    ("range-too-few", _req(("POS", "RANGE 24.7 24.9 -45")), USAGE, "4 numbers"),
    ("range-too-many", _req(("POS", "RANGE 24.7 24.9 -45 -44.8 1")), USAGE, "4 numbers"),
    ("range-ra-reversed", _req(("POS", "RANGE 24.9 24.7 -45 -44.8")), USAGE, "ra1 <= ra2"),
    ("range-dec-reversed", _req(("POS", "RANGE 24.7 24.9 -44.8 -45")), USAGE, "Dec: the lower bound"),
    ("range-dec-out", _req(("POS", "RANGE 24.7 24.9 -91 -44.8")), USAGE, "Dec -91.0 is outside"),
    ("range-ra-out", _req(("POS", "RANGE 24.7 361 -45 -44.8")), USAGE, "RA 361.0 is outside"),
    ("range-empty-infinite", _req(("POS", "RANGE 24.7 24.9 +Inf +Inf")), USAGE, "is empty"),
    ("range-nan", _req(("POS", "RANGE 24.7 NaN -45 -44.8")), USAGE, "NaN"),
    ("range-lowercase-inf", _req(("POS", "RANGE 24.7 24.9 -inf -44.8")), USAGE, "+Inf or -Inf"),
    # --- POS=POLYGON and POLYGON (DALI §3.3.7)
    ("pos-polygon-two-vertices", _req(("POS", "POLYGON 24.7 -45 24.9 -45")), USAGE, "at least 3 vertices"),
    ("pos-polygon-odd-count", _req(("POS", "POLYGON 24.7 -45 24.9 -45 24.8")), USAGE, "even count"),
    ("pos-polygon-bow-tie", _req(("POS", "POLYGON 24.7 -45 24.9 -44.8 24.9 -45 24.7 -44.8")),
     USAGE, "intersects itself"),
    ("polygon-bow-tie", _req(("POLYGON", "24.7 -45 24.9 -44.8 24.9 -45 24.7 -44.8")), USAGE, "intersects itself"),
    ("polygon-spike", _req(("POLYGON", "24.7 -45 24.7 -44.8 24.7 -44.9 24.9 -44.9")), USAGE, "intersects itself"),
    ("polygon-collinear", _req(("POLYGON", "24.7 -45 24.7 -44.9 24.7 -44.8")), USAGE, "no area"),
    ("polygon-repeated-vertex", _req(("POLYGON", "24.7 -45 24.9 -45 24.9 -45 24.8 -44.8")), USAGE, "repeats vertex"),
    ("polygon-closed-two-vertices", _req(("POLYGON", "24.7 -45 24.9 -45 24.7 -45")), USAGE, "at least 3 vertices"),
    ("polygon-hemisphere", _req(("POLYGON", "0 0 120 0 240 0")), USAGE, "hemisphere"),
    ("polygon-ra-out", _req(("POLYGON", "24.7 -45 361 -45 24.8 -44.8")), USAGE, "RA 361.0 is outside"),
    ("polygon-dec-out", _req(("POLYGON", "24.7 -45 24.9 -45 24.8 95")), USAGE, "Dec 95.0 is outside"),
    ("polygon-infinite", _req(("POLYGON", "24.7 -45 +Inf -45 24.8 -44.8")), USAGE, "open bound"),
    ("polygon-with-keyword", _req(("POLYGON", "POLYGON 24.7 -45 24.9 -45 24.8 -44.8")), USAGE, "belongs in POS"),
    ("polygon-too-many-vertices",
     _req(("POLYGON", " ".join(f"{24.8 + 0.1 * (k % 2)} {-45 + 0.001 * k}" for k in range(402)))),
     USAGE, "at most 200 vertices"),
    # --- BAND (SODA §3.3.4, DALI §3.3.4)
    ("band-reversed", _req(("BAND", "6e-7 5e-7")), USAGE, "lower bound 6e-07 exceeds"),
    ("band-one-number", _req(("BAND", "5.6e-7")), USAGE, "as a pair"),
    ("band-three-numbers", _req(("BAND", "5e-7 6e-7 7e-7")), USAGE, "not 3"),
    ("band-negative", _req(("BAND", "-5e-7 6e-7")), USAGE, "negative"),
    ("band-name", _req(("BAND", "r")), USAGE, "use FILTER=r"),
    ("band-units", _req(("BAND", "500nm 600nm")), USAGE, "'500nm' is not a number"),
    ("band-nan", _req(("BAND", "NaN 6e-7")), USAGE, "NaN"),
    ("band-empty-infinite", _req(("BAND", "-Inf -Inf")), USAGE, "is empty"),
    # --- TIME (SODA §3.3.5)
    ("time-iso-dates", _req(("TIME", "2013-08-31 2013-09-01")), USAGE, "'2013-08-31' is not a number"),
    ("time-one-number", _req(("TIME", "56500")), USAGE, "as a pair"),
    ("time-reversed", _req(("TIME", "56501 56500")), USAGE, "lower bound 56501.0 exceeds"),
    ("time-nan", _req(("TIME", "56500 NaN")), USAGE, "NaN"),
    # --- POL (SODA §3.3.6)
    ("pol-unknown", _req(("POL", "X")), USAGE, "not a polarization state"),
    ("pol-lowercase", _req(("POL", "i")), USAGE, "case-sensitive"),
    ("pol-two-in-one", _req(("POL", "I Q")), USAGE, "one state per POL"),
    # --- FILTER (custom)
    ("filter-digit-first", _req(("FILTER", "1r")), USAGE, "'1r' is not a band name"),
    ("filter-punctuation", _req(("FILTER", "g-r")), USAGE, "'g-r' is not a band name"),
    ("filter-empty-item", _req(("FILTER", "g,,r")), USAGE, "empty name"),
    ("filter-space-separated", _req(("FILTER", "g r")), USAGE, "'g r' is not a band name"),
    # --- RESPONSEFORMAT (DALI §3.4.3)
    ("format-gif", _req(("RESPONSEFORMAT", "image/gif")), USAGE, "supported: application/fits"),
    ("format-votable", _req(("RESPONSEFORMAT", "votable")), USAGE, "unsupported format"),
    ("format-two", _req(("RESPONSEFORMAT", "fits"), ("RESPONSEFORMAT", "application/fits")),
     MULTI, "RESPONSEFORMAT was given 2 values"),
    ("format-two-same", _req(("responseformat", "fits"), ("RESPONSEFORMAT", "fits")), MULTI, "RESPONSEFORMAT"),
]
