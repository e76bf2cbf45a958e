"""The database components of the service and their migrations, in the order they are run:
the runtime migrates them at start, and a restore refuses a backup any of whose schemas
this code does not know, or knows only at an older version."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import peewee as pw

from auth import tables as auth_tables
from soda.audit import tables as audit_tables
from soda.index import tables as index_tables
from uws import tables as uws_tables

SCHEMAS: Sequence[tuple[str, Sequence[Callable[[pw.Database], None]]]] = (
    ("uws", uws_tables.MIGRATIONS),
    ("auth", auth_tables.MIGRATIONS),
    ("images", index_tables.MIGRATIONS),
    ("audit", audit_tables.MIGRATIONS),
)
