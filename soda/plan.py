"""From SODA parameters to the list of cutouts to make: one target per combination (SODA §6).

The combinations are the Cartesian product of the request's multi-valued parameters
(SODA §3.1, §6: "each combination of values produces one result"; two CIRCLE and two
BAND values are four results), in this order, the last varying fastest:

    where (ID × position, or position)  ×  band selector  ×  TIME

- where: with ID, each ID × each position (POS, CIRCLE, RANGE, POLYGON; none: the whole
  image); without ID, each position, served by the first configured survey (in the
  settings' order) with an image at the position's centre, and by that survey's image
  whose tile or patch holds the centre; where no survey has one, the first survey says so.
- band selector: each FILTER name, then each BAND interval, in request order. FILTER (our
  band-name extension) selects bands as BAND does, so each name is a combination of its
  own, like each BAND value. Without FILTER or BAND: with ID, the ID's image; without
  ID, one combination per band that has an image at that position (not every band the
  survey declares). A BAND interval that overlaps several bands at a position is one
  combination whose result holds every one of them.
- TIME: each TIME value. The images are coadds with no time axis, so every TIME value
  gets the same pixels; TIME is checked by the parser and otherwise only multiplies.
- POL is not an axis: SODA §3.3.6 combines all POL values into one filter. The images
  are unpolarised (Stokes I), so a POL without I leaves every combination without pixels.

A combination without pixels keeps its place with the reason (``problem``), so a job
lists it as a result that starts with ``UsageError:`` (SODA §6) and /sync leaves it out.

Result names (SODA §6 leaves them to the service) tell the combination apart:

- where: ``01`` (position 1) without ID; with ID nothing when the request has one ID
  and at most one position, else ``01-02`` (ID 1, position 2);
- what: the tile and band(s) cut, ``DES0139-4457_r`` (``_gr`` for a BAND holding g and r,
  ``_irg`` for a colour composite); for a combination with no image, the FILTER name
  asked for, or nothing. With ID the name shows the ID's tile and band.
- only when two names would still be equal, every name of the request gets the band
  selector's number, ``_b2`` (FILTER names counted first, then BAND values), and then,
  if needed, the TIME value's number, ``_t1``.

E.g. ``01_DES0139-4457_g``, ``01-02_DES0139-4457_r_b2``, ``02_z``, ``03``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from dali.errors import UsageError
from soda.request.params import CutoutParams, Interval
from soda.request.render import RGBRequest
from soda.sky.regions import Circle, Shape, centre
from soda.surveys.base import ImageRef, Survey
from soda.surveys.registry import Datasets


@dataclass(frozen=True)
class Target:
    """One combination: what to cut, or why it has no pixels."""

    name: str                       # unique within the request, e.g. "01_DES0139-4457_r"
    shape: Shape | None             # None: the whole image
    images: tuple[ImageRef, ...] = ()  # cut each; empty when the combination has a problem
    problem: str | None = None      # why this combination has no pixels
    colour: bool = False            # images are the R, G, B of one colour composite

    @property
    def image(self) -> ImageRef | None:
        return self.images[0] if self.images else None

    @property
    def rgb(self) -> tuple[ImageRef, ...] | None:
        return self.images if self.colour else None

    def why_empty(self) -> str:
        """Why this combination gave no pixels: its problem, or its region misses the images."""
        if self.problem:
            return self.problem
        region = self.shape.dali() if self.shape else "the region"
        return f"{region} does not overlap {', '.join(i.dataset_id for i in self.images)}"

    @property
    def cutouts(self) -> int:
        """Cutouts this combination really makes (what count limits count)."""
        if not self.images:
            return 0
        return 1 if self.colour else len(self.images)


@dataclass(frozen=True)
class _Band:
    """One band selector: a FILTER name or a BAND interval (metres)."""

    number: int
    name: str | None = None
    interval: Interval | None = None

    def text(self) -> str:
        if self.interval is None:
            return f"FILTER {self.name}"
        return "BAND " + " ".join(_number(x) for x in self.interval)

    def bands(self, survey: Survey) -> list[str]:
        if self.interval is None:
            return [self.name] if self.name in survey.bands else []
        return survey.bands_in(*self.interval)


@dataclass(frozen=True)
class _Combo:
    """A combination before its name is final."""

    base: str                  # where and what, e.g. "01_DES0139-4457_r"
    shape: Shape | None
    images: tuple[ImageRef, ...] = ()
    problem: str | None = None
    band: int | None = None    # the band selector's number, when there are selectors
    time: int | None = None    # the TIME value's number, when there are several
    colour: bool = False


def _number(x: float) -> str:
    return ("+Inf" if x > 0 else "-Inf") if math.isinf(x) else f"{x:g}"


def _join(*parts: str) -> str:
    return "_".join(p for p in parts if p)


def _where(i: int, j: int, single: bool) -> str:
    return "" if single else f"{i:02d}-{j:02d}"


# Combinations one request may name before any is built, bounding the planner's own memory
# and time (the count limits of sync and jobs, checked on the plan, are lower): two axes
# within the default 1000 form fields reach 500 x 500; more axes must not multiply past it.
MAX_COMBINATIONS = 250_000


def plan(params: CutoutParams, datasets: Datasets, rgb: RGBRequest | None = None) -> list[Target]:
    if not params.ids and not params.shapes:
        raise UsageError("give ID, or a position (POS, CIRCLE, RANGE or POLYGON) to cut around")
    named = ((len(params.ids) or 1) * (len(params.shapes) or 1)
             * max(1, len(params.filters) + len(params.bands)) * max(1, len(params.times)))
    if named > MAX_COMBINATIONS:
        raise UsageError(f"this request names {named} combinations of its values (SODA §6); "
                         f"at most {MAX_COMBINATIONS} can be planned")
    if rgb is not None:
        combos = _plan_rgb(params, datasets, rgb)
    elif params.ids:
        combos = _plan_ids(params, datasets)
    else:
        combos = _plan_positions(params, datasets)
    return _named(_times(_polarised(combos, params), params))


# --- band selectors, POL and TIME -----------------------------------------------------------

def _selectors(params: CutoutParams, survey: Survey) -> list[_Band]:
    unknown = [f for f in params.filters if f not in survey.bands]
    if unknown:
        raise UsageError(f"FILTER {', '.join(unknown)} is not a band of survey {survey.name} "
                         f"(bands: {', '.join(survey.bands)})")
    selectors = [_Band(0, name=f) for f in params.filters] + [_Band(0, interval=b) for b in params.bands]
    return [replace(s, number=n) for n, s in enumerate(selectors, start=1)]


def _polarised(combos: list[_Combo], params: CutoutParams) -> list[_Combo]:
    """SODA §3.3.6: the POL values are one filter; the images hold Stokes I only."""
    if not params.pols or "I" in params.pols:
        return combos
    return [replace(c, images=(), problem=_unpolarised(c.images)) if c.images else c for c in combos]


def _unpolarised(images: Sequence[ImageRef]) -> str:
    if len(images) == 1:
        return f"dataset {images[0].dataset_id} is unpolarised (POL I only)"
    return f"datasets {', '.join(i.dataset_id for i in images)} are unpolarised (POL I only)"


def _times(combos: list[_Combo], params: CutoutParams) -> list[_Combo]:
    """SODA §6: each TIME value is a combination; coadds have no time axis, so the same cut."""
    if len(params.times) < 2:
        return combos
    return [replace(c, time=t) for c in combos for t in range(1, len(params.times) + 1)]


def _repeats(names: Sequence[str]) -> bool:
    return len(set(names)) < len(names)


def _named(combos: list[_Combo]) -> list[Target]:
    """Names unique within the request: the band and then the time number, only if needed."""
    names = [c.base for c in combos]
    if _repeats([f"{n}/{c.time}" for n, c in zip(names, combos, strict=True)]):  # TIME aside
        names = [_join(n, f"b{c.band}" if c.band else "") for n, c in zip(names, combos, strict=True)]
    if _repeats(names):
        names = [_join(n, f"t{c.time}" if c.time else "") for n, c in zip(names, combos, strict=True)]
    assert not _repeats(names), names
    return [Target(n, c.shape, c.images, c.problem, c.colour) for n, c in zip(names, combos, strict=True)]


# --- by ID --------------------------------------------------------------------------------

def _image(datasets: Datasets, dataset_id: str) -> ImageRef:
    image = datasets.by_id(dataset_id)
    if image is None:
        raise UsageError(f"ID {dataset_id!r} names no dataset of this service")
    return image


def _id_problem(image: ImageRef, survey: Survey, selector: _Band) -> str | None:
    if selector.interval is None:
        if image.band != selector.name:
            return f"dataset {image.dataset_id} is band {image.band}, not FILTER {selector.name}"
        return None
    low, high = survey.band_range(image.band)
    lo, hi = selector.interval
    if lo <= high and hi >= low:
        return None
    return f"dataset {image.dataset_id} ({low:.3g}-{high:.3g} m) does not overlap {selector.text()}"


def _plan_ids(params: CutoutParams, datasets: Datasets) -> list[_Combo]:
    combos = []
    shapes: list[Shape | None] = list(params.shapes) or [None]
    single = len(shapes) == 1 and len(params.ids) == 1
    for i, dataset_id in enumerate(params.ids, start=1):
        image = _image(datasets, dataset_id)
        survey = datasets.surveys[image.survey]
        selectors: list[_Band | None] = list(_selectors(params, survey)) or [None]
        for j, shape in enumerate(shapes, start=1):
            base = _join(_where(i, j, single), f"{image.tile}_{image.band}")
            for selector in selectors:
                problem = None if selector is None else _id_problem(image, survey, selector)
                combos.append(_Combo(base, shape, () if problem else (image,), problem,
                                     None if selector is None else selector.number))
    return combos


# --- by position --------------------------------------------------------------------------

def _default_survey(datasets: Datasets) -> Survey:
    """The survey that serves position-only requests."""
    if datasets.default is None:
        raise UsageError("this service has no survey configured")
    return datasets.default


def _position(shape: Shape) -> tuple[float, float]:
    position = centre(shape)
    if position is None:
        raise UsageError("a RANGE with an open (-Inf/+Inf) bound needs an ID: it has no centre "
                         "that could pick the image")
    return position


def _here(datasets: Datasets, shape: Shape) -> tuple[Survey, dict[str, ImageRef]]:
    """The survey that serves a position, and its images there by band (in the survey's
    band order): the first configured survey with an image at the position's centre; the
    default survey (with none) when no survey has one."""
    ra, dec = _position(shape)
    for survey in datasets.surveys.values():
        here = {image.band: image for image in survey.at(ra, dec, survey.bands)}
        if here:
            return survey, here
    return _default_survey(datasets), {}


def _missing(survey: Survey, shape: Shape, selector: _Band) -> str:
    """Why a band selector finds no image at a position."""
    where = shape.dali()
    if selector.interval is None:
        return f"no {survey.name} {selector.name}-band image holds {where}"
    bands = selector.bands(survey)
    if not bands:
        return f"{selector.text()} overlaps no band of survey {survey.name} ({', '.join(survey.bands)})"
    return f"no {survey.name} image in band {', '.join(bands)} ({selector.text()}) holds {where}"


def _served(k: int, shape: Shape, images: Sequence[ImageRef], number: int | None) -> _Combo:
    label = f"{images[0].tile}_{''.join(i.band for i in images)}"
    return _Combo(_join(f"{k:02d}", label), shape, tuple(images), band=number)


def _plan_positions(params: CutoutParams, datasets: Datasets) -> list[_Combo]:
    combos = []
    for k, shape in enumerate(params.shapes, start=1):
        survey, here = _here(datasets, shape)
        selectors = _selectors(params, survey)
        if not selectors:  # the bands that exist here, one combination each
            combos += [_served(k, shape, [image], None) for image in here.values()]
            if not here:
                combos.append(_Combo(f"{k:02d}", shape, problem=f"no {survey.name} image holds {shape.dali()}"))
            continue
        for selector in selectors:
            images = [here[b] for b in selector.bands(survey) if b in here]
            if images:
                combos.append(_served(k, shape, images, selector.number))
            else:
                combos.append(_Combo(_join(f"{k:02d}", selector.name or ""), shape,
                                     problem=_missing(survey, shape, selector), band=selector.number))
    return combos


# --- colour composites ----------------------------------------------------------------------

def _triplet(rgb: RGBRequest, survey: Survey, datasets: Datasets) -> tuple[str, str, str]:
    bands = rgb.bands or datasets.rgb_bands.get(survey.name)
    if bands is None or len(bands) != 3:
        raise UsageError(f"survey {survey.name} has no default colour bands; give RGB=R,G,B")
    unknown = [b for b in bands if b not in survey.bands]
    if unknown:
        raise UsageError(f"RGB band {', '.join(unknown)} is not a band of survey {survey.name} "
                         f"(bands: {', '.join(survey.bands)})")
    return bands[0], bands[1], bands[2]


def _colour(base: str, shape: Shape | None, images: list[ImageRef | None],
            bands: tuple[str, str, str], where: str) -> _Combo:
    missing = [b for b, image in zip(bands, images, strict=True) if image is None]
    if missing:
        raise UsageError(f"RGB needs bands {','.join(bands)} but {where} has no {', '.join(missing)} image")
    found = tuple(i for i in images if i is not None)
    return _Combo(f"{base}_{''.join(bands)}", shape, found, colour=True)


def _plan_rgb(params: CutoutParams, datasets: Datasets, rgb: RGBRequest) -> list[_Combo]:
    """One colour composite per ID (its field in three bands) × position, or per position."""
    if params.filters or params.bands:
        raise UsageError("RGB chooses the bands; leave out FILTER and BAND")
    combos = []
    shapes: list[Shape | None] = list(params.shapes) or [None]
    single = len(shapes) == 1 and len(params.ids) == 1
    if params.ids:
        for i, dataset_id in enumerate(params.ids, start=1):
            image = _image(datasets, dataset_id)
            survey = datasets.surveys[image.survey]
            bands = _triplet(rgb, survey, datasets)
            images = [survey.sibling(image, b) for b in bands]
            for j, shape in enumerate(shapes, start=1):
                combos.append(_colour(_join(_where(i, j, single), image.tile), shape, images, bands, image.tile))
        return combos
    for k, shape in enumerate(params.shapes, start=1):
        survey, here = _here(datasets, shape)
        bands = _triplet(rgb, survey, datasets)
        found = {band: here[band] for band in bands if band in here}
        if not found:
            combos.append(_Combo(f"{k:02d}_{''.join(bands)}", shape,
                                 problem=f"no {survey.name} image holds {shape.dali()}"))
            continue
        tile = next(iter(found.values())).tile
        combos.append(_colour(f"{k:02d}_{tile}", shape, [found.get(b) for b in bands], bands, tile))
    return combos


# --- many positions (bulk jobs) -----------------------------------------------------------

@dataclass
class FieldGroup:
    """The rows one image field (DES tile, LSST patch) serves: each a target named by its row."""

    field: str
    members: list[tuple[int, Target]]  # (index into the caller's rows, its target)


@dataclass(frozen=True)
class Located:
    """Positions one field serves with the same images: compact, whatever their number."""

    field: str                      # "<survey>:<field>", e.g. "des:DES0139-4457"
    rows: np.ndarray                # indices into the caller's positions, ascending (int64)
    images: tuple[ImageRef, ...]    # what ``Survey.at`` gives each of them


def locate_positions(datasets: Datasets, ra: Sequence[float] | np.ndarray, dec: Sequence[float] | np.ndarray,
                     bands: Sequence[Sequence[str]]) -> tuple[list[Located], np.ndarray]:
    """Each position on the images of the first survey (in the settings' order) with an
    image there, in its ``bands`` (empty: every band it has there), in groups ordered by
    their first position; and the positions no survey serves (ascending indices).

    The surveys are asked once per group of positions (``Survey.at_many``: per field or
    sky cell), never once per position, and nothing is made per position but array entries.
    """
    ra, dec = np.asarray(ra, dtype=float), np.asarray(dec, dtype=float)
    first = tuple(bands[0]) if len(bands) else ()
    if all(b is bands[0] for b in bands) or all(tuple(b) == first for b in bands):
        selections = [(first, np.arange(len(ra), dtype=np.int64))]  # one for all: no list of rows
    else:
        by_bands: dict[tuple[str, ...], list[int]] = {}
        for i, b in enumerate(bands):
            by_bands.setdefault(tuple(b), []).append(i)
        selections = [(key, np.asarray(rows, dtype=np.int64)) for key, rows in by_bands.items()]
    found: list[Located] = []
    unserved: list[np.ndarray] = []
    for wanted, rows in selections:
        for survey in datasets.surveys.values():
            if not rows.size:
                break
            served = np.zeros(len(rows), dtype=bool)
            for idx, images in survey.at_many(ra[rows], dec[rows], wanted or survey.bands):
                served[idx] = True
                found.append(Located(f"{images[0].survey}:{images[0].tile}", rows[idx], tuple(images)))
            rows = rows[~served]
        unserved.append(rows)
    found.sort(key=lambda g: int(g.rows[0]))
    return found, np.sort(np.concatenate(unserved)) if unserved else np.zeros(0, dtype=np.int64)


def unserved_why(ra: float, dec: float, wanted: Sequence[str]) -> str:
    """Why a position has no target in ``locate_positions``."""
    return (f"no survey of this service has an image at ({ra:.6f}, {dec:.6f})"
            + (f" in band {', '.join(wanted)}" if wanted else ""))


def plan_positions(datasets: Datasets, ra: Sequence[float], dec: Sequence[float], radius: Sequence[float],
                   bands: Sequence[Sequence[str]]) -> tuple[list[FieldGroup], dict[int, str]]:
    """Each position's circle on the images ``locate_positions`` finds, grouped by field
    (fields in the order of their first position, each its positions in order); and why
    each position no survey serves has no target. A target per position: for the rows of
    one part of a job, not for a whole table."""
    located, unserved = locate_positions(datasets, ra, dec, bands)
    members: dict[str, list[tuple[int, Target]]] = {}
    for group in located:
        mine = members.setdefault(group.field, [])
        for i in group.rows.tolist():
            a, d = float(ra[i]), float(dec[i])
            mine.append((i, Target(name=str(i), shape=Circle(a, d, float(radius[i])), images=group.images)))
    groups = [FieldGroup(field, sorted(found, key=lambda m: m[0])) for field, found in members.items()]
    problems = {int(i): unserved_why(float(ra[i]), float(dec[i]), bands[i]) for i in unserved.tolist()}
    return groups, problems
