"""The tables of auth/: personal API tokens, browser sessions and outstanding SAML requests.

They live in the service's database beside the job tables. ``AuthTables(db)`` makes
model classes bound to ``db`` alone (no module-level database); ``MIGRATIONS`` is run
by the service's one migration runner.
"""

from __future__ import annotations

from collections.abc import Callable

import peewee as pw


class AuthTables:
    def __init__(self, db: pw.Database) -> None:
        self.db = db

        class Base(pw.Model):
            class Meta:
                database = db
                legacy_table_names = False

        class ApiToken(Base):
            id = pw.CharField(primary_key=True, max_length=16)      # public handle, shown in lists
            user_id = pw.CharField(max_length=255, index=True)
            name = pw.CharField(max_length=100)
            digest = pw.CharField(max_length=64, unique=True)        # SHA-256 of the secret, never the secret
            created = pw.DateTimeField()
            expires = pw.DateTimeField()
            last_used = pw.DateTimeField(null=True)

            class Meta:
                table_name = "auth_api_token"

        class SamlRequest(Base):
            id = pw.CharField(primary_key=True, max_length=128)
            expires = pw.DateTimeField(index=True)

            class Meta:
                table_name = "auth_saml_request"

        class AuthSession(Base):
            id = pw.CharField(primary_key=True, max_length=64)       # SHA-256 of the cookie's session id
            user_id = pw.CharField(max_length=255, index=True)
            method = pw.CharField(max_length=16)                     # "oidc" or "saml"
            id_token = pw.TextField(null=True)                       # for RP-initiated logout
            csrf = pw.CharField(max_length=64)
            created = pw.DateTimeField()
            expires = pw.DateTimeField(index=True)
            last_seen = pw.DateTimeField(null=True)

            class Meta:
                table_name = "auth_session"

        self.ApiToken = ApiToken
        self.AuthSession = AuthSession
        self.SamlRequest = SamlRequest


def _v1(db: pw.Database) -> None:
    tables = AuthTables(db)
    # safe: databases made before this runner already have them
    db.create_tables([tables.ApiToken, tables.SamlRequest], safe=True)


def _v2(db: pw.Database) -> None:
    db.create_tables([AuthTables(db).AuthSession], safe=True)


# Append migrations here; never edit one that has shipped.
MIGRATIONS: list[Callable[[pw.Database], None]] = [_v1, _v2]
