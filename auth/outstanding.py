"""Outstanding SAML AuthnRequest ids, kept in the database so that any web process
behind the load balancer can accept the IdP's answer (and accept it only once)."""

from __future__ import annotations

import datetime as dt

import peewee as pw

from auth.tables import AuthTables
from dali.timestamps import utcnow


class DatabaseOutstanding:
    def __init__(self, db: pw.Database) -> None:
        self.db = db
        self.SamlRequest = AuthTables(db).SamlRequest

    def add(self, request_id: str, expires_at: dt.datetime) -> None:
        expires = expires_at.astimezone(dt.UTC).replace(tzinfo=None) if expires_at.tzinfo else expires_at
        with self.db.connection_context():
            self.SamlRequest.delete().where(self.SamlRequest.expires < utcnow()).execute()
            self.SamlRequest.create(id=request_id, expires=expires)

    def pop(self, request_id: str) -> bool:
        """True once for a live id: the DELETE is the single winner of any race."""
        with self.db.connection_context():
            return self.SamlRequest.delete().where(
                (self.SamlRequest.id == request_id) & (self.SamlRequest.expires > utcnow())).execute() > 0
