"""The audit table (peewee), bound to one database, and its schema migrations.

``audit_served``: one row per answered ``/sync`` request, per async job's results and per
part of a bulk job (never one per stamp): who (the user id, or "anonymous", and the
client address of a ``/sync`` request), when (UTC), the survey and format, the kind
(sync, async, bulk), how many cutouts, the bytes of the answer or results, and how long
it took. Kept ``audit_keep_days`` (``AuditLog.purge``).
"""

from __future__ import annotations

from collections.abc import Callable

import peewee as pw

KINDS = ("sync", "async", "bulk")


class AuditTables:
    def __init__(self, db: pw.Database) -> None:
        self.db = db

        class Base(pw.Model):
            class Meta:
                database = db
                legacy_table_names = False

        class Served(Base):
            at = pw.DateTimeField(index=True)            # UTC, naive, when it was answered
            user_id = pw.CharField(max_length=255)       # "anonymous" for anonymous callers
            client = pw.CharField(max_length=64, null=True)  # the caller's address (/sync)
            kind = pw.CharField(max_length=8)            # KINDS
            survey = pw.CharField(max_length=64)         # "" when nothing was served
            format = pw.CharField(max_length=16)         # fits, png, jpeg
            cutouts = pw.IntegerField()
            bytes = pw.BigIntegerField()
            latency_ms = pw.DoubleField(null=True)       # /sync: request to answer; jobs: run time
            status = pw.SmallIntegerField(null=True)     # /sync: HTTP status (200, 204)
            job_id = pw.CharField(max_length=64, null=True)

            class Meta:
                table_name = "audit_served"

        self.Served = Served


def _v1(db: pw.Database) -> None:
    db.create_tables([AuditTables(db).Served])


# Append migrations here; never edit one that has shipped.
MIGRATIONS: list[Callable[[pw.Database], None]] = [_v1]
