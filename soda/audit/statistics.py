"""The operators' usage statistics over the audit table (``GET /stats.json``).

Every figure is an aggregate the database computes (GROUP BY, COUNT, SUM, and ORDER BY with
LIMIT/OFFSET for the latency percentiles), in SQL that SQLite and PostgreSQL both run, over
the records since the start of the first day asked for (UTC); none reads the records into
Python, so the work is bounded by the database's indexes, not by memory. Days are UTC days
(``date(at)`` of the naive UTC times both databases store).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

import peewee as pw
from peewee import fn

from soda.audit.records import session
from soda.audit.tables import KINDS, AuditTables

TOP_USERS = 10
PERCENTILES = (50, 90, 99)


def period(days: int, now: dt.datetime) -> tuple[dt.datetime, list[dt.date]]:
    """The start of the first of ``days`` UTC days ending today, and those days, oldest first."""
    today = now.date()
    first = today - dt.timedelta(days=days - 1)
    return dt.datetime.combine(first, dt.time()), [first + dt.timedelta(days=i) for i in range(days)]


def _iso(value: dt.datetime) -> str:
    return value.replace(microsecond=0).isoformat() + "Z"


def _day(value: object) -> str:
    """``date(at)``: a string on SQLite, a date on PostgreSQL."""
    if isinstance(value, dt.datetime):
        value = value.date()
    return value.isoformat() if isinstance(value, dt.date) else str(value)[:10]


def usage(db: pw.Database, days: int, now: dt.datetime, jobs_by_phase: Mapping[str, int]) -> dict[str, Any]:
    """The statistics document of the last ``days`` UTC days (its fields: docs/architecture.md,
    "Usage statistics"); ``jobs_by_phase``: the jobs that exist now, by UWS phase."""
    served = AuditTables(db).Served
    since, every_day = period(days, now)
    recent = served.at >= since
    cutouts, sent = fn.COALESCE(fn.SUM(served.cutouts), 0), fn.COALESCE(fn.SUM(served.bytes), 0)
    day = fn.date(served.at).coerce(False)  # the day as the database gives it

    def grouped(column: pw.Field) -> list[tuple[str, int, int]]:
        rows = (served.select(column, cutouts, sent).where(recent).group_by(column)
                .order_by(cutouts.desc(), column).tuples())
        return [(str(key), int(c), int(b)) for key, c, b in rows]

    with session(db):
        total_cutouts, total_bytes, sync_requests, jobs, users = served.select(
            cutouts, sent, fn.COALESCE(fn.SUM(pw.Case(None, [(served.job_id.is_null(), 1)], 0)), 0),
            fn.COUNT(served.job_id.distinct()), fn.COUNT(served.user_id.distinct())).where(recent).tuples()[0]
        per_day = {_day(d): (int(c), int(b)) for d, c, b in
                   served.select(day, cutouts, sent).where(recent).group_by(day).tuples()}
        surveys, formats, kinds = grouped(served.survey), grouped(served.format), grouped(served.kind)
        top = (served.select(served.user_id, cutouts, sent).where(recent).group_by(served.user_id)
               .order_by(cutouts.desc(), sent.desc(), served.user_id).limit(TOP_USERS).tuples())
        top_users = [{"user": u, "cutouts": int(c), "bytes": int(b)} for u, c, b in top]
        latency = latency_percentiles(served, recent & (served.kind == "sync") & served.latency_ms.is_null(False))

    by_kind = {k: (c, b) for k, c, b in kinds}
    for kind in KINDS:
        by_kind.setdefault(kind, (0, 0))
    kind_order = {k: i for i, k in enumerate(KINDS)}
    return {
        "since": _iso(since),
        "until": _iso(now),
        "days": days,
        "totals": {"cutouts": int(total_cutouts), "bytes": int(total_bytes),
                   "requests": int(sync_requests) + int(jobs), "users": int(users)},
        "per_day": [{"day": d.isoformat(), "cutouts": per_day.get(d.isoformat(), (0, 0))[0],
                     "bytes": per_day.get(d.isoformat(), (0, 0))[1]} for d in every_day],
        "by_survey": [{"survey": s, "cutouts": c, "bytes": b} for s, c, b in surveys],
        "by_format": [{"format": f, "cutouts": c, "bytes": b} for f, c, b in formats],
        "by_kind": [{"kind": k, "cutouts": c, "bytes": b} for k, (c, b) in
                    sorted(by_kind.items(), key=lambda kv: (-kv[1][0], kind_order.get(kv[0], len(KINDS)), kv[0]))],
        "jobs_by_phase": [{"phase": p, "jobs": n} for p, n in
                          sorted(jobs_by_phase.items(), key=lambda kv: (-kv[1], kv[0])) if n > 0],
        "top_users": top_users,
        "latency_ms": latency,
    }


def latency_percentiles(served: type[pw.Model], where: pw.Expression) -> dict[str, Any]:
    """Count, nearest-rank percentiles and maximum of the latencies of the records ``where``
    selects: the p-th percentile is the value at rank ceil(p/100 * n) in ascending order."""
    column = served.latency_ms  # type: ignore[attr-defined]
    count, top = served.select(fn.COUNT(column), fn.MAX(column)).where(where).tuples()[0]
    out: dict[str, Any] = {"count": int(count)}
    for p in PERCENTILES:
        if not count:
            out[f"p{p}"] = None
            continue
        rank = max(1, math.ceil(p / 100 * count))
        value = served.select(column).where(where).order_by(column).limit(1).offset(rank - 1).scalar()
        out[f"p{p}"] = round(float(value), 3)
    out["max"] = round(float(top), 3) if count else None
    return out
