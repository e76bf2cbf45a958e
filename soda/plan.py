"""From SODA parameters to the list of cutouts to make (one per combination, SODA §6).

With ID: one target per (ID × position); BAND/FILTER/POL then filter the dataset
(a DES image has one band and is unpolarised, Stokes I). Without ID: one target per
(position × band) of the default survey, the image chosen by the tile whose unique
area holds the position's centre. A combination with no image keeps its place in the
list with the reason, so async jobs can report it as a result (SODA §6).
"""

from __future__ import annotations

from dataclasses import dataclass

from dali.errors import UsageError
from soda.request.params import CutoutParams
from soda.request.render import RGBRequest
from soda.sky.regions import Shape, centre
from soda.surveys.base import ImageRef, Survey
from soda.surveys.registry import Datasets


@dataclass(frozen=True)
class Target:
    name: str                 # unique within the request, meaningful: e.g. "01_DES0139-4457_r"
    shape: Shape | None       # None: the whole image
    image: ImageRef | None
    problem: str | None = None  # why this combination has no pixels
    rgb: tuple[ImageRef, ImageRef, ImageRef] | None = None  # a colour composite's R, G, B images


def _band_names(params: CutoutParams, survey: Survey) -> list[str]:
    unknown = [f for f in params.filters if f not in survey.bands]
    if unknown:
        raise UsageError(f"FILTER {', '.join(unknown)} is not a band of survey {survey.name} "
                         f"(bands: {', '.join(survey.bands)})")
    if not params.filters and not params.bands:
        return list(survey.bands)
    names = list(params.filters)
    for low, high in params.bands:
        names += [b for b in survey.bands_in(low, high) if b not in names]
    return names


def _id_problem(params: CutoutParams, image: ImageRef, survey: Survey) -> str | None:
    if params.filters and image.band not in params.filters:
        return f"dataset {image.dataset_id} is band {image.band}, not FILTER {','.join(params.filters)}"
    if params.bands:
        low, high = survey.band_range(image.band)
        if not any(lo <= high and hi >= low for lo, hi in params.bands):
            return f"dataset {image.dataset_id} ({low:.3g}-{high:.3g} m) does not overlap BAND"
    if params.pols and "I" not in params.pols:
        return f"dataset {image.dataset_id} is unpolarised (POL I only)"
    return None


def _image(datasets: Datasets, dataset_id: str) -> ImageRef:
    image = datasets.by_id(dataset_id)
    if image is None:
        raise UsageError(f"ID {dataset_id!r} names no dataset of this service")
    return image


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


def _name(label: str, i: int, j: int, single: bool) -> str:
    """Result names: the label alone for one cutout, numbered for several."""
    return label if single else f"{i:02d}-{j:02d}_{label}"


def plan(params: CutoutParams, datasets: Datasets, rgb: RGBRequest | None = None) -> list[Target]:
    if not params.ids and not params.shapes:
        raise UsageError("give ID, or a position (POS, CIRCLE or POLYGON) to cut around")
    if rgb is not None:
        return _plan_rgb(params, datasets, rgb)
    if params.ids:
        return _plan_ids(params, datasets)
    return _plan_positions(params, _default_survey(datasets))


def _triplet(rgb: RGBRequest, survey: Survey, datasets: Datasets) -> tuple[str, str, str]:
    bands = rgb.bands or datasets.rgb_bands.get(survey.name)
    if bands is None or len(bands) != 3:
        raise UsageError(f"survey {survey.name} has no default colour bands; give RGB=R,G,B")
    unknown = [b for b in bands if b not in survey.bands]
    if unknown:
        raise UsageError(f"RGB band {', '.join(unknown)} is not a band of survey {survey.name} "
                         f"(bands: {', '.join(survey.bands)})")
    return bands[0], bands[1], bands[2]


def _colour_target(name: str, shape: Shape | None, images: list[ImageRef | None],
                   bands: tuple[str, str, str], where: str) -> Target:
    missing = [b for b, image in zip(bands, images, strict=True) if image is None]
    if missing:
        raise UsageError(f"RGB needs bands {','.join(bands)} but {where} has no {', '.join(missing)} image")
    r, g, b = images
    assert r is not None and g is not None and b is not None
    return Target(f"{name}_{''.join(bands)}", shape, r, rgb=(r, g, b))


def _plan_rgb(params: CutoutParams, datasets: Datasets, rgb: RGBRequest) -> list[Target]:
    """One colour composite per ID (its field in three bands) or per position."""
    if params.filters or params.bands:
        raise UsageError("RGB chooses the bands; leave out FILTER and BAND")
    targets = []
    shapes: list[Shape | None] = list(params.shapes) or [None]
    single = len(shapes) == 1 and len(params.ids) == 1
    if params.ids:
        for i, dataset_id in enumerate(params.ids, start=1):
            image = _image(datasets, dataset_id)
            survey = datasets.surveys[image.survey]
            bands = _triplet(rgb, survey, datasets)
            images = [survey.sibling(image, b) for b in bands]
            for j, shape in enumerate(shapes, start=1):
                targets.append(_colour_target(_name(image.tile, i, j, single), shape, images, bands, image.tile))
        return targets
    survey = _default_survey(datasets)
    bands = _triplet(rgb, survey, datasets)
    for k, shape in enumerate(params.shapes, start=1):
        position = _position(shape)
        found = {image.band: image for image in survey.at(position[0], position[1], bands)}
        if not found:
            targets.append(Target(f"{k:02d}_{''.join(bands)}", shape, None,
                                  f"no {survey.name} image holds {shape.dali()}"))
            continue
        tile = next(iter(found.values())).tile
        targets.append(_colour_target(f"{k:02d}_{tile}", shape, [found.get(b) for b in bands], bands, tile))
    return targets


def _plan_ids(params: CutoutParams, datasets: Datasets) -> list[Target]:
    targets = []
    shapes: list[Shape | None] = list(params.shapes) or [None]
    single = len(shapes) == 1 and len(params.ids) == 1
    for i, dataset_id in enumerate(params.ids, start=1):
        image = _image(datasets, dataset_id)
        problem = _id_problem(params, image, datasets.surveys[image.survey])
        for j, shape in enumerate(shapes, start=1):
            name = _name(f"{image.tile}_{image.band}", i, j, single)
            targets.append(Target(name, shape, None if problem else image, problem))
    return targets


def _plan_positions(params: CutoutParams, survey: Survey) -> list[Target]:
    bands = _band_names(params, survey)
    if not bands:
        return [Target(f"{k:02d}", shape, None, "no band of this survey overlaps BAND")
                for k, shape in enumerate(params.shapes, start=1)]
    targets = []
    for k, shape in enumerate(params.shapes, start=1):
        position = _position(shape)
        found = {image.band: image for image in survey.at(position[0], position[1], bands)}
        for band in bands:
            image = found.get(band)
            if image is None:
                targets.append(Target(f"{k:02d}_{band}", shape, None,
                                      f"no {survey.name} {band}-band image holds {shape.dali()}"))
            else:
                targets.append(Target(f"{k:02d}_{image.tile}_{band}", shape, image))
    return targets
