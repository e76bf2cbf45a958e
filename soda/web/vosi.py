"""VOSI 1.1 capabilities (§3.1) and availability (§3.2).

Every access URL is absolute and computed per request from the public service root, so
the documents stay right behind a reverse proxy (SODA §2.1: the endpoints are siblings).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from email.utils import format_datetime, parsedate_to_datetime

from lxml import etree
from starlette.requests import Request
from starlette.responses import Response

from dali.http import XML_TYPE, Endpoint, public_base, xml_response
from dali.standards import (
    DATALINK_LINKS,
    DATALINK_TYPE,
    SODA_ASYNC,
    SODA_SYNC,
    UWS_REST,
    VOSI_AVAILABILITY,
    VOSI_CAPABILITIES,
)
from dali.votable import VOTABLE_TYPE
from soda.ops.health import Check, UpSince, now_in_seconds
from soda.ops.runtime import Runtime
from soda.web.obscore import SIA_QUERY
from uws.kinds import JobKind

VOSI_CAPABILITIES_NS = "http://www.ivoa.net/xml/VOSICapabilities/v1.0"
VOSI_AVAILABILITY_NS = "http://www.ivoa.net/xml/VOSIAvailability/v1.0"
VS_NS = "http://www.ivoa.net/xml/VODataService/v1.1"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"


SODA_ASYNC_PATH = "/async"
# The capabilities document depends on these request headers (through public_base).
VARY = "Host, X-Forwarded-Proto, X-Forwarded-Host, X-Forwarded-Prefix"


# --- capabilities ---------------------------------------------------------------------------

def capabilities_document(base: str, mounts: Mapping[str, JobKind], *, sia: bool = False) -> bytes:
    """VOSI §3.1 capabilities of a service whose public root is ``base`` (no trailing slash);
    ``sia``: the SIA 2.0 query is offered (the service's own: its runtime always holds the image index)."""
    root = etree.Element(f"{{{VOSI_CAPABILITIES_NS}}}capabilities",
                         nsmap={"vosi": VOSI_CAPABILITIES_NS, "vs": VS_NS, "xsi": XSI_NS})
    # VOSI §4: use="full" and no securityMethod: anyone may read these two.
    _interface(_capability(root, VOSI_CAPABILITIES), f"{base}/capabilities", use="full", version="1.1")
    _interface(_capability(root, VOSI_AVAILABILITY), f"{base}/availability", use="full", version="1.1")
    _interface(_capability(root, SODA_SYNC), f"{base}/sync", use="base", version="1.0",
               query_types=("GET", "POST"))
    if sia:
        _sia(root, base)
    _datalink(root, base)
    for path, kind in mounts.items():
        _job_list(root, f"{base}{path}", kind, soda=path == SODA_ASYNC_PATH)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _capability(parent: etree._Element, standard_id: str, description: str = "") -> etree._Element:
    # Capability and its children are unqualified (VOResource elementFormDefault).
    capability = etree.SubElement(parent, "capability", standardID=standard_id)
    if description:
        etree.SubElement(capability, "description").text = description
    return capability


def _interface(capability: etree._Element, url: str, *, use: str, version: str,
               query_types: Iterable[str] = (), result_type: str | None = None) -> etree._Element:
    """A vs:ParamHTTP interface; children in the schema's order (accessURL, queryType*, resultType?)."""
    interface = etree.SubElement(capability, "interface", role="std", version=version)
    interface.set(f"{{{XSI_NS}}}type", "vs:ParamHTTP")
    etree.SubElement(interface, "accessURL", use=use).text = url
    for query_type in query_types:
        etree.SubElement(interface, "queryType").text = query_type
    if result_type:
        etree.SubElement(interface, "resultType").text = result_type
    return interface


def _param(interface: etree._Element, name: str, description: str, *, use: str,
           ucd: str | None = None, datatype: str | None = None) -> None:
    param = etree.SubElement(interface, "param", std="true", use=use)
    etree.SubElement(param, "name").text = name
    etree.SubElement(param, "description").text = description
    if ucd:
        etree.SubElement(param, "ucd").text = ucd
    if datatype:
        etree.SubElement(param, "dataType").text = datatype


def _datalink(root: etree._Element, base: str) -> None:
    """DataLink 1.1 §2.2: the {links} endpoint, declared as in the standard's example."""
    interface = _interface(_capability(root, DATALINK_LINKS), f"{base}/links", use="base",
                           version="1.1", query_types=("GET", "POST"), result_type=DATALINK_TYPE)
    _param(interface, "ID", "publisher dataset identifier", use="required",
           ucd="meta.id;meta.main", datatype="string")
    _param(interface, "RESPONSEFORMAT", "the links in this tabular format (VOTable only)",
           use="optional")


# SIA 2.0 §2.1: the query parameters; name, description, UCD, VODataService data type.
SIA_PARAMS = (
    ("POS", "positions: CIRCLE ra dec radius, RANGE ra1 ra2 dec1 dec2 or POLYGON ra dec ... (deg)",
     "pos.outline;obs", "string"),
    ("BAND", "wavelength interval (m): low high", "em.wl;stat.interval", "real"),
    ("TIME", "time interval (MJD): low high", "time.interval;obs.exposure", "real"),
    ("POL", "polarization state (ObsCore pol_states)", "meta.code;phys.polarization", "string"),
    ("FOV", "field of view interval (deg): low high", "phys.angSize;instr.fov", "real"),
    ("SPATRES", "spatial resolution interval (arcsec): low high", "pos.angResolution", "real"),
    ("EXPTIME", "exposure time interval (s): low high", "time.duration;obs.exposure", "real"),
    ("ID", "publisher dataset identifier", "meta.ref.ivoid", "string"),
    ("COLLECTION", "survey name (obs_collection)", "meta.id", "string"),
    ("FACILITY", "facility name", "meta.id;instr.tel", "string"),
    ("INSTRUMENT", "instrument name", "meta.id;instr", "string"),
    ("DPTYPE", "data product type: image or cube", "meta.code.class", "string"),
    ("CALIB", "calibration level 0-4", "meta.code;obs.calib", "integer"),
    ("TARGET", "target name (the tile or patch)", "meta.id;src", "string"),
    ("FORMAT", "a media type the data is offered in", "meta.code.mime", "string"),
    ("MAXREC", "the most rows to answer (DALI)", None, "integer"),
    ("RESPONSEFORMAT", "the answer's format (VOTable only)", None, "string"),
)


def _sia(root: etree._Element, base: str) -> None:
    """SIA 2.0 §2: the {query} endpoint, answering ObsCore rows as VOTable."""
    interface = _interface(_capability(root, SIA_QUERY), f"{base}/query", use="base", version="2.0",
                           query_types=("GET", "POST"), result_type=VOTABLE_TYPE)
    for name, description, ucd, datatype in SIA_PARAMS:
        _param(interface, name, description, use="optional", ucd=ucd, datatype=datatype)


def _job_list(root: etree._Element, url: str, kind: JobKind, *, soda: bool) -> None:
    if soda:
        _interface(_capability(root, SODA_ASYNC), url, use="base", version="1.0")
    # UWS 1.1 §2.2.1.1: this standardID is how a client learns the job list speaks UWS 1.1
    # (blocking WAIT, list filters) rather than 1.0.
    _interface(_capability(root, UWS_REST, kind.description), url, use="base", version="1.1")


def http_date(when: dt.datetime) -> str:
    return format_datetime(when.astimezone(dt.timezone.utc), usegmt=True)


def not_modified_since(request: Request, modified: dt.datetime) -> bool:
    header = request.headers.get("if-modified-since")
    if not header:
        return False
    try:
        since = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return False
    if since.tzinfo is None:
        since = since.replace(tzinfo=dt.timezone.utc)
    return modified <= since


def capabilities_endpoint(runtime: Runtime) -> Endpoint:
    # VOSI §3.1: clients take the capabilities' age from Last-Modified. The document only
    # changes with the settings, which are loaded once, just before this runs.
    modified = now_in_seconds()
    headers = {"Last-Modified": http_date(modified), "Vary": VARY}
    trust = runtime.settings.ops.trust_forwarded_headers

    async def capabilities(request: Request) -> Response:
        if not_modified_since(request, modified):
            return Response(status_code=304, headers=headers)
        body = capabilities_document(public_base(request, trust), runtime.mounts, sia=True)
        response = xml_response(body)
        response.headers.update(headers)
        return response
    return capabilities


# --- availability ---------------------------------------------------------------------------

def availability_document(available: bool, up_since: dt.datetime | None,
                          notes: Iterable[str]) -> bytes:
    """VOSI §3.2: available, then upSince, then the notes (schema order)."""
    root = etree.Element(f"{{{VOSI_AVAILABILITY_NS}}}availability",
                         nsmap={"vosi": VOSI_AVAILABILITY_NS})
    etree.SubElement(root, f"{{{VOSI_AVAILABILITY_NS}}}available").text = (
        "true" if available else "false")
    if up_since is not None:
        etree.SubElement(root, f"{{{VOSI_AVAILABILITY_NS}}}upSince").text = (
            up_since.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    for note in notes:
        etree.SubElement(root, f"{{{VOSI_AVAILABILITY_NS}}}note").text = note
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def availability_notes(checks: Iterable[Check], operator: bool = False) -> list[str]:
    """One note per failed check, else what was checked. Operators read why it failed
    ("database: connection refused"), others only what ("database: unavailable")."""
    checks = list(checks)
    failed = [c.summary(operator) for c in checks if not c.ok]
    return failed or [f"all checks passed: {', '.join(c.name for c in checks)}"]


def availability_endpoint(runtime: Runtime,
                          is_operator: Callable[[Request], bool] = lambda request: False) -> Endpoint:
    up_since = UpSince()

    async def availability(request: Request) -> Response:
        checks = await runtime.health.run()
        available = all(c.ok for c in checks)
        body = availability_document(available, up_since.update(available),
                                     availability_notes(checks, is_operator(request)))
        return Response(body, media_type=XML_TYPE, headers={"Cache-Control": "no-store"})
    return availability
