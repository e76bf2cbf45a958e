"""The service root, ``/``: a short page for browsers, a plain list for everything else.

The page says what the service is, which surveys it serves (their dataset IDs, bands and
images), where its endpoints are, and where to log in, only when login is configured.
Every link is absolute from the public root, so it stays right behind a proxy prefix.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from lxml import etree
from lxml.html import builder as E
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response

from conf import Settings
from dali.http import Endpoint, public_base
from soda import VERSION
from soda.engine.cutout import ImageUnreadable
from soda.engine.footprint import footprint
from soda.ops.runtime import Runtime
from soda.surveys.base import Survey
from soda.web.vosi import VARY

log = logging.getLogger(__name__)

EXAMPLE_RADIUS = 0.01  # degrees: a cutout of about 270 pixels a side on DES tiles

# A few lines: readable on a phone, light or dark as the reader's system is.
CSS = """
:root { color-scheme: light dark; --fg: #1c1c1e; --bg: #fcfcfd; --muted: #5a5a60;
        --link: #0b57d0; --line: #d5d5da; --box: #f1f2f5; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6e6ea; --bg: #16171a; --muted: #a4a4ad; --link: #8ab4f8; --line: #3a3b40;
          --box: #222328; } }
body { font: 1rem/1.55 system-ui, sans-serif; color: var(--fg); background: var(--bg);
       max-width: 48rem; margin: 0 auto; padding: 1rem 1.25rem 3rem; }
h1 { font-size: clamp(1.6rem, 6vw, 2.2rem); line-height: 1.2; }
a { color: var(--link); }
code { font-size: .92em; overflow-wrap: anywhere; }
a code { white-space: nowrap; }
caption { text-align: left; color: var(--muted); }
.muted { color: var(--muted); }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; }
th, td { text-align: left; vertical-align: top; padding: .3rem .6rem .3rem 0;
         border-bottom: 1px solid var(--line); }
form { display: grid; gap: .6rem; max-width: 32rem; padding: .9rem; background: var(--box);
       border-radius: .5rem; }
label { display: grid; gap: .2rem; }
input, select, button { font: inherit; padding: .35rem .5rem; }
"""


@dataclass(frozen=True)
class Entry:
    path: str
    what: str


def endpoints(runtime: Runtime) -> list[Entry]:
    """The service's endpoints for people, in the order a newcomer needs them."""
    entries = [Entry("/sync", "SODA 1.0 cutouts, answered at once (GET or POST)")]
    entries += [Entry(path, f"UWS 1.1 job list: {kind.description}")
                for path, kind in runtime.mounts.items()]
    entries += [Entry("/query", "SIA 2.0: find images by position, band, survey (POS=CIRCLE ra dec r)")]
    entries += [Entry(f"/coverage/{name}.fits", f"the sky the {name} images cover: a MOC (FITS; "
                                                f"also /coverage/{name}.json)")
                for name in runtime.datasets.surveys]
    entries += [Entry("/links", "DataLink 1.1: the links of a dataset (ID=...)"),
                Entry("/capabilities", "VOSI 1.1 capabilities: what this service offers, for clients"),
                Entry("/availability", "VOSI 1.1 availability: is it up"),
                Entry("/whoami", "who the service takes you for")]
    if runtime.settings.auth.login_enabled:
        entries += [Entry("/login", "log in (in a browser), then make API tokens at /tokens"),
                    Entry("/tokens", "your API tokens for scripts and VO clients"),
                    Entry("/usage", "your jobs and result space against your quota")]
    return entries


def index_endpoint(runtime: Runtime) -> Endpoint:
    async def index(request: Request) -> Response:
        base = public_base(request, runtime.settings.ops.trust_forwarded_headers)
        headers = {"Vary": f"Accept, {VARY}"}  # the links are built from the forwarded headers
        if "text/html" in request.headers.get("accept", ""):
            page = await run_in_threadpool(front_page, runtime, base)
            return HTMLResponse(page, headers=headers)
        return PlainTextResponse(plain_list(runtime), headers=headers)
    return index


def plain_list(runtime: Runtime) -> str:
    lines = ["IVOA SODA 1.0 / UWS 1.1 cutout service", ""]
    lines += [f"{e.path}\t{e.what}" for e in endpoints(runtime)]
    return "\n".join(lines) + "\n"


# --- the page ------------------------------------------------------------------------------

def front_page(runtime: Runtime, base: str) -> str:
    settings = runtime.settings
    title = "Image cutouts: an IVOA SODA service"
    body = [E.H1(title), *_introduction(settings)]
    body.append(E.P("In a browser: the ", E.A("web interface", href=f"{base}/ui/cutout"),
                    " makes cutouts from a form with a preview, bulk jobs from a table of positions, "
                    "and lists your jobs."))
    body += _surveys(runtime, base)
    body += _endpoints(runtime, base)
    body += _login(settings, base)
    body += _documentation(base)
    body.append(E.P(E.CLASS("muted"), f"cutout-service {VERSION}"))
    doc = E.HTML(
        E.HEAD(E.META(charset="utf-8"),
               E.META(name="viewport", content="width=device-width, initial-scale=1"),
               E.TITLE(title), E.STYLE(CSS)),
        E.BODY(E.MAIN(*body)), lang="en")
    return etree.tostring(doc, method="html", encoding="unicode", doctype="<!DOCTYPE html>")


def _introduction(settings: Settings) -> list[Any]:
    limits = settings.limits
    intro = [E.P("Cut sub-images out of large survey images with the protocols astronomers' "
                 "tools already speak: pyvo, TOPCAT, Aladin or curl. A cutout is a FITS file "
                 "with every image plane cut on the same pixels, or a PNG or JPEG picture.")]
    if not limits.anonymous_access:
        intro.append(E.P("Every request needs a login."))
        return intro
    pixels = min(limits.anonymous_max_cutout_pixels, settings.soda.max_cutout_pixels)
    side = math.isqrt(pixels)
    square = f" ({side} × {side})" if side * side == pixels else ""
    files = "whole image files too" if limits.anonymous_files else "whole image files need a login"
    intro.append(E.P(
        f"Without logging in: cutouts of up to {pixels:,} pixels{square}, "
        f"{limits.anonymous_max_sync_cutouts} per request; {files}."))
    return intro


def _surveys(runtime: Runtime, base: str) -> list[Any]:
    section: list[Any] = [E.H2("Surveys")]
    datasets = runtime.datasets
    for name, survey in datasets.surveys.items():
        section += _survey(runtime, name, survey, base)
    if not datasets.surveys:
        section.append(E.P("No survey is configured."))
    return section


def _survey(runtime: Runtime, name: str, survey: Survey, base: str) -> list[Any]:
    authority = runtime.datasets.authority
    counts = survey.images_per_band()
    planes = ", ".join(runtime.settings.surveys[name].hdus)
    total = "" if counts is None else f"{sum(counts.values()):,} images; "
    rows = [E.TR(E.TH("band", scope="col"), E.TH("wavelength (nm)", scope="col"),
                 E.TH("images", scope="col"))]
    for band in survey.bands if counts is None else list(counts):
        low, high = survey.band_range(band)
        shown = "unknown" if counts is None else f"{counts[band]:,}"
        rows.append(E.TR(E.TD(band), E.TD(f"{low * 1e9:.0f} to {high * 1e9:.0f}"), E.TD(shown)))
    parts: list[Any] = [
        E.H3(name.upper()),
        E.P(total, "planes ", E.CODE(planes), "; dataset IDs ",
            E.CODE(f"ivo://{authority}/{name}?<image>"), " (IVOA authority ",
            E.CODE(authority), ")."),
        E.TABLE(E.CAPTION(f"Bands of {name.upper()}"), *rows),
    ]
    parts += _examples(runtime, survey, base)
    return parts


def _examples(runtime: Runtime, survey: Survey, base: str) -> list[Any]:
    """Links to try with one of the survey's images, and a cutout form around it."""
    image = survey.example()
    if image is None:
        return []
    links = f"{base}/links?{urlencode({'ID': image.dataset_id})}"
    parts: list[Any] = [E.P("Try it: the ", E.A(f"DataLink links of {image.tile} {image.band}", href=links),
                            " (a VOTable), or a cutout around its centre:")]
    try:
        ra, dec = footprint(image).centre
    except (ImageUnreadable, OSError) as exc:
        log.warning("front page: the example image %s cannot be read: %s", image.dataset_id, exc)
        return parts
    if survey is runtime.datasets.default:
        parts.append(_cutout_form(survey, base, f"CIRCLE {ra:.5f} {dec:.5f} {EXAMPLE_RADIUS}"))
    return parts


def _cutout_form(survey: Survey, base: str, pos: str) -> Any:
    """SODA §3.3 POS and our FILTER, answered by /sync: works without scripts."""
    bands = list(survey.images_per_band() or survey.bands)
    formats = (("image/png", "PNG picture"), ("image/jpeg", "JPEG picture"),
               ("application/fits", "FITS file"))
    return E.FORM(
        E.LABEL("Region (POS: CIRCLE ra dec radius, degrees ICRS)",
                E.INPUT(name="POS", value=pos, required="required", spellcheck="false")),
        E.LABEL("Band", E.SELECT(*[E.OPTION(b, value=b) for b in bands], name="FILTER")),
        E.LABEL("Format", E.SELECT(*[E.OPTION(text, value=mime) for mime, text in formats],
                                   name="RESPONSEFORMAT")),
        E.BUTTON("Cut", type="submit"),
        method="get", action=f"{base}/sync")


def _endpoints(runtime: Runtime, base: str) -> list[Any]:
    rows = [E.TR(E.TH("endpoint", scope="col"), E.TH("what", scope="col"))]
    rows += [E.TR(E.TD(E.A(E.CODE(e.path), href=base + e.path)), E.TD(e.what))
             for e in endpoints(runtime)]
    return [E.H2("Endpoints"), E.TABLE(*rows)]


def _login(settings: Settings, base: str) -> list[Any]:
    if not settings.auth.login_enabled:
        return []
    gains = "larger cutouts, your own job list" + ("" if settings.limits.anonymous_files else
                                                    " and whole image files")
    return [E.H2("Log in"),
            E.P(E.A("Log in", href=f"{base}/login"), f" for {gains}; then make an API token at ",
                E.A("/tokens", href=f"{base}/tokens"), " and send it from scripts and VO clients as ",
                E.CODE("Authorization: Bearer <token>"), ".")]


def _documentation(base: str) -> list[Any]:
    return [E.H2("Documentation"),
            E.P("VO clients read the service's description at ",
                E.A("/capabilities", href=f"{base}/capabilities"),
                "; pyvo, TOPCAT and Aladin find the cutout services of a dataset through its ",
                "DataLink links. The parameters, examples and the deployment notes are in the "
                "service's source: ", E.CODE("README.md"), " and ", E.CODE("docs/"), ".")]
