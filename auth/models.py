"""The tables of auth/: personal API tokens and outstanding SAML requests.

They live in the service's database beside the job tables, bound through their own
proxy so that auth/ needs nothing from uws/.
"""

from __future__ import annotations

import peewee as pw

database_proxy = pw.DatabaseProxy()


class _Model(pw.Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False


class ApiToken(_Model):
    id = pw.CharField(primary_key=True, max_length=16)      # public handle, shown in lists
    user_id = pw.CharField(max_length=255, index=True)
    name = pw.CharField(max_length=100)
    digest = pw.CharField(max_length=64, unique=True)        # SHA-256 of the secret, never the secret
    created = pw.DateTimeField()
    expires = pw.DateTimeField()
    last_used = pw.DateTimeField(null=True)

    class Meta:
        table_name = "auth_api_token"


class SamlRequest(_Model):
    id = pw.CharField(primary_key=True, max_length=128)
    expires = pw.DateTimeField(index=True)

    class Meta:
        table_name = "auth_saml_request"


def setup(db: pw.Database) -> None:
    """Bind the tables to ``db`` and create the missing ones (idempotent, any process)."""
    database_proxy.initialize(db)
    with db.connection_context():
        db.create_tables([ApiToken, SamlRequest], safe=True)
