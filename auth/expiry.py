"""Deleting the rows of auth/ that have expired: API tokens, browser sessions and
outstanding SAML requests. Each is refused once expired; this keeps the tables from
growing with them (the service's scheduled sweeps call it)."""

from __future__ import annotations

import datetime as dt

import peewee as pw

from auth.tables import AuthTables


def delete_expired(db: pw.Database, now: dt.datetime, tokens_kept: dt.timedelta) -> int:
    """Delete what expired before ``now`` (naive UTC); an API token only ``tokens_kept``
    after it expired, so that until then its owner is told it expired (and sees it
    listed) rather than that it is unknown. Returns the rows deleted."""
    tables = AuthTables(db)
    with db.connection_context():
        deleted = tables.ApiToken.delete().where(tables.ApiToken.expires <= now - tokens_kept).execute()
        deleted += tables.AuthSession.delete().where(tables.AuthSession.expires <= now).execute()
        deleted += tables.SamlRequest.delete().where(tables.SamlRequest.expires <= now).execute()
    return int(deleted)
