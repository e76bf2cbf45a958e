"""Server-side browser sessions: the cookie carries a session id only, the table decides.

A session is created, checked, revoked (alone or everywhere) and expires; a cookie
replayed after logout is anonymous; the cookie holds neither the ID token nor the CSRF
token.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import peewee as pw
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from auth.session import SessionStore, csrf_ok, csrf_token, end_session, session_user, start_session
from auth.tables import MIGRATIONS, AuthTables

ID_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLW9mLXRoZS1wcm92aWRlcg"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[pw.Database]:
    database = pw.SqliteDatabase(str(tmp_path / "auth.db"))
    for migration in MIGRATIONS:
        migration(database)
    yield database
    database.close()


def test_create_check_and_revoke(db: pw.Database) -> None:
    store = SessionStore(db, 3600)
    sid, made = store.create("alice", "oidc", ID_TOKEN)
    assert len(base64.urlsafe_b64decode(sid + "==")) >= 16        # at least 128 random bits
    user = store.check(sid)
    assert user is not None and (user.user_id, user.method, user.id_token) == ("alice", "oidc", ID_TOKEN)
    assert user.csrf == made.csrf and len(user.csrf) >= 22
    # Only the digest of the id is stored, as with API tokens.
    with db.connection_context():
        stored = [r.id for r in AuthTables(db).AuthSession.select()]
    assert stored == [hashlib.sha256(sid.encode()).hexdigest()] and sid not in stored
    assert store.check("not-a-session") is None
    assert store.revoke(sid)
    assert store.check(sid) is None
    assert not store.revoke(sid)


def test_an_expired_session_is_refused_and_cleaned(db: pw.Database) -> None:
    store = SessionStore(db, 3600)
    sid, _ = store.create("alice", "saml")
    other, _ = store.create("bob", "saml")
    table = AuthTables(db).AuthSession
    past = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(seconds=1)
    with db.connection_context():
        table.update(expires=past).execute()
    assert store.check(sid) is None                                   # refused, and deleted on use
    with db.connection_context():
        assert table.select().count() == 1
    assert store.sweep() == 1                                         # the runtime's cleaning
    assert store.check(other) is None
    with db.connection_context():
        assert table.select().count() == 0


def test_logout_everywhere_revokes_every_session_of_the_user(db: pw.Database) -> None:
    store = SessionStore(db, 3600)
    laptop, _ = store.create("alice", "oidc")
    phone, _ = store.create("alice", "saml")
    bobs, _ = store.create("bob", "oidc")
    assert store.revoke_all("alice") == 2
    assert store.check(laptop) is None and store.check(phone) is None
    assert store.check(bobs) is not None


def _app(store: SessionStore) -> Starlette:
    async def login(request: Request) -> JSONResponse:
        await start_session(request, store, "alice", "oidc", ID_TOKEN)
        return JSONResponse({})

    async def me(request: Request) -> JSONResponse:
        user = await session_user(request, store)
        csrf = request.headers.get("x-csrf-token")
        return JSONResponse({"user": user.user_id if user else None, "csrf": csrf_token(request),
                             "csrf_ok": csrf_ok(request, csrf)})

    async def logout(request: Request) -> JSONResponse:
        await end_session(request, store, everywhere=request.query_params.get("everywhere") == "1")
        return JSONResponse({})

    return Starlette(routes=[Route("/login", login), Route("/me", me), Route("/logout", logout)],
                     middleware=[Middleware(SessionMiddleware, secret_key="test-secret", same_site="lax")])


def _cookie_content(cookie: str) -> dict:  # type: ignore[type-arg]
    payload = cookie.split(".")[0]
    return dict(json.loads(base64.b64decode(payload + "==")))


def test_the_cookie_holds_the_session_id_only(db: pw.Database) -> None:
    store = SessionStore(db, 3600)
    with TestClient(_app(store)) as browser:
        browser.get("/login")
        cookie = browser.cookies["session"]
        me = browser.get("/me").json()
        assert me["user"] == "alice" and me["csrf"]
        content = _cookie_content(cookie)
        assert list(content) == ["sid"]
        assert ID_TOKEN not in json.dumps(content) and me["csrf"] not in json.dumps(content)
        assert browser.get("/me", headers={"x-csrf-token": me["csrf"]}).json()["csrf_ok"]
        assert not browser.get("/me", headers={"x-csrf-token": "guess"}).json()["csrf_ok"]


def test_a_cookie_replayed_after_logout_is_anonymous(db: pw.Database) -> None:
    store = SessionStore(db, 3600)
    with TestClient(_app(store)) as browser:
        browser.get("/login")
        stolen = browser.cookies["session"]
        browser.get("/logout")
        assert browser.get("/me").json()["user"] is None
    with TestClient(_app(store)) as replay:
        replay.cookies.set("session", stolen)
        assert replay.get("/me").json() == {"user": None, "csrf": "", "csrf_ok": False}


def test_a_new_login_ends_the_session_it_replaces(db: pw.Database) -> None:
    store = SessionStore(db, 3600)
    with TestClient(_app(store)) as browser:
        browser.get("/login")
        first = browser.cookies["session"]
        browser.get("/login")
        assert browser.get("/me").json()["user"] == "alice"
    with TestClient(_app(store)) as replay:
        replay.cookies.set("session", first)
        assert replay.get("/me").json()["user"] is None


def test_logout_everywhere_ends_the_other_browsers_sessions(db: pw.Database) -> None:
    store = SessionStore(db, 3600)
    with TestClient(_app(store)) as laptop, TestClient(_app(store)) as phone:
        laptop.get("/login")
        phone.get("/login")
        assert phone.get("/me").json()["user"] == "alice"
        laptop.get("/logout", params={"everywhere": "1"})
        assert phone.get("/me").json()["user"] is None

