"""The scheduled sweeps delete expired API tokens, sessions and SAML requests (they were
deleted only when met, or at the next login), on SQLite and on real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import pytest

from auth.outstanding import DatabaseOutstanding
from auth.session import SessionStore
from auth.tables import AuthTables
from auth.tokens import TokenStore
from conf import Settings
from conftest import app_client
from dali.timestamps import utcnow
from soda.ops.database import migrate, open_database
from soda.ops.runtime import Runtime, uws_config
from storage import LocalStore
from uws import UWSService
from uws.notify import LocalNotifier
from uws.store import JobStore
from uws.tables import MIGRATIONS


@pytest.fixture(params=["sqlite", "postgresql"])
def runtime(request, tmp_path, demo_root) -> Iterator[Runtime]:  # type: ignore[no-untyped-def]
    env = {} if request.param == "sqlite" else {"CUTOUT_DATABASE_URL": request.getfixturevalue("postgres_url")}
    with app_client(tmp_path / "data", demo_root, CUTOUT_API_TOKEN_EXPIRED_KEPT_DAYS="2", **env) as client:
        yield client.app_state.runtime  # type: ignore[attr-defined]


def test_the_sweep_deletes_expired_logins_and_keeps_live_ones(runtime: Runtime) -> None:
    db, now, user = runtime.db, utcnow(), f"user-{uuid.uuid4().hex[:8]}"  # PostgreSQL is shared
    tokens = TokenStore(db)
    live, _ = tokens.create(user, "live", now + dt.timedelta(days=1))
    lately, _ = tokens.create(user, "expired lately", now - dt.timedelta(days=1))  # still named as expired
    long_ago, _ = tokens.create(user, "expired long ago", now - dt.timedelta(days=3))
    sessions = SessionStore(db, lifetime_seconds=3600)
    sessions.create(user, "oidc")
    old = SessionStore(db, lifetime_seconds=1)
    old.create(user, "saml")
    outstanding = DatabaseOutstanding(db)
    live_request, old_request = f"id-{uuid.uuid4().hex}", f"id-{uuid.uuid4().hex}"
    outstanding.add(live_request, now + dt.timedelta(minutes=5))
    outstanding.add(old_request, now + dt.timedelta(seconds=1))

    runtime.uws.sweep()  # nothing has expired yet but the token 3 days ago
    assert [t.name for t in tokens.list(user)] == ["live", "expired lately"]

    later = now + dt.timedelta(seconds=2)  # the session and the request of 1 s have expired
    assert runtime.uws.sweep_hooks["auth"](later) >= 2
    tables = AuthTables(db)
    with db.connection_context():
        assert [s.method for s in tables.AuthSession.select().where(tables.AuthSession.user_id == user)] == ["oidc"]
        requests = {r.id for r in tables.SamlRequest.select().where(
            tables.SamlRequest.id.in_([live_request, old_request]))}
    assert requests == {live_request}
    assert {t.id for t in tokens.list(user)} == {live.id, lately.id} and long_ago.id


def test_a_failing_sweep_hook_is_logged_and_the_others_run(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    db = open_database(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    migrate(db, [("uws", MIGRATIONS)])
    service = UWSService(uws_config(Settings()), JobStore(db, LocalNotifier()), LocalStore(tmp_path / "r"),
                         LocalNotifier())

    def broken(now: dt.datetime) -> int:
        raise RuntimeError("database gone")

    service.sweep_hooks.update({"broken": broken, "idle": lambda now: 0, "busy": lambda now: 3})
    assert service.sweep().others == {"busy": 3}
    assert "sweep broken failed" in caplog.text
    db.close()
