"""The bulk job kind with an audit record per part: one record for each part's rows cut
(never one per row), written when the part has run, by whichever worker ran it."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import time
from collections.abc import Callable

from dali.timestamps import utcnow
from soda.audit.records import AuditLog, Served
from soda.jobs.bulk import BulkRequest
from uws.kinds import JobContext, JobKind, Part, PartReport


def part_survey(key: str) -> str:
    """The survey of a part's image field (``soda.plan.FieldGroup.field``: survey:field)."""
    try:
        field = json.loads(key).get("field", "")
    except (ValueError, AttributeError):
        return ""
    return str(field).partition(":")[0] if ":" in str(field) else ""


def rows_cut(manifest: bytes | None) -> int:
    """The rows of a bulk job's manifest that were cut."""
    if not manifest:
        return 0
    return sum(row.get("status") == "ok" for row in csv.DictReader(io.StringIO(manifest.decode())))


def audited_bulk(kind: JobKind[BulkRequest], audit: AuditLog) -> JobKind[BulkRequest]:
    """``kind`` whose parts (and whole runs, for a job run without parts) are audited:
    cutouts are the rows cut, bytes the results written (files and manifest lines)."""
    run_part = kind.run_part
    run_whole = kind.run

    def record(ctx: JobContext[BulkRequest], survey: str, rows: int, written: int, started: float) -> None:
        audit.record(Served(utcnow(), ctx.job.owner, "bulk", survey, "fits", rows, written,
                            latency_ms=(time.perf_counter() - started) * 1000, job_id=ctx.job_id))

    def part(ctx: JobContext[BulkRequest], part: Part) -> PartReport:
        assert run_part is not None
        started, before = time.perf_counter(), ctx.bytes_written
        report = run_part(ctx, part)
        record(ctx, part_survey(part.key), report.done, ctx.bytes_written - before, started)
        return report

    def whole(ctx: JobContext[BulkRequest]) -> None:
        started, before = time.perf_counter(), ctx.bytes_written
        run_whole(ctx)
        record(ctx, "", rows_cut(ctx.read_result("manifest.csv")), ctx.bytes_written - before, started)

    parted: Callable[[JobContext[BulkRequest], Part], PartReport] | None = part if run_part is not None else None
    return dataclasses.replace(kind, run=whole, run_part=parted)
