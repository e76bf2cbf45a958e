"""SIA 2.0 {query} (SIA 2.0 §2): images of the catalogue by position, band, time and the
other ObsCore constraints, answered as DataLink-enabled ObsCore rows (``obscore.py``).

Candidates come from the image catalogue (``ImageCatalogue.search``) by the circle
covering each POS value, or by dataset ID, or the whole sky; each is then tested against
every constraint exactly (``soda.sky.footprint.meets`` for POS). A survey whose coverage
map (``coverage.py``) every POS value's covering circle misses is not searched at all: the
answer "outside the survey" costs no index lookup once its map is made. Values of one parameter OR, and
parameters AND (SIA 2.0 §2.1). A constraint on a column that is null for an image (TIME
on a coadd: ObsCore has no time for it) does not match it, as the same condition on the
ObsCore table would not (SIA 2.0 §2.1 defines the parameters as constraints on ObsCore).

The answer is bounded (DALI §3.2.4): at most MAXREC rows (default and hard limit in the
settings), with OVERFLOW when truncated; at most ``sia_scan_limit`` images are read from
the index per POS value (OVERFLOW too when that limit was reached), and every parameter
takes at most ``sia_max_values`` values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from dali import votable
from dali.http import ErrorFormat, public_base, read_params
from dali.standards import DATALINK_TYPE
from soda.ops.runtime import Runtime
from soda.request.params import ShapeLimits
from soda.request.sia import SiaLimits, SiaQuery, parse_sia
from soda.sky.coverage import misses
from soda.sky.footprint import covering_circle, meets
from soda.sky.regions import Circle
from soda.surveys.catalogue import CatalogueImage, ImageCatalogue
from soda.web.coverage import CoverageMaps
from soda.web.obscore import ObsRow, answer, obs_row

# DALI §4.2, §4.4.2: a VOTable service answers errors as a VOTable with QUERY_STATUS=ERROR.
ERRORS = ErrorFormat(votable.VOTABLE_TYPE, lambda error: votable.error_document(error.text))
# FORMAT (SIA 2.0 §2.1.16) matches what a row's links lead to: its DataLink document, the
# whole FITS file and SODA FITS cutouts, PNG/JPEG previews.
OFFERED_FORMATS = frozenset({DATALINK_TYPE.lower(), "application/x-votable+xml", "application/fits",
                             "image/fits", "image/png", "image/jpeg"})
VARY = "Host, X-Forwarded-Proto, X-Forwarded-Host, X-Forwarded-Prefix"


def sia_limits(runtime: Runtime) -> SiaLimits:
    soda = runtime.settings.soda
    return SiaLimits(maxrec_default=min(soda.sia_maxrec_default, soda.sia_maxrec_limit),
                     maxrec_limit=soda.sia_maxrec_limit, max_values=soda.sia_max_values,
                     shapes=ShapeLimits(soda.max_request_shapes, soda.max_polygon_vertices,
                                        soda.max_request_polygon_vertices))


@dataclass(frozen=True)
class Found:
    rows: list[ObsRow]
    overflow: bool


class SiaQueryService:
    def __init__(self, runtime: Runtime, maps: CoverageMaps) -> None:
        self.runtime = runtime
        self.maps = maps
        self.limits = sia_limits(runtime)
        self.scan_limit = runtime.settings.soda.sia_scan_limit

    async def query(self, request: Request) -> Response:
        params = await read_params(request)
        query = parse_sia(params.pairs, self.limits)
        base = public_base(request, self.runtime.settings.ops.trust_forwarded_headers)
        if query.maxrec == 0:  # DALI §3.2.4: metadata only, with the overflow indicator
            body = answer([], base, overflow=True)
        else:
            found = await run_in_threadpool(self.find, query, base)
            body = answer(found.rows, base, found.overflow)
        return Response(body, media_type=votable.VOTABLE_TYPE, headers={"Vary": VARY})

    def find(self, query: SiaQuery, base: str) -> Found:
        catalogue = self.runtime.catalogue  # the image index (soda/index), read at each query
        surveys = self.runtime.datasets.surveys
        names = [s for s in surveys if not query.collections or s in query.collections]
        circles = [covering_circle(s) for s in query.shapes]
        if circles:  # only the POS values that meet a survey's map, in the surveys they meet
            mocs = {n: self.maps.moc(catalogue, n) for n in names}  # one version check each
            hit = {(n, k) for n in names for k, c in enumerate(circles)
                   if not misses(mocs[n], c.ra, c.dec, c.radius)}
            names = [n for n in names if any((n, k) in hit for k in range(len(circles)))]
            circles = [c for k, c in enumerate(circles) if any((n, k) in hit for n in names)]
        images, truncated = self._candidates(catalogue, query, names, circles)
        authority = self.runtime.settings.soda.ivoa_authority
        rows: list[ObsRow] = []
        for image in sorted(images.values(), key=lambda i: (i.survey, i.name)):
            if query.shapes and not any(meets(image.footprint.vertices, s) for s in query.shapes):
                continue
            row = obs_row(image, surveys.get(image.survey), authority, base)
            if matches(row, query):
                rows.append(row)
        overflow = truncated or len(rows) > query.maxrec
        return Found(rows[:query.maxrec], overflow)

    def _candidates(self, catalogue: ImageCatalogue, query: SiaQuery, surveys: Sequence[str],
                    circles: Sequence[Circle]) -> tuple[dict[tuple[str, str], CatalogueImage], bool]:
        found: dict[tuple[str, str], CatalogueImage] = {}
        if not surveys:
            return found, False
        if query.ids and not query.shapes:
            for did in query.ids:
                survey_name = self._survey_of(did)
                if survey_name in surveys:
                    image = catalogue.get(survey_name, did.split("?", 1)[1])
                    if image is not None:
                        found[(image.survey, image.name)] = image
            return found, False
        truncated = False
        for circle in circles or [None]:
            ra, dec, radius = (0.0, 90.0, 180.0) if circle is None else (circle.ra, circle.dec, circle.radius)
            hits = catalogue.search(list(surveys), ra, dec, radius, self.scan_limit)
            truncated |= len(hits) >= self.scan_limit
            for image in hits:
                found[(image.survey, image.name)] = image
        return found, truncated

    def _survey_of(self, did: str) -> str | None:
        """The survey a publisher DID ivo://<authority>/<survey>?<name> names (IVOA
        Identifiers 2.0 §2: the authority is case-insensitive)."""
        prefix = f"ivo://{self.runtime.settings.soda.ivoa_authority}/".lower()
        if not did.lower().startswith(prefix) or "?" not in did:
            return None
        return did[len(prefix):].split("?", 1)[0]


def _within(value: object, intervals: Sequence[tuple[float, float]]) -> bool:
    return isinstance(value, (int, float)) and any(low <= value <= high for low, high in intervals)


def _overlaps(low: object, high: object, intervals: Sequence[tuple[float, float]]) -> bool:
    if not isinstance(low, (int, float)) or not isinstance(high, (int, float)):
        return False
    return any(a <= high and b >= low for a, b in intervals)


def matches(row: ObsRow, query: SiaQuery) -> bool:
    """SIA 2.0 §2.1: every parameter given holds (AND), each by any of its values (OR).
    A null column satisfies no constraint."""
    checks: list[tuple[bool, Callable[[], bool]]] = [
        # §2.1.2 BAND, §2.1.3 TIME: the intervals overlap the image's coverage.
        (bool(query.bands), lambda: _overlaps(row["em_min"], row["em_max"], query.bands)),
        (bool(query.times), lambda: _overlaps(row["t_min"], row["t_max"], query.times)),
        # §2.1.4 POL: the image has one of the states.
        (bool(query.pols), lambda: row["pol_states"] is not None and any(
            p in str(row["pol_states"]).strip("/").split("/") for p in query.pols)),
        # §2.1.5-2.1.7 FOV, SPATRES, EXPTIME: the value lies in an interval.
        (bool(query.fovs), lambda: _within(row["s_fov"], query.fovs)),
        (bool(query.spatres), lambda: _within(row["s_resolution"], query.spatres)),
        (bool(query.exptimes), lambda: _within(row["t_exptime"], query.exptimes)),
        # §2.1.10 ID: IVOA identifiers compare case-insensitively.
        (bool(query.ids), lambda: str(row["obs_publisher_did"]).lower() in {i.lower() for i in query.ids}),
        # §2.1.11-2.1.15: exact values.
        (bool(query.collections), lambda: row["obs_collection"] in query.collections),
        (bool(query.facilities), lambda: row["facility_name"] in query.facilities),
        (bool(query.instruments), lambda: row["instrument_name"] in query.instruments),
        (bool(query.dptypes), lambda: row["dataproduct_type"] in query.dptypes),
        (bool(query.calibs), lambda: row["calib_level"] in query.calibs),
        (bool(query.targets), lambda: str(row["target_name"]).lower() in {t.lower() for t in query.targets}),
        # §2.1.16 FORMAT: a format the row's links offer (MIME parameters and case aside,
        # except the DataLink content parameter).
        (bool(query.formats), lambda: any(_format(f) in OFFERED_FORMATS for f in query.formats)),
    ]
    return all(check() for given, check in checks if given)


def _format(value: str) -> str:
    text = value.strip().lower().replace(" ", "")
    return text if text == DATALINK_TYPE.lower() else text.split(";")[0]
