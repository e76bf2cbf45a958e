"""A link to /login/oidc (from any site: it is a GET) does not end the session it finds."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from itsdangerous import TimestampSigner
from starlette.responses import RedirectResponse

from conftest import app_client

OIDC = {"CUTOUT_OIDC_ISSUER": "http://127.0.0.1:9/never-contacted", "CUTOUT_OIDC_CLIENT_ID": "cutout"}


def session_cookie(data_dir: Path, content: dict) -> str:  # type: ignore[type-arg]
    """A session cookie as the service signs it (Starlette's SessionMiddleware)."""
    secret = (data_dir / "secrets" / "session.key").read_text().strip()
    return TimestampSigner(secret).sign(base64.b64encode(json.dumps(content).encode())).decode()


def test_a_login_link_does_not_log_the_user_out(tmp_path: Path, demo_root: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    async def to_the_provider(request, redirect_uri):  # type: ignore[no-untyped-def]
        return RedirectResponse("https://idp.example.org/authorize", status_code=302)

    data = tmp_path / "data"
    with app_client(data, demo_root, **OIDC) as c:
        monkeypatch.setattr(c.app_state.access.oidc, "redirect", to_the_provider)  # type: ignore[attr-defined]
        sid, _ = c.app_state.access.sessions.create("alice", "oidc")  # type: ignore[attr-defined]
        c.cookies.set("cutout_session", session_cookie(data, {"sid": sid}))
        assert c.get("/whoami").json()["user"] == "alice"
        assert c.get("/login/oidc", params={"next": "/"}).status_code == 302  # off to the provider
        assert c.get("/whoami").json()["user"] == "alice"
