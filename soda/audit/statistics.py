"""The operators' usage statistics over the audit table (``GET /stats.json``).

Every figure is an aggregate the database computes (GROUP BY, COUNT, SUM, and ROW_NUMBER
over the latencies for their percentiles), in SQL that SQLite and PostgreSQL both run, over
the records since the start of the first day asked for (UTC); none reads the records into
Python, so memory is bounded by the groups (days x surveys x formats x kinds), not the
records; PostgreSQL's statement timeout bounds each scan. Days are UTC days
(``date(at)`` of the naive UTC times both databases store).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
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


def _from(db: pw.Database, served: type[pw.Model], since: dt.datetime) -> pw.Expression:
    """The records since ``since``. SQLite has no statistics to tell that a period holds
    most of the table and reads it through the index on ``at``, one lookup a row, ten times
    slower than a scan: ``+at`` makes it scan. PostgreSQL chooses by its own statistics."""
    if isinstance(db, pw.SqliteDatabase):
        return pw.Expression(pw.NodeList([pw.SQL("+"), served.at], glue=""), ">=", str(since))  # type: ignore[attr-defined]
    return served.at >= since  # type: ignore[attr-defined,no-any-return]


def usage(db: pw.Database, days: int, now: dt.datetime, jobs_by_phase: Mapping[str, int]) -> dict[str, Any]:
    """The statistics document of the last ``days`` UTC days (its fields: docs/architecture.md,
    "Usage statistics"); ``jobs_by_phase``: the jobs that exist now, by UWS phase.

    Four scans of the period's records: cutouts and bytes by day, survey, format and kind
    (at most days x surveys x formats x kinds groups, summed up here); the distinct users
    and jobs; the top users; the /sync latencies (their count and maximum, then the values at
    three ranks in one ordered pass)."""
    served = AuditTables(db).Served
    since, every_day = period(days, now)
    recent = _from(db, served, since)
    cutouts, sent = fn.COALESCE(fn.SUM(served.cutouts), 0), fn.COALESCE(fn.SUM(served.bytes), 0)
    day = fn.date(served.at).coerce(False)  # the day as the database gives it

    with session(db):
        groups = [(_day(d), survey, fmt, kind, int(c), int(b)) for d, survey, fmt, kind, c, b in
                  served.select(day, served.survey, served.format, served.kind, cutouts, sent).where(recent)
                  .group_by(day, served.survey, served.format, served.kind).tuples()]
        users, jobs, sync_requests = served.select(
            fn.COUNT(served.user_id.distinct()), fn.COUNT(served.job_id.distinct()),
            fn.COALESCE(fn.SUM(pw.Case(None, [(served.job_id.is_null(), 1)], 0)), 0)).where(recent).tuples()[0]
        top = (served.select(served.user_id, cutouts, sent).where(recent).group_by(served.user_id)
               .order_by(cutouts.desc(), sent.desc(), served.user_id).limit(TOP_USERS).tuples())
        top_users = [{"user": u, "cutouts": int(c), "bytes": int(b)} for u, c, b in top]
        latency = latency_percentiles(db, served, recent & (served.kind == "sync") & served.latency_ms.is_null(False))

    def summed(position: int, every: Iterable[str] = ()) -> list[tuple[str, int, int]]:
        """Cutouts and bytes by one dimension of the groups, most cutouts first (then by name)."""
        totals = {key: [0, 0] for key in every}
        for group in groups:
            total = totals.setdefault(group[position], [0, 0])
            total[0] += group[4]
            total[1] += group[5]
        return sorted(((k, c, b) for k, (c, b) in totals.items()), key=lambda t: (-t[1], t[0]))

    per_day = {d: (c, b) for d, c, b in summed(0)}
    kind_order = {k: i for i, k in enumerate(KINDS)}
    return {
        "since": _iso(since),
        "until": _iso(now),
        "days": days,
        "totals": {"cutouts": sum(g[4] for g in groups), "bytes": sum(g[5] for g in groups),
                   "requests": int(sync_requests) + int(jobs), "users": int(users)},
        "per_day": [{"day": d.isoformat(), "cutouts": per_day.get(d.isoformat(), (0, 0))[0],
                     "bytes": per_day.get(d.isoformat(), (0, 0))[1]} for d in every_day],
        "by_survey": [{"survey": k, "cutouts": c, "bytes": b} for k, c, b in summed(1)],
        "by_format": [{"format": k, "cutouts": c, "bytes": b} for k, c, b in summed(2)],
        "by_kind": [{"kind": k, "cutouts": c, "bytes": b} for k, c, b in
                    sorted(summed(3, KINDS), key=lambda t: (-t[1], kind_order.get(t[0], len(KINDS)), t[0]))],
        "jobs_by_phase": [{"phase": p, "jobs": n} for p, n in
                          sorted(jobs_by_phase.items(), key=lambda kv: (-kv[1], kv[0])) if n > 0],
        "top_users": top_users,
        "latency_ms": latency,
    }


def latency_percentiles(db: pw.Database, served: type[pw.Model], where: pw.Expression) -> dict[str, Any]:
    """Count, nearest-rank percentiles and maximum of the latencies of the records ``where``
    selects: the p-th percentile is the value at rank ceil(p/100 * n) in ascending order,
    read in one ordered pass (ROW_NUMBER, which SQLite 3.25+ and PostgreSQL have)."""
    column = served.latency_ms  # type: ignore[attr-defined]
    count, top = served.select(fn.COUNT(column), fn.MAX(column)).where(where).tuples()[0]
    out: dict[str, Any] = {"count": int(count)}
    if not count:
        return out | {f"p{p}": None for p in PERCENTILES} | {"max": None}
    ranks = {p: max(1, math.ceil(p / 100 * count)) for p in PERCENTILES}
    numbered = served.select(column.alias("value"), fn.ROW_NUMBER().over(order_by=[column]).alias("rank")
                             ).where(where).alias("numbered")
    rows = dict(pw.Select([numbered], [numbered.c.rank, numbered.c.value])
                .where(numbered.c.rank.in_(sorted(set(ranks.values())))).bind(db).tuples())
    for p, rank in ranks.items():
        out[f"p{p}"] = round(float(rows[rank]), 3)
    out["max"] = round(float(top), 3)
    return out
