"""Personal API tokens: shown once at creation, stored as a SHA-256 digest, with expiry.

A token is 32 random bytes (256 bits), so a plain digest is enough: there is nothing
to brute-force that a slow hash would protect.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from enum import Enum

import peewee as pw

from auth.tables import AuthTables
from dali.timestamps import utcnow

PREFIX = "cut_"
# Writing last_used on every request would turn reads into writes; once a minute is enough.
TOUCH_EVERY = dt.timedelta(seconds=60)


@dataclass(frozen=True)
class TokenInfo:
    id: str
    user_id: str
    name: str
    created: dt.datetime
    expires: dt.datetime
    last_used: dt.datetime | None

    def as_json(self) -> dict[str, str | None]:
        def iso(t: dt.datetime | None) -> str | None:
            return t.replace(microsecond=0).isoformat() + "Z" if t else None
        return {"id": self.id, "name": self.name, "created": iso(self.created),
                "expires": iso(self.expires), "last_used": iso(self.last_used)}


class Check(Enum):
    VALID = "valid"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _info(row: pw.Model) -> TokenInfo:
    return TokenInfo(row.id, row.user_id, row.name, row.created, row.expires, row.last_used)


def looks_like_token(value: str) -> bool:
    return value.startswith(PREFIX)


class TokenStore:
    def __init__(self, db: pw.Database) -> None:
        self.db = db
        self.ApiToken = AuthTables(db).ApiToken

    def create(self, user_id: str, name: str, expires: dt.datetime) -> tuple[TokenInfo, str]:
        """A new token: its record and the secret (which is not kept)."""
        if expires.tzinfo is not None:  # stored, like every time here, as naive UTC
            expires = expires.astimezone(dt.UTC).replace(tzinfo=None)
        secret = PREFIX + secrets.token_urlsafe(32)
        with self.db.connection_context():
            row = self.ApiToken.create(id=secrets.token_hex(6), user_id=user_id, name=name,
                                       digest=_digest(secret), created=utcnow(), expires=expires)
        return _info(row), secret

    def list(self, user_id: str) -> list[TokenInfo]:
        with self.db.connection_context():
            rows = self.ApiToken.select().where(self.ApiToken.user_id == user_id).order_by(self.ApiToken.created)
            return [_info(r) for r in rows]

    def revoke(self, user_id: str, token_id: str) -> bool:
        with self.db.connection_context():
            return self.ApiToken.delete().where(
                (self.ApiToken.id == token_id) & (self.ApiToken.user_id == user_id)).execute() > 0

    def check(self, secret: str) -> tuple[Check, TokenInfo | None]:
        with self.db.connection_context():
            row = self.ApiToken.get_or_none(self.ApiToken.digest == _digest(secret))
            if row is None:
                return Check.UNKNOWN, None
            now = utcnow()
            if row.expires <= now:
                return Check.EXPIRED, _info(row)
            if row.last_used is None or now - row.last_used > TOUCH_EVERY:
                self.ApiToken.update(last_used=now).where(self.ApiToken.id == row.id).execute()
            return Check.VALID, _info(row)
