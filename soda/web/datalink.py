"""DataLink 1.1 {links} with SODA service descriptors, and the full-image downloads.

For every ID the table has a ``#this`` row (the whole image file), and ``#cutout`` rows
pointing at a sync and an async SODA service descriptor whose VALUES come from that
image's real footprint and band (SODA §4.2). Descriptors take ID by ``ref`` to the
table's ID field, so a client can use any row's descriptor on that row.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

from lxml import etree
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from dali import votable
from dali.errors import ServiceError, ServiceUnavailable, UsageError, not_found
from dali.http import public_base, read_params
from dali.standards import DATALINK_LINKS, DATALINK_TYPE, SODA_ASYNC, SODA_SYNC
from soda.engine.cutout import ImageUnreadable
from soda.engine.footprint import Footprint, footprint
from soda.surveys.base import ImageRef
from soda.surveys.registry import Datasets

log = logging.getLogger(__name__)

PREVIEW_SIZE = 512
MAX_IDS = 100  # DataLink §2.1.1: the service may limit the IDs of one request (then OVERFLOW)
# DataLink §2.1.2: the standard output is asked for by these (MIME parameters stripped).
VOTABLE_FORMATS = {"votable", "application/x-votable+xml"}

# DataLink §3.2: name, datatype, extra attributes.
FIELDS = (
    ("ID", "char", {"ucd": "meta.id;meta.main", "ID": "ID"}),
    ("access_url", "char", {"ucd": "meta.ref.url"}),
    ("service_def", "char", {"ucd": "meta.ref"}),
    ("error_message", "char", {"ucd": "meta.code.error"}),
    ("description", "char", {"ucd": "meta.note"}),
    ("semantics", "char", {"ucd": "meta.code"}),
    ("content_type", "char", {"ucd": "meta.code.mime"}),
    ("content_length", "long", {"ucd": "phys.size;meta.file", "unit": "byte"}),
)


@dataclass(frozen=True)
class Row:
    id: str
    semantics: str
    access_url: str = ""
    service_def: str = ""
    error_message: str = ""
    description: str = ""
    content_type: str = ""
    content_length: int | None = None


_e = votable.element


def _fault(error: ServiceError) -> str:
    """DataLink §3.4: whole-request errors start with a DataLink fault name."""
    if error.status == 404:
        label = "NotFoundFault"
    elif isinstance(error, ServiceUnavailable):
        label = "TransientFault"
    elif error.status < 500:
        label = "UsageFault"
    else:
        label = "FatalFault"
    return f"{label}: {error.message}"


class Links:
    def __init__(self, datasets: Datasets, trust_forwarded: bool) -> None:
        self.datasets = datasets
        self.trust_forwarded = trust_forwarded

    # --- /files --------------------------------------------------------------------------

    async def files(self, request: Request) -> Response:
        """The whole image a dataset ID names, as stored (the ``#this`` link)."""
        dataset_id = (await read_params(request)).single("ID")
        if not dataset_id:
            raise UsageError("ID is required")
        image = self.datasets.by_id(dataset_id)
        if image is None or not image.path.is_file():
            raise not_found(f"ID {dataset_id!r} names no dataset of this service")
        return FileResponse(image.path, media_type="application/fits", filename=image.path.name)

    # --- /links --------------------------------------------------------------------------

    async def links(self, request: Request) -> Response:
        try:
            params = await read_params(request)
            fmt = params.single("RESPONSEFORMAT")
            if fmt is not None and fmt.split(";")[0].strip().lower() not in VOTABLE_FORMATS:
                raise UsageError(f"RESPONSEFORMAT {fmt!r} is not offered; {{links}} answers "
                                 f"VOTable ({DATALINK_TYPE})")
            ids = params.all("ID")
        except ServiceError as error:
            return self._error(error)
        base = public_base(request, self.trust_forwarded)
        body = await run_in_threadpool(self.document, ids, base)
        return Response(body, media_type=DATALINK_TYPE)

    def _error(self, error: ServiceError) -> Response:
        """DataLink §3.4: for VOTable output the error document MUST be a VOTable."""
        return Response(votable.error_document(_fault(error)), status_code=error.status,
                        media_type=votable.VOTABLE_TYPE)

    def document(self, ids: list[str], base: str) -> bytes:
        overflow = len(ids) > MAX_IDS
        rows: list[Row] = []
        descriptors: list[tuple[str, str, str, ImageRef | None, Footprint | None]] = []
        for number, dataset_id in enumerate(ids[:MAX_IDS], start=1):
            rows += self._rows_for(dataset_id, number, base, descriptors)
        if not ids:  # DataLink §2.1.1: no ID is a normal, empty response (with generic descriptors)
            descriptors += [("soda-sync", SODA_SYNC, f"{base}/sync", None, None),
                            ("soda-async", SODA_ASYNC, f"{base}/async", None, None)]
        root = votable.root()
        results = _e(root, "RESOURCE", type="results")
        _e(results, "INFO", name="QUERY_STATUS", value="OK")
        _e(results, "INFO", name="standardID", value=DATALINK_LINKS)  # DataLink §3.3.1
        self._table(results, rows)
        if overflow:  # DALI §4.4.1
            _e(results, "INFO", name="QUERY_STATUS", value="OVERFLOW").text = \
                f"only the first {MAX_IDS} IDs were processed"
        for xml_id, standard, url, image, fp in descriptors:
            self._descriptor(root, xml_id, standard, url, image, fp)
        return votable.serialize(root)

    def _rows_for(self, dataset_id: str, number: int, base: str, descriptors: list) -> list[Row]:  # type: ignore[type-arg]
        image = self.datasets.by_id(dataset_id)
        if image is None:
            return [Row(dataset_id, "#this", error_message=f"NotFoundFault: {dataset_id} is not a dataset of this service")]
        try:
            fp = footprint(image)
            size = image.path.stat().st_size
        except (ImageUnreadable, OSError) as exc:
            log.error("links for %s: %s", dataset_id, exc)
            return [Row(dataset_id, "#this", error_message=f"FatalFault: the image of {dataset_id} cannot be read")]
        sync_id, async_id = f"soda-sync-{number}", f"soda-async-{number}"
        descriptors += [(sync_id, SODA_SYNC, f"{base}/sync", image, fp),
                        (async_id, SODA_ASYNC, f"{base}/async", image, fp)]
        what = f"{image.survey.upper()} image {image.tile}, {image.band} band ({', '.join(image.hdus)})"
        return [
            Row(dataset_id, "#this", access_url=f"{base}/files?ID={quote(dataset_id, safe='')}",
                description=f"the whole {what}, tile-compressed FITS", content_type="application/fits",
                content_length=size),
            Row(dataset_id, "#preview", access_url=f"{base}/sync?ID={quote(dataset_id, safe='')}"
                f"&RESPONSEFORMAT=image%2Fpng&SIZE={PREVIEW_SIZE}",
                description=f"a {PREVIEW_SIZE}-pixel PNG preview of the whole image (science plane)",
                content_type="image/png"),
            Row(dataset_id, "#cutout", service_def=sync_id, content_type="application/fits",
                description=f"SODA cutouts of the {what}, answered at once"),
            Row(dataset_id, "#cutout", service_def=async_id, content_type="application/fits",
                description=f"SODA cutouts of the {what}, as a UWS job"),
        ]

    def _table(self, resource: etree._Element, rows: Iterable[Row]) -> None:
        table = _e(resource, "TABLE")
        for name, datatype, extra in FIELDS:
            attrs = {"name": name, "datatype": datatype, **extra}
            if datatype == "char":
                attrs["arraysize"] = "*"
            _e(table, "FIELD", **attrs)
        data = _e(_e(table, "DATA"), "TABLEDATA")
        for row in rows:
            tr = _e(data, "TR")
            for value in (row.id, row.access_url, row.service_def, row.error_message, row.description,
                          row.semantics, row.content_type,
                          "" if row.content_length is None else str(row.content_length)):
                _e(tr, "TD").text = value or None

    def _descriptor(self, root: etree._Element, xml_id: str, standard: str, url: str,
                    image: ImageRef | None, fp: Footprint | None) -> None:
        """SODA §4 / DataLink §4: a service descriptor with three-factor inputParams."""
        resource = _e(root, "RESOURCE", type="meta", utype="adhoc:service", ID=xml_id, name=xml_id)
        kind = "synchronous" if standard == SODA_SYNC else "asynchronous (UWS)"
        _e(resource, "DESCRIPTION").text = f"SODA 1.0 {kind} cutout service"
        _e(resource, "PARAM", name="standardID", datatype="char", arraysize="*", value=standard)
        _e(resource, "PARAM", name="accessURL", datatype="char", arraysize="*", value=url)
        group = _e(resource, "GROUP", name="inputParams")
        _e(group, "PARAM", name="ID", datatype="char", arraysize="*", ucd="meta.ref.url;meta.curation",
           value="", ref="ID")
        circle = _e(group, "PARAM", name="CIRCLE", datatype="double", arraysize="3", xtype="circle",
                    unit="deg", ucd="pos.outline;obs", value="")
        # Not a SODA parameter (SODA §3.3.1 has RANGE only inside POS), but Aladin Lite sends it
        # on its own. Its type is DALI 1.2's range (double[4]: ra1 ra2 dec1 dec2); the xtype
        # "range" is left out because DALI 1.1, the REC, has no such xtype (validators warn).
        range_ = _e(group, "PARAM", name="RANGE", datatype="double", arraysize="4",
                    unit="deg", ucd="pos.outline;obs", value="")
        _e(range_, "DESCRIPTION").text = "ra1 ra2 dec1 dec2 (ICRS degrees; -Inf/+Inf open), as POS=RANGE"
        polygon = _e(group, "PARAM", name="POLYGON", datatype="double", arraysize="*", xtype="polygon",
                     unit="deg", ucd="pos.outline;obs", value="")
        _e(group, "PARAM", name="POS", datatype="char", arraysize="*", ucd="pos.outline;obs", value="")
        band = _e(group, "PARAM", name="BAND", datatype="double", arraysize="2", xtype="interval",
                  unit="m", ucd="em.wl;stat.interval", value="")
        filt = _e(group, "PARAM", name="FILTER", datatype="char", arraysize="*", ucd="instr.filter", value="")
        _e(filt, "DESCRIPTION").text = "band names, e.g. g,r,i"
        pol = _e(group, "PARAM", name="POL", datatype="char", arraysize="*",
                 ucd="meta.code;phys.polarization", value="")
        _e(_e(pol, "VALUES"), "OPTION", value="I")  # SODA §4.2: only values with results
        fmt = _e(group, "PARAM", name="RESPONSEFORMAT", datatype="char", arraysize="*",
                 ucd="meta.code.mime", value="")
        formats = _e(fmt, "VALUES")
        for mime in ("application/fits", "image/png", "image/jpeg"):
            _e(formats, "OPTION", value=mime)
        if image is None or fp is None:
            survey = self.datasets.default
            if survey is not None:
                lows, highs = zip(*(survey.band_range(b) for b in survey.bands), strict=True)
                self._band_values(band, min(lows), max(highs))
                values = _e(filt, "VALUES")
                for name in survey.bands:
                    _e(values, "OPTION", value=name)
            return
        # SODA §4.2: CIRCLE and POLYGON carry only MAX, a covering shape.
        ra, dec = fp.centre
        _e(_e(circle, "VALUES"), "MAX", value=f"{ra:.7f} {dec:.7f} {fp.radius * 1.0001:.7f}")
        _e(_e(polygon, "VALUES"), "MAX", value=" ".join(f"{r:.7f} {d:.7f}" for r, d in fp.corners))
        covering = self._covering_range(fp)
        if covering is not None:
            _e(_e(range_, "VALUES"), "MAX", value=" ".join(f"{v:.7f}" for v in covering))
        survey = self.datasets.surveys[image.survey]
        self._band_values(band, *survey.band_range(image.band))
        _e(_e(filt, "VALUES"), "OPTION", value=image.band)

    @staticmethod
    def _band_values(param: etree._Element, low: float, high: float) -> None:
        values = _e(param, "VALUES")
        _e(values, "MIN", value=f"{low:.4g}")
        _e(values, "MAX", value=f"{high:.4g}")

    @staticmethod
    def _covering_range(fp: Footprint) -> tuple[float, float, float, float] | None:
        """The RA/Dec box around the covering circle, as RANGE MAX (like CIRCLE's, SODA §4.2);
        None when it would cross RA 0 or a pole, which a RANGE here cannot (ra1 <= ra2)."""
        ra, dec = fp.centre
        radius = fp.radius * 1.0001
        if abs(dec) + radius >= 90.0:
            return None
        half = math.degrees(math.asin(min(1.0, math.sin(math.radians(radius)) / math.cos(math.radians(dec)))))
        if ra - half < 0.0 or ra + half > 360.0:
            return None
        return ra - half, ra + half, dec - radius, dec + radius
