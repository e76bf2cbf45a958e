"""The OpenAPI 3.1 description of the HTTP interface, served at ``/openapi.json``.

Built from what the app mounts (its job lists come from the runtime), so a service with
``selftest`` jobs describes ``/selftest`` too. The DALI parameters are components named as
DALI 1.2's OpenAPI components (``dali-maxrec``, ``dali-responseformat``, ``dali-upload``);
the UWS job resources follow UWS 1.1 §2.2. Browser pages (``/ui/...``) and the login round
trips (``/login...``, ``/auth/...``) are left out: they are not an API (EXCLUDED).
``tests/soda/web/test_openapi.py`` checks the paths and methods against the app's routes.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dali.http import Endpoint, public_base
from soda import SERVICE, VERSION
from uws.kinds import JobKind

# Route path prefixes the description leaves out, and why.
EXCLUDED = {
    "/ui/": "the web pages for people (HTML forms); programs use the VO endpoints",
    "/login": "browser login: redirects to the identity provider",
    "/auth/": "the identity providers' callbacks and the SAML SP metadata (SAML 2.0, not HTTP API)",
}

Json = dict[str, Any]

TEXT = "text/plain"
XML = "text/xml"
VOTABLE = "application/x-votable+xml"
DATALINK = "application/x-votable+xml;content=datalink"
FITS = "application/fits"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"


def _text(description: str) -> Json:
    return {"description": description, "content": {TEXT: {"schema": {"type": "string"}}}}


def _error(description: str, *, votable: bool = True) -> Json:
    """A DALI error: text/plain starting with its label (DALI §4.2), or a VOTable error
    document when the client asks for one (Accept)."""
    content: Json = {TEXT: {"schema": {"$ref": "#/components/schemas/ErrorText"}}}
    if votable:
        content[VOTABLE] = {"schema": {"type": "string", "contentMediaType": VOTABLE}}
    return {"description": description, "content": content}


def _values(description: str, *, example: str | None = None, enum: list[str] | None = None) -> Json:
    """A repeatable string parameter (DALI §3.1: every value is used)."""
    item: Json = {"type": "string"}
    if enum:
        item["enum"] = enum
    schema: Json = {"type": "array", "items": item}
    out: Json = {"in": "query", "description": description, "schema": schema, "style": "form", "explode": True}
    if example is not None:
        out["example"] = [example]
    return out


def _single(description: str, schema: Json | None = None) -> Json:
    return {"in": "query", "description": description, "schema": schema or {"type": "string"}}


def _param(name: str, spec: Json) -> Json:
    return {"name": name, **spec}


# --- components ---------------------------------------------------------------------------------

PARAMETERS: Json = {
    # DALI 1.2 OpenAPI components (DALI §3.2.3, §3.2.4, §3.2.5).
    "dali-maxrec": _param("MAXREC", _single(
        "the most records to return; 0 answers the metadata only (DALI §3.2.4)",
        {"type": "integer", "format": "int64", "minimum": 0})),
    "dali-responseformat": _param("RESPONSEFORMAT", _single(
        "the media type of the answer, or a short form (DALI §3.2.3)")),
    "dali-upload": _param("UPLOAD", _single(
        "name,location of an input table: `positions,param:positions` for a file sent in "
        "the same multipart request, or a URL of one of the caller's own results here (DALI §3.2.5)",
        {"type": "string", "pattern": r"^\w+,\S+$"})),
    # SODA 1.0 §3.2-3.3.
    "soda-id": _param("ID", _values("dataset ID, `ivo://<authority>/<survey>?<TILE>_<band>` (SODA §3.2.1)",
                                    example="ivo://demo.cutout/des?DES0139-4457_r")),
    "soda-pos": _param("POS", _values(
        "`CIRCLE ra dec r`, `RANGE ra1 ra2 dec1 dec2` or `POLYGON ra dec ...`, ICRS degrees (SODA §3.3.2)",
        example="CIRCLE 24.9655 -44.9583 0.01")),
    "soda-circle": _param("CIRCLE", _values("`ra dec radius`, ICRS degrees (SODA §3.3.3)",
                                            example="24.9655 -44.9583 0.01")),
    "soda-polygon": _param("POLYGON", _values("`ra dec ra dec ra dec ...`, ICRS degrees (SODA §3.3.4)")),
    "soda-range": _param("RANGE", _values("`ra1 ra2 dec1 dec2`, ICRS degrees (what Aladin Lite sends)")),
    "soda-band": _param("BAND", _values("wavelength interval in metres, `low high` (SODA §3.3.5)",
                                        example="5.6e-7 6.5e-7")),
    "soda-time": _param("TIME", _values("MJD interval, `start end` (SODA §3.3.6); coadds have no time axis")),
    "soda-pol": _param("POL", _values("Stokes values (SODA §3.3.7); the images are unpolarised: I",
                                      enum=["I", "Q", "U", "V", "RR", "LL", "RL", "LR", "XX", "YY", "XY", "YX",
                                            "POLI", "POLF", "POLA"])),
    "soda-responseformat": _param("RESPONSEFORMAT", _single(
        "application/fits (fits, the default), image/png (png) or image/jpeg (jpeg, jpg)",
        {"type": "string", "enum": ["application/fits", "fits", "image/fits", "image/png", "png",
                                    "image/jpeg", "jpeg", "jpg", "image/jpg"]})),
    "filter": _param("FILTER", _values("band names, `g,r,i` or repeated (this service's addition)",
                                       example="g,r")),
    "stretch": _param("STRETCH", _single("picture stretch",
                                         {"type": "string", "enum": ["linear", "asinh", "log", "sqrt"]})),
    "limits": _param("LIMITS", _single("picture black and white levels",
                                       {"type": "string", "enum": ["sky", "zscale", "minmax", "percentile"]})),
    "percentiles": _param("PERCENTILES", _single("`low high` percentiles (implies LIMITS=percentile)")),
    "size": _param("SIZE", _single("the picture's longest side in pixels (at most max_preview_size)",
                                   {"type": "integer", "minimum": 1})),
    "rgb": _param("RGB", _single("three bands as R,G,B, or `default`: a colour composite")),
    "q": _param("Q", _single("the colour composite's softening", {"type": "number"})),
    # Bulk jobs: a table of positions (README, "Many positions").
    "bulk-radius": _param("RADIUS", _single("degrees, for rows without a radius or size column",
                                            {"type": "number", "exclusiveMinimum": 0})),
    "bulk-layout": _param("LAYOUT", _single("one FITS file per row, per part (group), or a binary table per part",
                                            {"type": "string", "enum": ["row", "group", "table"]})),
    # UWS 1.1 §2.2.
    "job-id": {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"},
               "description": "the job's identifier"},
    "result-id": {"name": "result_id", "in": "path", "required": True, "schema": {"type": "string"},
                  "description": "a result's identifier, as the result list names it"},
    "uws-phase-filter": _param("PHASE", _values(
        "list only jobs in these phases (UWS §2.2.2.1)",
        enum=["PENDING", "QUEUED", "EXECUTING", "COMPLETED", "ERROR", "ABORTED", "UNKNOWN", "HELD",
              "SUSPENDED", "ARCHIVED"])),
    "uws-after": _param("AFTER", _single("list only jobs created after this ISO 8601 time (UWS §2.2.2.1)",
                                         {"type": "string", "format": "date-time"})),
    "uws-last": _param("LAST", _single("list only the last N jobs, newest first (UWS §2.2.2.1)",
                                       {"type": "integer", "minimum": 1})),
    "uws-wait": _param("WAIT", _single("block up to this many seconds while the job is in PHASE, or "
                                       "active (UWS §2.2.1.1); -1: as long as the server allows",
                                       {"type": "integer", "minimum": -1})),
    "uws-wait-phase": _param("PHASE", _single("with WAIT: the phase to wait out",
                                              {"type": "string", "enum": ["PENDING", "QUEUED", "EXECUTING"]})),
}

RESPONSES: Json = {
    "UsageError": _error("UsageError: a parameter's value is wrong, named in the text (DALI §4.2)"),
    "AuthenticationError": {**_error("a login is needed (or a token was refused); "
                                     "WWW-Authenticate names the ways to log in"),
                            "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}}},
    "AuthorizationError": _error("this caller may not do that (another user's job; a quota)"),
    "NotFound": _error("no such resource (a job, a result, a token)"),
    "TooManyRequests": {**_error("a rate or job-count limit; try again after Retry-After seconds"),
                        "headers": {"Retry-After": {"schema": {"type": "integer"}}}},
    "ServiceUnavailable": {**_error("a dependency (database, broker) is down, or too busy now"),
                           "headers": {"Retry-After": {"schema": {"type": "integer"}}}},
    "SeeOther": {"description": "see the resource named in Location",
                 "headers": {"Location": {"schema": {"type": "string", "format": "uri"}}}},
    "UWSJob": {"description": "the job document (UWS 1.1 XML schema, uws:job)",
               "content": {XML: {"schema": {"type": "string", "contentMediaType": XML}}}},
    "TextValue": _text("one value of the job, as text"),
}

SCHEMAS: Json = {
    "ErrorText": {"type": "string", "pattern": r"^[A-Za-z]+: ",
                  "description": "a label (UsageError, MultiValuedParamNotSupported, NotFound, "
                                 "AuthenticationError, AuthorizationError, ServiceUnavailable, Error), "
                                 "a colon and a message"},
    "Identity": {"type": "object", "required": ["user", "authenticated", "method"], "properties": {
        "user": {"type": ["string", "null"]}, "authenticated": {"type": "boolean"},
        "method": {"type": ["string", "null"], "enum": ["token", "session", "jwt", None]},
        "csrf_token": {"type": "string", "description": "present for a browser session"}}},
    "Token": {"type": "object", "required": ["id", "name"], "properties": {
        "id": {"type": "string"}, "name": {"type": "string"},
        "created": {"type": ["string", "null"], "format": "date-time"},
        "expires": {"type": ["string", "null"], "format": "date-time"},
        "last_used": {"type": ["string", "null"], "format": "date-time"}}},
    "Usage": {"type": "object", "required": ["user", "active_jobs", "result_bytes"], "properties": {
        "user": {"type": "string"}, "active_jobs": {"type": "integer"},
        "max_active_jobs": {"type": ["integer", "null"]}, "result_bytes": {"type": "integer"},
        "quota_bytes": {"type": ["integer", "null"]}}},
}

SECURITY_SCHEMES: Json = {
    "token": {"type": "http", "scheme": "bearer",
              "description": "a personal API token (from /tokens or `cutout token create`), or an "
                             "access token of the configured OIDC provider (RFC 9068 JWT)"},
    "session": {"type": "apiKey", "in": "cookie", "name": "cutout_session",
                "description": "the browser session after a login at /login; POSTs need the CSRF "
                               "token too (form field csrf_token or header X-CSRF-Token)"},
}

# Anonymous callers are welcome where the service's limits say so; a login gives more.
OPTIONAL_LOGIN: list[Json] = [{}, {"token": []}, {"session": []}]
LOGIN: list[Json] = [{"token": []}, {"session": []}]


def _ref(kind: str, name: str) -> Json:
    return {"$ref": f"#/components/{kind}/{name}"}


def _refs(*names: str) -> list[Json]:
    return [_ref("parameters", n) for n in names]


def _responses(ok: Json, *errors: str) -> Json:
    out = dict(ok)
    codes = {"UsageError": "400", "AuthenticationError": "401", "AuthorizationError": "403",
             "NotFound": "404", "TooManyRequests": "429", "ServiceUnavailable": "503"}
    for name in errors:
        out[codes[name]] = _ref("responses", name)
    return out


def _form(names: list[str], *, multipart: bool = False) -> Json:
    """A POST body carrying the same parameters as the query (DALI §2: GET and POST alike)."""
    properties = {}
    for name in names:
        spec = PARAMETERS[name]
        properties[spec["name"]] = copy.deepcopy(spec["schema"])
    content: Json = {FORM: {"schema": {"type": "object", "properties": properties}}}
    if multipart:
        content[MULTIPART] = {"schema": {"type": "object", "properties": {
            **properties, "positions": {"type": "string", "contentMediaType": "application/octet-stream",
                                        "description": "the position table named by UPLOAD"}}}}
    return {"required": False, "content": content}


SODA_PARAMS = ["soda-id", "soda-pos", "soda-circle", "soda-polygon", "soda-range", "soda-band", "filter",
               "soda-time", "soda-pol", "soda-responseformat", "stretch", "limits", "percentiles", "size",
               "rgb", "q"]
# The parameters of each job kind the service has (by kind name); a kind not listed takes
# any (additionalProperties).
JOB_PARAMETERS = {
    "soda": SODA_PARAMS,
    "bulk": ["dali-upload", "bulk-radius", "bulk-layout", "filter", "soda-band", "soda-responseformat"],
}
SIA_QUERY = {"POS": "`CIRCLE`, `RANGE` or `POLYGON`, ICRS degrees (SIA 2.0 §2.1.1)",
             "BAND": "wavelength interval in metres", "TIME": "MJD interval", "POL": "polarization states",
             "FOV": "interval, degrees", "SPATRES": "interval, arcsec", "EXPTIME": "interval, seconds",
             "ID": "publisher dataset ID", "COLLECTION": "survey name", "FACILITY": "facility name",
             "INSTRUMENT": "instrument name", "DPTYPE": "image or cube", "CALIB": "calibration level 0-4",
             "TARGET": "target (tile or patch) name", "FORMAT": "a media type the image is offered in"}


def _sync() -> Json:
    ok = {"200": {"description": "the cutouts: one FITS file (multi-extension for several), or one picture",
                  "content": {FITS: {"schema": {"type": "string", "contentMediaType": FITS}},
                              "image/png": {"schema": {"type": "string", "contentMediaType": "image/png"}},
                              "image/jpeg": {"schema": {"type": "string", "contentMediaType": "image/jpeg"}}}},
          "204": {"description": "no image overlaps the request (SODA §5.1)"}}
    errors = ("UsageError", "AuthenticationError", "AuthorizationError", "TooManyRequests", "ServiceUnavailable")
    responses = _responses(ok, *errors)
    responses["400"] = _error("UsageError (a bad value; an ID naming no dataset) or "
                              "MultiValuedParamNotSupported (more cutouts than one answer may hold)")
    common = {"tags": ["SODA"], "security": OPTIONAL_LOGIN, "responses": responses}
    return {"get": {"summary": "cutouts, at once (SODA 1.0 sync)", "operationId": "sodaSyncGet",
                    "parameters": _refs(*SODA_PARAMS), **common},
            "post": {"summary": "cutouts, at once (SODA 1.0 sync), parameters in the body",
                     "operationId": "sodaSyncPost", "requestBody": _form(SODA_PARAMS), **copy.deepcopy(common)}}


def _sia_parameters() -> list[Json]:
    own = [_param(name, _values(text)) for name, text in SIA_QUERY.items()]
    return [*own, _ref("parameters", "dali-maxrec"),
            _param("RESPONSEFORMAT", _single("votable or application/x-votable+xml (the only format)"))]


def _votable_ok(description: str, media: str = VOTABLE) -> Json:
    return {"200": {"description": description, "content": {media: {"schema": {
        "type": "string", "contentMediaType": media}}}}}


def _query() -> Json:
    responses = _responses(_votable_ok("ObsCore 1.1 rows, one per image, each DataLink-enabled"),
                           "AuthenticationError", "TooManyRequests", "ServiceUnavailable")
    responses["400"] = {"description": "a VOTable error document, QUERY_STATUS=ERROR (DALI §4.2)",
                        "content": {VOTABLE: {"schema": {"type": "string"}}}}
    common = {"tags": ["SIA"], "security": OPTIONAL_LOGIN, "responses": responses}
    form_props = {p["name"]: (p.get("schema") or {}) for p in _sia_parameters() if "name" in p}
    form_props["MAXREC"] = PARAMETERS["dali-maxrec"]["schema"]
    return {"get": {"summary": "find images (SIA 2.0 query)", "operationId": "siaQueryGet",
                    "parameters": _sia_parameters(), **common},
            "post": {"summary": "find images (SIA 2.0 query), parameters in the body", "operationId": "siaQueryPost",
                     "requestBody": {"content": {FORM: {"schema": {"type": "object", "properties": form_props}}}},
                     **copy.deepcopy(common)}}


def _links() -> Json:
    ok = _votable_ok("the DataLink document: #this, #preview and #cutout rows per ID, with SODA "
                     "service descriptors; an unknown ID is a NotFoundFault row", DATALINK)
    responses = {**ok, "400": {"description": "a DataLink error document (QUERY_STATUS: UsageFault...)",
                               "content": {DATALINK: {"schema": {"type": "string"}}}},
                 **{code: {"description": f"a DataLink error document: {what}", "content": {DATALINK: {
                     "schema": {"type": "string"}}}} for code, what in (
                     ("401", "a token was refused (WWW-Authenticate says how to log in)"),
                     ("429", "TransientFault, too many requests (Retry-After)"),
                     ("503", "TransientFault, a dependency is down (Retry-After)"))}}
    id_param = _param("ID", _values("dataset IDs (at most 100 answered)", example="ivo://demo.cutout/des?DES0139-4457_r"))
    common = {"tags": ["DataLink"], "security": OPTIONAL_LOGIN, "responses": responses}
    return {"get": {"summary": "links of datasets (DataLink 1.1 {links})", "operationId": "datalinkGet",
                    "parameters": [id_param, _ref("parameters", "dali-responseformat")], **common},
            "post": {"summary": "links of datasets, IDs in the body", "operationId": "datalinkPost",
                     "requestBody": {"content": {FORM: {"schema": {"type": "object", "properties": {
                         "ID": {"type": "array", "items": {"type": "string"}}}}}}},
                     **copy.deepcopy(common)}}


def _get(summary: str, operation: str, responses: Json, *, tags: list[str], parameters: list[Json] | None = None,
         security: list[Json] | None = None) -> Json:
    op: Json = {"summary": summary, "operationId": operation, "tags": tags, "responses": responses}
    if parameters:
        op["parameters"] = parameters
    if security is not None:
        op["security"] = security
    return op


def _job_list(path: str, kind: JobKind) -> Json:
    tag = f"UWS {path}"
    name = kind.name
    op = name.capitalize()
    job_params = JOB_PARAMETERS.get(name, [])
    control = {"PHASE": {"type": "string", "enum": ["RUN"]}, "RUNID": {"type": "string"},
               "EXECUTIONDURATION": {"type": "integer", "minimum": 0},
               "DESTRUCTION": {"type": "string", "format": "date-time"},
               "NOTIFY": {"type": "array", "items": {"type": "string"},
                          "description": "mailto: or https:// targets told when the job ends"}}
    body = _form(job_params, multipart=bool(kind.uploads))
    for media in body["content"].values():
        media["schema"]["properties"].update(control)
        media["schema"]["additionalProperties"] = True   # the kind's own parameters
    xml_ok = {"200": RESPONSES["UWSJob"] | {"description": "the job list (UWS 1.1 uws:jobs)"}}
    job_ok = {"200": _ref("responses", "UWSJob")}
    text_ok = {"200": _ref("responses", "TextValue")}
    see_other = {"303": _ref("responses", "SeeOther")}
    in_job = ["AuthenticationError", "AuthorizationError", "NotFound"]
    posted = ["UsageError", *in_job]

    def job_path(**ops: Json) -> Json:
        return {"parameters": [_ref("parameters", "job-id")], **ops}

    def text_value(what: str, op_name: str, *, writable: Json | None = None) -> Json:
        ops = {"get": _get(f"the job's {what}", f"get{op}{op_name}", _responses(text_ok, *in_job), tags=[tag])}
        if writable is not None:
            ops["post"] = {"summary": f"set the job's {what}", "operationId": f"post{op}{op_name}", "tags": [tag],
                           "requestBody": {"required": True, "content": {FORM: {"schema": {
                               "type": "object", "properties": writable}}}},
                           "responses": _responses(see_other, *posted)}
        return job_path(**ops)

    base = path.rstrip("/")
    archive = {"200": {"description": "every result as one archive, streamed; Range gives 206",
                       "content": {"application/zip": {"schema": {"type": "string"}},
                                   "application/x-tar": {"schema": {"type": "string"}}}},
               "206": {"description": "the byte range asked for"},
               "416": {"description": "the range starts past the end"}}
    return {
        base: {
            "get": _get(f"the caller's {name} jobs (UWS 1.1 §2.2.2.1)", f"list{op}Jobs",
                        _responses(xml_ok, "UsageError", "AuthenticationError"), tags=[tag],
                        parameters=_refs("uws-phase-filter", "uws-after", "uws-last")),
            "post": {"summary": f"create a {name} job (UWS 1.1 §2.2.3.1); PHASE=RUN queues it at once",
                     "operationId": f"create{op}Job", "tags": [tag], "requestBody": body,
                     "responses": _responses(see_other, "UsageError", "AuthenticationError", "AuthorizationError",
                                             "TooManyRequests", "ServiceUnavailable")},
        },
        f"{base}/{{job_id}}": job_path(
            get=_get("the job (UWS 1.1 §2.2.3.2); WAIT blocks until it changes", f"get{op}Job",
                     _responses(job_ok, "UsageError", *in_job), tags=[tag], parameters=_refs("uws-wait", "uws-wait-phase")),
            post={"summary": "ACTION=DELETE deletes the job", "operationId": f"post{op}Job", "tags": [tag],
                  "requestBody": {"required": True, "content": {FORM: {"schema": {"type": "object", "properties": {
                      "ACTION": {"type": "string", "enum": ["DELETE"]}}}}}},
                  "responses": _responses(see_other, *posted)},
            delete={"summary": "delete the job and its results", "operationId": f"delete{op}Job", "tags": [tag],
                    "responses": _responses(see_other, *in_job)}),
        f"{base}/{{job_id}}/phase": text_value("phase", "Phase", writable={
            "PHASE": {"type": "string", "enum": ["RUN", "ABORT"]}}),
        f"{base}/{{job_id}}/executionduration": text_value("execution duration (seconds)", "ExecutionDuration",
                                                          writable={"EXECUTIONDURATION": {"type": "integer"}}),
        f"{base}/{{job_id}}/destruction": text_value("destruction time", "Destruction", writable={
            "DESTRUCTION": {"type": "string", "format": "date-time"}}),
        f"{base}/{{job_id}}/quote": text_value("quote", "Quote"),
        f"{base}/{{job_id}}/owner": text_value("owner", "Owner"),
        f"{base}/{{job_id}}/error": job_path(get=_get(
            "the error document of a job in ERROR", f"get{op}Error",
            _responses({"200": {"description": "a VOTable error document", "content": {
                VOTABLE: {"schema": {"type": "string"}}, TEXT: {"schema": {"type": "string"}}}}}, *in_job),
            tags=[tag])),
        f"{base}/{{job_id}}/results": job_path(get=_get(
            "the result list (uws:results)", f"get{op}Results",
            _responses({"200": {"description": "uws:results", "content": {XML: {"schema": {"type": "string"}}}}},
                       *in_job), tags=[tag])),
        f"{base}/{{job_id}}/results/{{result_id}}": {
            "parameters": _refs("job-id", "result-id"),
            "get": _get("one result", f"get{op}Result", _responses(
                {"200": {"description": "the result's bytes, in its media type", "content": {
                    "*/*": {"schema": {"type": "string"}}}}}, *in_job), tags=[tag])},
        f"{base}/{{job_id}}/results.zip": job_path(get=_get(
            "every result as one ZIP archive", f"get{op}Zip", _responses(archive, *in_job), tags=[tag])),
        f"{base}/{{job_id}}/results.tar": job_path(get=_get(
            "every result as one tar archive", f"get{op}Tar", _responses(archive, *in_job), tags=[tag])),
        f"{base}/{{job_id}}/parameters": job_path(
            get=_get("the job's parameters (uws:parameters)", f"get{op}Parameters",
                     _responses({"200": {"description": "uws:parameters", "content": {XML: {
                         "schema": {"type": "string"}}}}}, *in_job), tags=[tag]),
            post={"summary": "change parameters while the job is PENDING", "operationId": f"post{op}Parameters",
                  "tags": [tag], "requestBody": copy.deepcopy(body),
                  "responses": _responses(see_other, *posted)}),
    }


def _accounts() -> Json:
    json_of = lambda schema, description: {"200": {  # noqa: E731
        "description": description, "content": {JSON: {"schema": schema}}}}
    return {
        "/whoami": {"get": _get("who the service takes the caller for", "whoami",
                                json_of(_ref("schemas", "Identity"), "the caller"), tags=["accounts"],
                                security=OPTIONAL_LOGIN)},
        "/usage": {"get": _get("the caller's jobs and result space against the quotas", "usage",
                               _responses(json_of(_ref("schemas", "Usage"), "usage"), "AuthenticationError"),
                               tags=["accounts"], security=LOGIN)},
        "/tokens": {
            "get": _get("the caller's API tokens (never their secrets)", "listTokens", _responses(
                json_of({"type": "object", "properties": {"user": {"type": "string"}, "tokens": {
                    "type": "array", "items": _ref("schemas", "Token")}}}, "the tokens"), "AuthenticationError"),
                tags=["accounts"], security=LOGIN),
            "post": {"summary": "create an API token (from a browser session only); its secret is shown once",
                     "operationId": "createToken", "tags": ["accounts"], "security": [{"session": []}],
                     "requestBody": {"required": True, "content": {FORM: {"schema": {
                         "type": "object", "required": ["name"], "properties": {
                             "name": {"type": "string", "maxLength": 100},
                             "lifetime_days": {"type": "integer", "minimum": 1},
                             "csrf_token": {"type": "string"}}}}}},
                     "responses": _responses({"201": {"description": "the new token", "content": {JSON: {
                         "schema": {"allOf": [_ref("schemas", "Token"), {"type": "object", "properties": {
                             "token": {"type": "string"}}}]}}}}},
                         "UsageError", "AuthenticationError", "AuthorizationError")}},
        "/tokens/{token_id}": {
            "parameters": [{"name": "token_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "delete": {"summary": "revoke a token", "operationId": "revokeToken", "tags": ["accounts"],
                       "security": LOGIN, "responses": _responses(
                           {"204": {"description": "revoked"}}, "AuthenticationError", "NotFound")},
            "post": {"summary": "ACTION=DELETE revokes a token (HTML forms)", "operationId": "revokeTokenForm",
                     "tags": ["accounts"], "security": LOGIN,
                     "requestBody": {"required": True, "content": {FORM: {"schema": {"type": "object", "properties": {
                         "ACTION": {"type": "string", "enum": ["DELETE"]}}}}}},
                     "responses": _responses({"204": {"description": "revoked"},
                                              "303": _ref("responses", "SeeOther")},
                                             "UsageError", "AuthenticationError", "NotFound")}},
        "/logout": {
            "get": _get("a page with the logout button", "logoutPage",
                        {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}},
                         "303": _ref("responses", "SeeOther")}, tags=["accounts"]),
            "post": {"summary": "end the session (everywhere=1: every session of the user)", "operationId": "logout",
                     "tags": ["accounts"], "requestBody": {"content": {FORM: {"schema": {"type": "object", "properties": {
                         "everywhere": {"type": "string"}, "csrf_token": {"type": "string"}}}}}},
                     "responses": _responses({"303": _ref("responses", "SeeOther")}, "UsageError",
                                             "AuthorizationError")}},
    }


def _service() -> Json:
    xml_ok = lambda description: {"200": {"description": description, "content": {  # noqa: E731
        XML: {"schema": {"type": "string"}}}}}
    text_ok = lambda description: {"200": _text(description)}  # noqa: E731
    return {
        "/": {"get": _get("the front page: HTML for browsers, a plain-text list of endpoints for others",
                          "frontPage", {"200": {"description": "the service's front page", "content": {
                              "text/html": {"schema": {"type": "string"}}, TEXT: {"schema": {"type": "string"}}}}},
                          tags=["service"])},
        "/capabilities": {"get": _get("VOSI capabilities (VOSI 1.1 §2)", "capabilities",
                                      xml_ok("vosi:capabilities"), tags=["VOSI"])},
        "/availability": {"get": _get("VOSI availability: the dependency checks (VOSI 1.1 §3)", "availability",
                                      xml_ok("vosi:availability"), tags=["VOSI"])},
        "/files": {"get": _get("a whole image file, by dataset ID (DataLink #this)", "files", _responses(
            {"200": {"description": "the file", "content": {FITS: {"schema": {"type": "string"}}}}},
            "UsageError", "AuthenticationError", "NotFound"), tags=["DataLink"],
            parameters=[_param("ID", _single("the dataset ID"))], security=LOGIN)},
        "/coverage/{file}": {"get": _get(
            "a survey's coverage map (MOC 2.0): <survey>.fits or <survey>.json", "coverage", _responses(
                {"200": {"description": "the MOC", "content": {FITS: {"schema": {"type": "string"}},
                                                               JSON: {"schema": {"type": "object"}}}}},
                "NotFound"), tags=["SIA"],
            parameters=[{"name": "file", "in": "path", "required": True, "schema": {"type": "string"},
                         "example": "des.fits"}])},
        "/healthz": {"get": _get("liveness: the process answers", "healthz", text_ok("ok"), tags=["operations"])},
        "/readyz": {"get": _get("readiness: database, broker and stores", "readyz",
                                {**text_ok("ready"), "503": _text("what failed (why, for operators)")},
                                tags=["operations"])},
        "/metrics": {"get": _get("Prometheus metrics (operator_clients only)", "metrics",
                                 {**text_ok("the Prometheus text format"),
                                  "403": _ref("responses", "AuthorizationError")}, tags=["operations"])},
        "/stats.json": {"get": _get(
            "usage statistics from the audit of served cutouts (operators only)", "statistics", _responses(
                {"200": {"description": "cutouts and bytes per day, by survey, format and kind; jobs by phase; "
                                        "top users; /sync latency percentiles",
                         "content": {JSON: {"schema": {"type": "object", "required": [
                             "since", "until", "days", "totals", "per_day", "by_survey", "by_format", "by_kind",
                             "jobs_by_phase", "top_users", "latency_ms"]}}}}},
                "UsageError", "AuthorizationError"), tags=["operations"],
            parameters=[_param("days", _single("the last this many UTC days, today included",
                                               {"type": "integer", "minimum": 1, "maximum": 366, "default": 30}))])},
        "/openapi.json": {"get": _get("this description (OpenAPI 3.1)", "openapi", {"200": {
            "description": "OpenAPI 3.1", "content": {JSON: {"schema": {"type": "object"}}}}}, tags=["service"])},
    }


def openapi_document(mounts: Mapping[str, JobKind], *, session_cookie: str = "cutout_session") -> Json:
    """The description of a service whose job lists are ``mounts`` (path -> kind)."""
    paths: Json = {"/sync": _sync(), "/links": _links(), "/query": _query()}
    for path, kind in mounts.items():
        paths.update(_job_list(path, kind))
    paths.update(_accounts())
    paths.update(_service())
    schemes = copy.deepcopy(SECURITY_SCHEMES)
    schemes["session"]["name"] = session_cookie
    return {
        "openapi": "3.1.0",
        "info": {"title": "cutout: IVOA SODA 1.0 / UWS 1.1 image cutouts", "version": VERSION,
                 "summary": f"{SERVICE}: cutouts of survey images, found by SIA 2.0 and DataLink 1.1",
                 "license": {"name": "BSD-3-Clause", "identifier": "BSD-3-Clause"}},
        "externalDocs": {"description": "IVOA standards: SODA 1.0, UWS 1.1, DALI 1.1, DataLink 1.1, SIA 2.0, VOSI 1.1",
                         "url": "https://www.ivoa.net/documents/"},
        "paths": dict(sorted(paths.items())),
        "components": {"parameters": copy.deepcopy(PARAMETERS), "responses": copy.deepcopy(RESPONSES),
                       "schemas": copy.deepcopy(SCHEMAS), "securitySchemes": schemes},
        "security": OPTIONAL_LOGIN,
    }


def openapi_endpoint(mounts: Mapping[str, JobKind], session_cookie: str, trust_forwarded: bool) -> Endpoint:
    """``GET /openapi.json``: the description, its server the service root the client sees."""
    document = openapi_document(mounts, session_cookie=session_cookie)

    async def openapi(request: Request) -> Response:
        return JSONResponse({**document, "servers": [{"url": public_base(request, trust_forwarded) or "/"}]})
    return openapi
