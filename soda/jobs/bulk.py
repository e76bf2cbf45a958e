"""The bulk job kind (``/bulk``): a table of positions (DALI UPLOAD: CSV, VOTable, FITS or,
with pyarrow, Parquet; ``soda.request.positions``) cut into FITS files, laid out as
``LAYOUT`` says: one file per row (``row``, the default), one multi-extension file per
part (``group``) or one binary table per part, a cutout per table row (``table``).

Rows are grouped by the image field (DES tile, LSST patch) that holds them, each group cut
with its images opened once, so a thousand positions on one tile decode its header and
tiles once. A row's file holds every band asked for (``FILTER``, the row's ``band``, or
every band the survey has there), one extension set per band (EXTVER). A bad row, a row no
survey covers, or a cut that fails is reported in the manifest, never fatal to the job.

The groups are the job's parts (``uws.parts``): separate messages that any worker takes,
so N workers share one job and a lost worker costs only its part, which is run again.
Progress (rows done, failed, total, rate, estimated end) is in the job's jobInfo.

Results: ``<row>_<id>.fits`` per row as it is made (``row``), or ``<field>-<part>.fits``
per part (``group``, ``table``; ``soda.output.bulk``), visible while the job runs; each
part's lines of the manifest (``manifest-part-NNNNN.csv``; ``manifest-unserved.csv``: the
rows no part cuts), then ``manifest.csv`` and ``manifest.xml`` (VOTable) of every row:
input row, id, position, status, result, error text, and where in the result the row's
cuts are (``extver``: the EXTVERs of its HDUs in a group file; ``table_row``: its rows in
a table file; ``;``-separated, one per band).

Limits per caller, checked when the job is created: rows, the pixels the job would cut
(estimated from the rows' radii, the first survey's pixel scale and the bands), and the
caller's bulk jobs not yet finished.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import BinaryIO

import numpy as np
from lxml import etree

from dali.errors import ServiceError, ServiceUnavailable, UsageError
from dali.params import Params, RequestParams
from soda.cutouts import Cut, CutoutLimits, Cutouts, FieldGroup, Located
from soda.output.bulk import RowCuts, group_fits, table_fits
from soda.request.positions import PositionTable, read_positions
from uws.kinds import JobContext, JobKind, KindLimit, Part, PartReport, Uploads

PARAM_NAMES = frozenset({"UPLOAD", "RADIUS", "FILTER", "RESPONSEFORMAT", "LAYOUT"})
LAYOUTS = ("row", "group", "table")
_SAFE = re.compile(r"[^A-Za-z0-9._+-]+")
FITS = "application/fits"


@dataclass(frozen=True)
class BulkLimits:
    max_rows: int             # rows of one table
    default_radius: float     # degrees, for rows without size or radius
    max_pixels: int = 0       # estimated pixels of one job (0: no limit)
    max_active_jobs: int = 0  # the caller's bulk jobs not yet finished (0: no limit)
    whom: str = ""            # how a refusal names whom the limits are for


@dataclass(frozen=True)
class BulkRequest:
    """What a bulk job was created with (the table itself is kept as its upload)."""

    upload: str               # the multipart field holding the table
    table_name: str           # its name in UPLOAD (DALI §3.4.5)
    rows: int                 # good rows when it was checked
    bad_rows: int
    radius: float             # degrees: rows without size/radius
    filters: tuple[str, ...] = ()  # band names; empty: the row's band, else every band there
    layout: str = "row"       # row, group or table (LAYOUTS)


@dataclass(slots=True)
class RowOutcome:
    row: int
    id: str
    ra: float
    dec: float
    radius: float
    status: str               # ok, failed, no image, bad row
    result: str = ""
    error: str = ""
    extver: str = ""          # group layout: the EXTVERs of the row's HDUs, ;-separated
    table_row: str = ""       # table layout: the row's rows in the table (1-based), ;-separated


# --- creation ------------------------------------------------------------------------------

def parse_upload_param(value: str) -> tuple[str, str]:
    """DALI 1.1 §3.4.5: ``UPLOAD=name,param:field`` (inline); a URL is not fetched."""
    name, _, source = value.partition(",")
    if not name or not source:
        raise UsageError(f"UPLOAD must be 'table-name,param:field-name', not {value[:80]!r}")
    if not source.startswith("param:"):
        raise UsageError("UPLOAD takes the table inline in the request (UPLOAD=positions,param:positions "
                         "and a multipart file field 'positions') or as the URL of a result of one of your "
                         "jobs on this service; it fetches no other URL")
    return name.strip(), source[len("param:"):].strip()


# Estimated pixels of a job's rows: (radii in degrees, bands asked for, rows' bands) -> pixels.
PixelEstimate = Callable[[Sequence[float], Sequence[str], Sequence[str | None]], float]


def parse(pairs: Params, files: Uploads, limits: BulkLimits,
          estimate: PixelEstimate | None = None) -> BulkRequest:
    params = RequestParams(pairs)
    upload = params.single("UPLOAD")
    if upload is None:
        raise UsageError("a bulk job needs its position table: UPLOAD=positions,param:positions with a "
                         "multipart file field 'positions' (CSV, VOTable, FITS table)")
    table_name, field_name = parse_upload_param(upload)
    if field_name not in files:
        raise UsageError(f"UPLOAD names the file field {field_name!r}, which the request does not carry")
    fmt = params.single("RESPONSEFORMAT")
    if fmt is not None and fmt.lower() not in (FITS, "image/fits", "fits"):
        raise UsageError(f"a bulk job makes FITS files (RESPONSEFORMAT=application/fits), not {fmt!r}; "
                         f"LAYOUT=row|group|table chooses how they hold the cutouts")
    layout = (params.single("LAYOUT") or "row").strip().lower()
    if layout not in LAYOUTS:
        raise UsageError(f"LAYOUT must be row (a FITS file per row), group (a multi-extension FITS file "
                         f"per image field) or table (a FITS binary table per image field), not "
                         f"{params.single('LAYOUT')[:40]!r}")
    radius = limits.default_radius
    if (text := params.single("RADIUS")) is not None:
        try:
            radius = float(text)
        except ValueError:
            raise UsageError(f"RADIUS must be a number of degrees, not {text[:40]!r}") from None
        if not 0 < radius <= 10:
            raise UsageError(f"RADIUS must be between 0 and 10 degrees, not {radius:g}")
    filters = tuple(f.strip() for value in params.all("FILTER") for f in value.split(",") if f.strip())
    table = read_positions(files[field_name], limits.max_rows)
    if not len(table):
        raise UsageError(f"the position table has no usable row ({len(table.bad)} bad: "
                         f"row {table.bad[0][0]}: {table.bad[0][1]})" if table.bad else
                         "the position table has no rows")
    if limits.max_pixels and estimate is not None:
        radii = np.where(np.isfinite(table.radius), table.radius, radius)
        pixels = estimate(radii, filters, table.band)
        if pixels > limits.max_pixels:
            raise UsageError(f"this job would cut about {pixels:.3g} pixels ({len(table)} rows); a bulk job "
                             f"cuts at most {limits.max_pixels:.3g} {limits.whom}: use fewer rows, a "
                             f"smaller RADIUS or FILTER")
    return BulkRequest(upload=field_name, table_name=table_name, rows=len(table), bad_rows=len(table.bad),
                       radius=radius, filters=filters, layout=layout)


def pixel_estimate(cutouts: Cutouts) -> PixelEstimate:
    """Each row's square (its side twice its radius) in pixels of the first survey with an
    image, times its bands: FILTER's, else the row's band, else every band of the survey."""

    def first_scale() -> tuple[float, int]:  # degrees per pixel, bands; asked at each creation
        for survey in cutouts.datasets.surveys.values():
            catalogue = getattr(survey, "catalogue", None)
            first = catalogue.first(survey.name) if catalogue is not None else None
            if first is not None and first.pixel_scale > 0:
                return first.pixel_scale / 3600.0, max(len(survey.bands), 1)
        return math.nan, 1

    def estimate(radii: Sequence[float], filters: Sequence[str], row_bands: Sequence[str | None]) -> float:
        scale, bands = first_scale()
        if not math.isfinite(scale):
            return 0.0
        side = np.ceil(2 * np.asarray(radii, dtype=float) / scale) + 1
        per_row = np.full(len(side), len(filters) if filters else bands, dtype=float)
        if not filters:
            per_row[[i for i, b in enumerate(row_bands) if b]] = 1
        return float(np.sum(side * side * per_row))

    return estimate


def shown(request: BulkRequest, pairs: Params) -> Params:
    return [(name, value) for name, value in pairs if name.upper() in PARAM_NAMES]


# --- planning and cutting -------------------------------------------------------------

def plan(cutouts: Cutouts, table: PositionTable, request: BulkRequest,
         outcomes: dict[int, RowOutcome]) -> list[FieldGroup]:
    """The rows grouped by the field that serves them; rows no survey serves are marked."""
    groups, problems = cutouts.plan_positions(table.ra, table.dec, [outcomes[i].radius for i in range(len(table))],
                                              row_bands(table, request))
    for i, why in problems.items():
        outcomes[i].status, outcomes[i].error = "no image", why
    return groups


def result_name(row: int, ident: str) -> str:
    safe = _SAFE.sub("_", ident).strip("_")[:60]
    return f"{row:07d}_{safe}.fits" if safe else f"{row:07d}.fits"


def group_result_name(field: str, index: int) -> str:
    safe = _SAFE.sub("_", field).strip("_")[:80] or "field"
    return f"{safe}-{index:05d}.fits"


def cut_group(ctx: JobContext[BulkRequest], cutouts: Cutouts, limits: CutoutLimits, group: FieldGroup,
              outcomes: dict[int, RowOutcome], kept: list[RowCuts] | None = None, folder: str = "") -> None:
    """The group's rows, each one FITS file (``kept`` None) or its cuts added to ``kept``
    (for one file of many rows); its images' files and tiles read once for all.

    The rows are cut in the order of their pixels' rows on the field's first image, so the
    compression tiles each decodes (a row-tiled ``.fits.fz`` decodes whole image rows) are
    still in the tile cache for the next rows, whatever the order of the table, and the
    tiles the group's rows need are decoded many at a time (``Cutouts.sweeping``): a
    group's tiles are decoded about once, in few calls, not once per row. The files of one row each are recorded
    in batches (``JobContext.result_batch``), not one database statement per row, and
    stored in ``folder`` (a part's own: parts running at once do not share a directory)."""
    with (ctx.result_batch(folder=folder) if kept is None else contextlib.nullcontext() as batch,
          cutouts.sweeping([target for _, target in group.members]) as order):
        for i, target in (group.members[k] for k in order):
            outcome = outcomes[i]
            try:
                cuts: list[Cut] = cutouts.cut_target(target, limits)
                if not cuts:
                    outcome.status, outcome.error = "no image", target.why_empty()
                    continue
                if batch is None:
                    assert kept is not None
                    kept.append(RowCuts(outcome.row, outcome.id, outcome.ra, outcome.dec, cuts))
                    outcome.result = f"#{i}"  # the file's name once it is written (write_many)
                    continue
                body = cutouts.fits_file(cuts, [cut.image.band for cut in cuts])
                name = result_name(outcome.row, outcome.id)
                batch.put(name, body, FITS)
                outcome.status, outcome.result = "ok", name
            except ServiceUnavailable:
                raise  # transient: the part is run again
            except ServiceError as exc:
                if exc.status == 403:  # the owner's result space is full: no row can be kept
                    raise
                outcome.status, outcome.error = "failed", exc.message  # too many pixels, an unreadable image


def write_many(ctx: JobContext[BulkRequest], name: str, kept: Sequence[RowCuts],
               outcomes: dict[int, RowOutcome]) -> None:
    """The kept rows' cuts in one file (the job's layout: group or table), and where each
    row's cuts are in it. A file that cannot be written fails its rows."""
    pending = [o for o in outcomes.values() if o.result.startswith("#")]
    if not kept:
        return
    kept = sorted(kept, key=lambda r: r.row)  # cut in pixel order (cut_group); written in the table's
    try:
        if ctx.params.layout == "table":
            body, where = table_fits(kept)
        else:
            body, where = group_fits(kept)
        ctx.put_result(name, body, FITS)
    except ServiceUnavailable:
        raise  # transient: the part is run again
    except ServiceError as exc:
        if exc.status == 403:  # the owner's result space is full
            raise
        for o in pending:
            o.status, o.result, o.error = "failed", "", exc.message
        return
    by_row = {r.row: numbers for r, numbers in zip(kept, where, strict=True)}
    for o in pending:
        o.status, o.result = "ok", name
        text = ";".join(str(n) for n in by_row[o.row])
        if ctx.params.layout == "table":
            o.table_row = text
        else:
            o.extver = text


def outcomes_of(table: PositionTable, request: BulkRequest,
                rows: Sequence[int] | None = None) -> dict[int, RowOutcome]:
    """A pending outcome for each of ``rows`` (indices into the table; None: every row)."""
    return {i: RowOutcome(int(table.row[i]), table.id[i] or str(int(table.row[i])), float(table.ra[i]),
                          float(table.dec[i]),
                          float(table.radius[i]) if math.isfinite(table.radius[i]) else request.radius,
                          "pending")
            for i in (range(len(table)) if rows is None else rows)}


# --- parts: groups of rows spread over the workers --------------------------------------

PART_ROWS = 2000   # rows of one part at most (a field with more rows is several parts)
# With the group and table layouts a part's cuts are held until its file is written: fewer
# rows (250 rows of 137-pixel stamps in three bands of three planes: about 170 MB).
MANY_PART_ROWS = 250
_tables: OrderedDict[str, PositionTable] = OrderedDict()  # per process: the last jobs' tables
_tables_lock = threading.Lock()


def _table(ctx: JobContext[BulkRequest]) -> PositionTable:
    """The job's position table, read once per process (every part of a job needs it)."""
    with _tables_lock:
        kept = _tables.get(ctx.job_id)
        if kept is not None:
            _tables.move_to_end(ctx.job_id)
            return kept
    request = ctx.params
    table = read_positions(ctx.upload(request.upload), max(request.rows + request.bad_rows, 1))
    with _tables_lock:
        _tables[ctx.job_id] = table
        while len(_tables) > 2:
            _tables.popitem(last=False)
    return table


def row_bands(table: PositionTable, request: BulkRequest) -> list[tuple[str, ...]]:
    """The bands each row asks for: FILTER's, else the row's band, else () (every band there)."""
    if request.filters:
        return [request.filters] * len(table)
    none: tuple[str, ...] = ()
    return [(b,) if b else none for b in table.band]


def plan_parts(ctx: JobContext[BulkRequest], cutouts: Cutouts) -> list[Part]:
    """One part per field (per PART_ROWS rows of it), each the field's row indices; a field
    of more rows than a part is cut into bands of its pixel rows (``Cutouts.positions_order``),
    so that the compression tiles of a row-tiled image are decoded by one part, not by each;
    the rows no part will cut (bad, or no survey there) go into the manifest at once
    (``manifest-unserved.csv``). Only arrays of row indices are made for the table's rows
    (no object per row): a table may hold a million."""
    table = _table(ctx)
    request = ctx.params
    bands = row_bands(table, request)
    located, unserved = cutouts.locate_positions(table.ra, table.dec, bands)
    fields: dict[str, list[Located]] = {}
    for group in located:  # ordered by their first row
        fields.setdefault(group.field, []).append(group)
    parts = []
    size = PART_ROWS if request.layout == "row" else MANY_PART_ROWS
    for field, found in fields.items():
        rows = np.concatenate([g.rows for g in found]) if len(found) > 1 else found[0].rows
        if len(rows) > size:  # each part a band of the field's pixel rows: its tiles decoded by one part
            rows = rows[cutouts.positions_order(found[0].images[0], table.ra[rows], table.dec[rows])]
        for start in range(0, len(rows), size):
            chunk = rows[start:start + size].tolist()
            parts.append(Part(key=json.dumps({"field": field, "rows": chunk}), units=len(chunk)))
    outcomes = outcomes_of(table, request, unserved.tolist())
    for i, outcome in outcomes.items():
        outcome.status, outcome.error = "no image", cutouts.unserved_why(outcome.ra, outcome.dec, bands[i])
    unserved_rows = list(outcomes.values()) + bad_rows(table)
    ctx.put_result("manifest-unserved.csv", manifest_csv(sorted(unserved_rows, key=lambda o: o.row)), "text/csv")
    return parts


def run_part(ctx: JobContext[BulkRequest], part: Part, cutouts: Cutouts) -> PartReport:
    """The part's rows cut, each image field's files read once; its rows' manifest lines
    as a result of their own (the manifest so far, while the job runs)."""
    table = _table(ctx)
    rows: list[int] = json.loads(part.key)["rows"]
    request = ctx.params
    outcomes = outcomes_of(table, request, rows)  # this part's rows only: a table may hold a million
    limits = cutouts.limits(ctx.job.owner)
    bands = [request.filters or ((table.band[i],) if table.band[i] else ()) for i in rows]
    groups, problems = cutouts.plan_positions([table.ra[i] for i in rows], [table.dec[i] for i in rows],
                                              [outcomes[i].radius for i in rows], bands)
    for k, why in problems.items():
        outcomes[rows[k]].status, outcomes[rows[k]].error = "no image", why
    kept: list[RowCuts] | None = None if request.layout == "row" else []
    with cutouts.busy():
        for group in groups:
            group.members = [(rows[k], target) for k, target in group.members]
            cut_group(ctx, cutouts, limits, group, outcomes, kept, folder=f"part-{part.index:05d}")
    if kept is not None:
        write_many(ctx, group_result_name(json.loads(part.key)["field"], part.index), kept, outcomes)
    ctx.put_result(f"manifest-part-{part.index:05d}.csv", manifest_csv(list(outcomes.values())), "text/csv")
    done = sum(o.status == "ok" for o in outcomes.values())
    return PartReport(done=done, failed=len(rows) - done)


def finish(ctx: JobContext[BulkRequest], ended: Sequence[tuple[Part, PartReport | None]]) -> None:
    """The manifest of every row: what each part wrote, or why a part failed for good."""
    table = _table(ctx)
    rows: list[RowOutcome] = read_manifest(ctx.read_result("manifest-unserved.csv"))
    for part, report in ended:
        written = ctx.read_result(f"manifest-part-{part.index:05d}.csv") if report is not None else None
        if written is not None:
            rows += read_manifest(written)
            continue
        for outcome in outcomes_of(table, ctx.params, json.loads(part.key)["rows"]).values():
            outcome.status, outcome.error = "failed", part.error or "its part of the job failed"
            rows.append(outcome)
    rows.sort(key=lambda o: o.row)
    write_manifests(ctx, rows)


def write_manifests(ctx: JobContext[BulkRequest], rows: Sequence[RowOutcome]) -> None:
    """``manifest.csv`` and ``manifest.xml``, each written to its file as it is made."""
    with ctx.result_writer("manifest.csv", "text/csv") as out:
        write_manifest_csv(rows, out)
    with ctx.result_writer("manifest.xml", "application/x-votable+xml") as out:
        write_manifest_votable(rows, out)


def bad_rows(table: PositionTable) -> list[RowOutcome]:
    return [RowOutcome(row, "", math.nan, math.nan, math.nan, "bad row", error=why) for row, why in table.bad]


def read_manifest(data: bytes | None) -> list[RowOutcome]:
    if not data:
        return []
    out = []
    for r in csv.DictReader(io.StringIO(data.decode())):
        out.append(RowOutcome(int(r["row"]), r["id"], _float(r["ra"]), _float(r["dec"]), _float(r["radius"]),
                              r["status"], r["result"], r["error"], r.get("extver") or "",
                              r.get("table_row") or ""))
    return out


def _float(text: str) -> float:
    return float(text) if text else math.nan


def run(ctx: JobContext[BulkRequest], cutouts: Cutouts) -> None:
    request = ctx.params
    table = read_positions(ctx.upload(request.upload), max(request.rows + request.bad_rows, 1))
    outcomes = outcomes_of(table, request)
    limits = cutouts.limits(ctx.job.owner)
    with cutouts.busy():
        for index, group in enumerate(plan(cutouts, table, request, outcomes)):
            kept: list[RowCuts] | None = None if request.layout == "row" else []
            cut_group(ctx, cutouts, limits, group, outcomes, kept)
            if kept is not None:
                write_many(ctx, group_result_name(group.field, index), kept, outcomes)
    write_manifests(ctx, sorted([*outcomes.values(), *bad_rows(table)], key=lambda o: o.row))


# --- the manifest ------------------------------------------------------------------------

COLUMNS = ("row", "id", "ra", "dec", "radius", "status", "result", "error", "extver", "table_row")


def manifest_csv(rows: Iterable[RowOutcome]) -> bytes:
    out = io.BytesIO()
    write_manifest_csv(rows, out)
    return out.getvalue()


def write_manifest_csv(rows: Iterable[RowOutcome], out: BinaryIO) -> None:
    text = io.TextIOWrapper(out, encoding="utf-8", errors="replace", newline="")
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in rows:
        writer.writerow([r.row, r.id, _num(r.ra), _num(r.dec), _num(r.radius), r.status, r.result, r.error,
                         r.extver, r.table_row])
    text.flush()
    text.detach()  # ``out`` stays open: its owner closes it


def _num(value: float) -> str:
    return f"{value:.10g}" if math.isfinite(value) else ""


VOTABLE = "http://www.ivoa.net/xml/VOTable/v1.3"
# The manifest's columns as VOTable FIELDs (VOTable 1.4 §4.2), in COLUMNS' order. ``char``
# is ASCII (§2.1): the caller's ids and the error texts, which may quote them, are unicodeChar.
_FIELDS = (
    {"name": "row", "datatype": "long", "ucd": "meta.number"},
    {"name": "id", "datatype": "unicodeChar", "arraysize": "*", "ucd": "meta.id"},
    {"name": "ra", "datatype": "double", "unit": "deg", "ucd": "pos.eq.ra"},
    {"name": "dec", "datatype": "double", "unit": "deg", "ucd": "pos.eq.dec"},
    {"name": "radius", "datatype": "double", "unit": "deg"},
    {"name": "status", "datatype": "char", "arraysize": "*", "ucd": "meta.code.status"},
    {"name": "result", "datatype": "char", "arraysize": "*", "ucd": "meta.ref.url"},
    {"name": "error", "datatype": "unicodeChar", "arraysize": "*", "ucd": "meta.code.error"},
    {"name": "extver", "datatype": "char", "arraysize": "*"},
    {"name": "table_row", "datatype": "char", "arraysize": "*"},
)
# What a unicodeChar (UCS-2, VOTable 1.4 §2.1) in XML 1.0 (§2.2) cannot hold: U+FFFD instead.
_NOT_UCS2_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd]")


def manifest_votable(rows: Iterable[RowOutcome]) -> bytes:
    out = io.BytesIO()
    write_manifest_votable(rows, out)
    return out.getvalue()


def write_manifest_votable(rows: Iterable[RowOutcome], out: BinaryIO) -> None:
    """The manifest as a VOTable 1.4 (TABLEDATA) into ``out``, row by row with lxml's
    incremental writer: about 10 µs a row (astropy's writer took 38: a million rows 38 s),
    nothing held but the row being written."""
    q = partial(str.format, "{{" + VOTABLE + "}}{}")
    with etree.xmlfile(out, encoding="utf-8") as xf:
        xf.write_declaration()
        with xf.element(q("VOTABLE"), version="1.4", nsmap={None: VOTABLE}), \
                xf.element(q("RESOURCE"), type="results"), xf.element(q("TABLE"), name="manifest"):
            for attrs in _FIELDS:
                xf.write("\n")
                with xf.element(q("FIELD"), attrs):
                    pass
            with xf.element(q("DATA")), xf.element(q("TABLEDATA")):
                tr, td = q("TR"), q("TD")
                for r in rows:
                    xf.write("\n")
                    with xf.element(tr):
                        for value in (str(r.row), _NOT_UCS2_XML.sub("\ufffd", r.id), _vo_num(r.ra),
                                      _vo_num(r.dec), _vo_num(r.radius), r.status, r.result,
                                      _NOT_UCS2_XML.sub("\ufffd", r.error), r.extver, r.table_row):
                            with xf.element(td):
                                xf.write(value)
                xf.write("\n")


def _vo_num(value: float) -> str:
    return repr(value) if math.isfinite(value) else "NaN"


def unfinished_refusal(limits: BulkLimits, anonymous: bool, unfinished: int) -> ServiceUnavailable:
    """The same refusal as the job allowance's unfinished job limit (429, Retry-After)."""
    whose = " from this client address" if anonymous else ""
    return ServiceUnavailable(
        f"bulk job limit reached: {unfinished} bulk jobs{whose} not yet finished (PENDING, QUEUED, "
        f"EXECUTING, HELD or SUSPENDED) and the limit is {limits.max_active_jobs} {limits.whom}; "
        f"run, abort or delete one, or try again when one has finished",
        status=429, headers={"Retry-After": "30"})


def unfinished_limit(limits: BulkLimits, anonymous: BulkLimits) -> Callable[[str | None], KindLimit]:
    """A caller's limit on bulk jobs not yet finished: a user's own, an anonymous caller's
    per client address (as the anonymous rate limit counts them: one address's jobs do not
    hold back another's). Counted with the job's insert (``uws.store.JobStore.create``)."""

    def of(owner: str | None) -> KindLimit:
        mine = anonymous if owner is None else limits
        return KindLimit(mine.max_active_jobs, partial(unfinished_refusal, mine, owner is None))

    return of


def bulk_job_kind(cutouts: Cutouts, limits: BulkLimits, anonymous: BulkLimits) -> JobKind[BulkRequest]:
    estimate = pixel_estimate(cutouts)

    def parse_with(pairs: Params, files: Uploads, owner: str | None) -> BulkRequest:
        return parse(pairs, files, anonymous if owner is None else limits, estimate)

    def no_files(pairs: Params, owner: str | None) -> BulkRequest:
        raise UsageError("a bulk job needs its position table (UPLOAD)")

    return JobKind(name="bulk", params_type=BulkRequest, parse=no_files, run=lambda ctx: run(ctx, cutouts),
                   shown=shown, uploads=1, parse_uploads=parse_with,
                   parts=lambda ctx: plan_parts(ctx, cutouts),
                   run_part=lambda ctx, part: run_part(ctx, part, cutouts), finish=finish,
                   unfinished_limit=unfinished_limit(limits, anonymous),
                   description="bulk cutouts: a table of positions, FITS files (one per row, or per image "
                               "field with LAYOUT=group or table), and a manifest")
