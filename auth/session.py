"""The browser session: who logged in, how, and the CSRF token of their forms.

Sessions live on the server, in the ``auth_session`` table: at login a random session id
(256 bits) is made, and only its SHA-256 digest is stored, beside the user, the login
method, the expiry, the CSRF token of the session's forms and the ID token kept for
RP-initiated logout. The browser's cookie (Starlette's signed ``SessionMiddleware``
cookie: HttpOnly, SameSite=Lax, Secure unless configured otherwise) carries the session id
alone. Every use checks the table, so a session that was logged out (or revoked
everywhere, or expired) is gone even if its cookie is replayed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import peewee as pw
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from auth.tables import AuthTables
from dali.timestamps import utcnow

_SID = "sid"
_RESOLVED = "auth.session_user"   # the request scope's cache of the session looked up
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
# Writing last_seen on every request would turn reads into writes; once a minute is enough.
TOUCH_EVERY = dt.timedelta(seconds=60)


@dataclass(frozen=True)
class SessionUser:
    user_id: str
    method: str              # "oidc" or "saml"
    id_token: str | None = None
    csrf: str = ""
    expires: dt.datetime | None = None


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    """The server side of browser sessions (blocking: call it off the event loop)."""

    def __init__(self, db: pw.Database, lifetime_seconds: int) -> None:
        self.db = db
        self.lifetime = dt.timedelta(seconds=lifetime_seconds)
        self.AuthSession = AuthTables(db).AuthSession

    def create(self, user_id: str, method: str, id_token: str | None = None) -> tuple[str, SessionUser]:
        """A new session: the id for the cookie (not kept) and what it stands for.
        Expired sessions are cleaned on the way."""
        session_id = secrets.token_urlsafe(32)
        now = utcnow()
        user = SessionUser(user_id, method, id_token, secrets.token_urlsafe(24), now + self.lifetime)
        with self.db.connection_context():
            self.AuthSession.delete().where(self.AuthSession.expires <= now).execute()
            self.AuthSession.create(id=_digest(session_id), user_id=user_id, method=method,
                                    id_token=id_token, csrf=user.csrf, created=now,
                                    expires=user.expires, last_seen=now)
        return session_id, user

    def check(self, session_id: str) -> SessionUser | None:
        """The live session of this id, or None (unknown, revoked or expired: an expired
        row is deleted when met)."""
        with self.db.connection_context():
            row = self.AuthSession.get_or_none(self.AuthSession.id == _digest(session_id))
            if row is None:
                return None
            now = utcnow()
            if row.expires <= now:
                self.AuthSession.delete().where(self.AuthSession.id == row.id).execute()
                return None
            if row.last_seen is None or now - row.last_seen > TOUCH_EVERY:
                self.AuthSession.update(last_seen=now).where(self.AuthSession.id == row.id).execute()
            return SessionUser(row.user_id, row.method, row.id_token, row.csrf, row.expires)

    def revoke(self, session_id: str) -> bool:
        with self.db.connection_context():
            return self.AuthSession.delete().where(
                self.AuthSession.id == _digest(session_id)).execute() > 0

    def revoke_all(self, user_id: str) -> int:
        """Log a user out everywhere: every session of theirs, in every browser."""
        with self.db.connection_context():
            return int(self.AuthSession.delete().where(self.AuthSession.user_id == user_id).execute())

    def sweep(self) -> int:
        """Delete the expired sessions."""
        with self.db.connection_context():
            return int(self.AuthSession.delete().where(self.AuthSession.expires <= utcnow()).execute())


async def start_session(request: Request, store: SessionStore, user_id: str, method: str,
                        id_token: str | None = None) -> SessionUser:
    """Log the browser in with a fresh session id; any earlier session content is dropped
    and its server-side session ended (no session fixation)."""
    old = request.session.get(_SID)
    if isinstance(old, str) and old:
        await run_in_threadpool(store.revoke, old)
    request.session.clear()
    session_id, user = await run_in_threadpool(store.create, user_id, method, id_token)
    request.session[_SID] = session_id
    request.scope[_RESOLVED] = user
    return user


async def end_session(request: Request, store: SessionStore, everywhere: bool = False) -> None:
    """Log out: the server-side session is deleted (with ``everywhere``, every session of
    the same user), and the cookie emptied."""
    if "session" not in request.scope:
        return
    session_id = request.session.get(_SID)
    if isinstance(session_id, str) and session_id:
        user = await session_user(request, store)
        if everywhere and user is not None:
            await run_in_threadpool(store.revoke_all, user.user_id)  # this session too
        else:
            await run_in_threadpool(store.revoke, session_id)
    request.session.clear()
    request.scope[_RESOLVED] = None


async def session_user(request: Request, store: SessionStore) -> SessionUser | None:
    """Who the session cookie stands for, checked against the table (once per request)."""
    if "session" not in request.scope:
        return None
    if _RESOLVED in request.scope:
        resolved: SessionUser | None = request.scope[_RESOLVED]
        return resolved
    session_id = request.session.get(_SID)
    user = None
    if isinstance(session_id, str) and session_id:
        user = await run_in_threadpool(store.check, session_id)
        if user is None:  # logged out, revoked or expired: the browser forgets it too
            del request.session[_SID]
    request.scope[_RESOLVED] = user
    return user


def csrf_token(request: Request) -> str:
    """The CSRF token of the request's session, once ``session_user`` has found it."""
    user = request.scope.get(_RESOLVED)
    return user.csrf if isinstance(user, SessionUser) else ""


def csrf_ok(request: Request, submitted: str | None) -> bool:
    expected = csrf_token(request)
    return bool(expected and submitted) and hmac.compare_digest(expected, submitted or "")


def load_or_create_secret(path: Path) -> str:
    """The session signing key kept in ``path`` (created 0600 on first use)."""
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = secrets.token_urlsafe(48)
    with open(path, "x", opener=lambda p, flags: os.open(p, flags, 0o600)) as fh:
        fh.write(secret + "\n")
    return secret
