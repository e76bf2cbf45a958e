"""The cutout page: a form (survey, position, size, bands, format) whose request is shown
as a live preview, download links and the same request as curl and pyvo code.

The form's values become a SODA request here, in one place (``CutoutForm.sync_query``):
the page renders it, and the page's script asks ``/ui/cutout/request`` for it again as
the form changes. The survey only chooses which bands are offered: ``/sync`` serves a
position from the first survey that covers it (SODA §3.3 POS/CIRCLE).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dali.errors import UsageError
from dali.http import Endpoint
from soda.engine.cutout import ImageUnreadable
from soda.engine.footprint import footprint
from soda.surveys.base import Survey
from soda.web.pages.site import ALADIN, Site

log = logging.getLogger(__name__)

FORMATS = {"png": ("image/png", "PNG picture"), "jpeg": ("image/jpeg", "JPEG picture"),
           "fits": ("application/fits", "FITS file")}
DEFAULT_RADIUS_ARCSEC = 36.0  # 0.01°: about 270 DES pixels a side
MAX_RADIUS_ARCSEC = 3600.0    # the form's bound; the caller's pixel limit still applies at /sync
PREVIEW_SIZE = 400            # longest side of the preview picture, in pixels
MAX_FIELD = 100               # characters of any one field read


@dataclass(frozen=True)
class SurveyChoice:
    name: str
    bands: tuple[str, ...]
    rgb: tuple[str, ...]           # the survey's default colour triplet (R, G, B), if any
    centre: tuple[float, float] | None  # of its example image: the form's first position


@dataclass
class CutoutForm:
    survey: str
    ra: float | None
    dec: float | None
    radius: float                  # arcseconds
    bands: list[str]
    format: str
    errors: dict[str, str] = field(default_factory=dict)  # field name -> what is wrong

    def sync_query(self, choice: SurveyChoice, *, picture: str | None = None,
                   size: int | None = None) -> list[tuple[str, str]]:
        """The /sync parameters: the form's format, or ``picture`` (a media type)."""
        media = picture or FORMATS[self.format][0]
        pairs = [("CIRCLE", f"{self.ra:.6f} {self.dec:.6f} {self.radius / 3600:.6g}")]
        if media == "application/fits":
            pairs += [("FILTER", b) for b in self.bands]
        elif len(self.bands) == 3:  # a colour picture: reddest band as R
            order = [b for b in reversed(choice.bands) if b in self.bands]
            pairs.append(("RGB", ",".join(order)))
        elif self.bands:  # a survey without bands: its one image
            pairs.append(("FILTER", self.bands[0]))
        pairs.append(("RESPONSEFORMAT", media))
        if size is not None:
            pairs.append(("SIZE", str(size)))
        return pairs


CHOICES_KEPT = 60.0  # seconds: an ingest's new bands show within a minute


def survey_choices(site: Site) -> list[SurveyChoice]:
    """The configured surveys, their bands with images and a position to start from
    (kept a minute: the example's centre reads its image's headers)."""
    kept = site.kept.get("surveys")
    if kept is not None and time.monotonic() - kept[0] < CHOICES_KEPT:
        return list(kept[1])
    datasets = site.runtime.datasets
    choices = []
    for name, survey in datasets.surveys.items():
        counts = survey.images_per_band()
        bands = tuple(counts) if counts else tuple(survey.bands)
        choices.append(SurveyChoice(name, bands, tuple(datasets.rgb_bands.get(name, ())), _centre(survey)))
    site.kept["surveys"] = (time.monotonic(), choices)
    return choices


def _centre(survey: Survey) -> tuple[float, float] | None:
    image = survey.example()
    if image is None:
        return None
    try:
        ra, dec = footprint(image).centre
    except (ImageUnreadable, OSError) as exc:
        log.warning("cutout page: the example image %s cannot be read: %s", image.dataset_id, exc)
        return None
    return round(ra, 5), round(dec, 5)


def _number(form: CutoutForm, name: str, text: str | None, low: float, high: float, what: str) -> float | None:
    if text is None or not text.strip():
        form.errors[name] = f"{what} is required"
        return None
    try:
        value = float(text[:MAX_FIELD])
    except ValueError:
        form.errors[name] = f"{what} must be a number, not {text[:40]!r}"
        return None
    if not math.isfinite(value) or not low <= value <= high:
        form.errors[name] = f"{what} must be between {low:g} and {high:g}"
        return None
    return value


def read_form(query: Any, choices: list[SurveyChoice]) -> tuple[CutoutForm, SurveyChoice | None]:
    """The form's fields from a query string; every bad one named in ``errors``. With no
    position given, the survey's example position."""
    names = [c.name for c in choices]
    survey = (query.get("survey") or (names[0] if names else ""))[:MAX_FIELD]
    choice = next((c for c in choices if c.name == survey), None)
    form = CutoutForm(survey, None, None, DEFAULT_RADIUS_ARCSEC, [], (query.get("format") or "png")[:MAX_FIELD])
    if choice is None:
        form.errors["survey"] = (f"no survey {survey!r} here; choose one of {', '.join(names)}"
                                 if names else "this service has no survey configured")
        return form, None
    given = query.get("ra") is not None or query.get("dec") is not None
    if not given and choice.centre is not None:
        form.ra, form.dec = choice.centre
    else:
        form.ra = _number(form, "ra", query.get("ra"), 0, 360, "RA (degrees)")
        form.dec = _number(form, "dec", query.get("dec"), -90, 90, "Dec (degrees)")
    if query.get("radius") is not None:
        form.radius = _number(form, "radius", query.get("radius"), 0.1, MAX_RADIUS_ARCSEC,
                              "Radius (arcseconds)") or DEFAULT_RADIUS_ARCSEC
    bands = [b[:MAX_FIELD] for b in query.getlist("band")][:len(choice.bands) + 1]
    if not bands:
        bands = [choice.bands[0]] if choice.bands else []
    unknown = [b for b in bands if b not in choice.bands]
    if unknown:
        form.errors["band"] = (f"{choice.name} has no band {unknown[0]!r}; its bands are "
                               f"{', '.join(choice.bands)}")
    form.bands = [b for b in choice.bands if b in bands]  # the survey's order, each once
    if form.format not in FORMATS:
        form.errors["format"] = f"format must be one of {', '.join(FORMATS)}, not {form.format[:40]!r}"
        form.format = "png"
    elif form.format != "fits" and choice.bands and len(form.bands) not in (1, 3) and "band" not in form.errors:
        form.errors["band"] = "a picture shows one band (grey) or three (colour); choose 1 or 3 bands, or FITS"
    return form, choice


@dataclass(frozen=True)
class Described:
    """The form's request in every shape the page shows it."""

    url: str        # the request in the form's format
    preview: str    # a small PNG of it
    fits: str
    png: str
    curl: str
    pyvo: str


def describe(form: CutoutForm, choice: SurveyChoice, base: str) -> Described:
    sync = base + "/sync"

    def url(pairs: list[tuple[str, str]]) -> str:
        return f"{sync}?{urlencode(pairs)}"

    picture = "image/png" if len(form.bands) in (1, 3) else None
    pairs = form.sync_query(choice)
    fits_pairs = form.sync_query(choice, picture="application/fits")
    png_pairs = form.sync_query(choice, picture="image/png") if picture else []
    preview_bands = form if picture else CutoutForm(form.survey, form.ra, form.dec, form.radius,
                                                    form.bands[:1], "png")
    suffix = {"png": "png", "jpeg": "jpg", "fits": "fits"}[form.format]
    curl = f"curl -fsS -o cutout.{suffix} '{url(pairs)}'"
    lines = ["from pyvo.dal.adhoc import SodaQuery", "",
             f"query = SodaQuery({sync!r}, circle=({form.ra:.6f}, {form.dec:.6f}, {form.radius / 3600:.6g}))"]
    lines += [f"query[{name!r}] = {value!r}" for name, value in _grouped(pairs[1:])]
    lines += [f"with open('cutout.{suffix}', 'wb') as out:",
              "    out.write(query.execute_stream().read())"]
    return Described(url=url(pairs), preview=url(preview_bands.sync_query(choice, picture="image/png",
                                                                              size=PREVIEW_SIZE)),
                     fits=url(fits_pairs), png=url(png_pairs) if png_pairs else "",
                     curl=curl, pyvo="\n".join(lines))


def _grouped(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Repeated parameters (FILTER) as one comma-separated value, which /sync also takes."""
    values: dict[str, list[str]] = {}
    for name, value in pairs:
        values.setdefault(name, []).append(value)
    return [(name, ",".join(v)) for name, v in values.items()]


def page(site: Site) -> Endpoint:
    async def cutout(request: Request) -> Response:
        caller = await site.caller(request)
        choices = await run_in_threadpool(survey_choices, site)
        form, choice = read_form(request.query_params, choices)
        described = (describe(form, choice, site.base(request))
                     if choice is not None and not form.errors else None)
        limits = site.settings.limits
        anonymous_pixels = min(limits.anonymous_max_cutout_pixels, site.settings.soda.max_cutout_pixels)
        return site.render(request, "cutout.html", caller, 400 if form.errors else 200,
                           form=form, choices=choices, choice=choice, described=described,
                           formats=FORMATS, aladin=ALADIN.exists(), anonymous_pixels=anonymous_pixels,
                           max_radius=MAX_RADIUS_ARCSEC)
    return cutout


def described(site: Site) -> Endpoint:
    """The page's script: the form's request as JSON, or the fields that are wrong (400)."""
    async def request_of(request: Request) -> Response:
        choices = await run_in_threadpool(survey_choices, site)
        form, choice = read_form(request.query_params, choices)
        if choice is None or form.errors:
            first = next(iter(form.errors.values()))
            return JSONResponse({"error": UsageError(first).text, "fields": form.errors}, status_code=400)
        return JSONResponse(describe(form, choice, site.base(request)).__dict__)
    return request_of
