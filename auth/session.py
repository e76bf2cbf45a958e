"""The browser session: who logged in, how, and the CSRF token of their forms.

The session itself is Starlette's signed cookie (``SessionMiddleware``): HttpOnly,
SameSite=Lax, Secure unless configured otherwise. It holds no secret of the provider's
beyond the ID token kept for RP-initiated logout.
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request

_USER = "user"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class SessionUser:
    user_id: str
    method: str              # "oidc" or "saml"
    id_token: str | None = None


def start_session(request: Request, user_id: str, method: str, id_token: str | None = None) -> None:
    """Log the browser in; any earlier session content is dropped (no session fixation)."""
    request.session.clear()
    request.session[_USER] = {"id": user_id, "method": method, "id_token": id_token,
                              "csrf": secrets.token_urlsafe(24)}


def end_session(request: Request) -> None:
    request.session.clear()


def session_user(request: Request) -> SessionUser | None:
    if "session" not in request.scope:
        return None
    data = request.session.get(_USER)
    if not isinstance(data, dict) or not data.get("id"):
        return None
    return SessionUser(str(data["id"]), str(data.get("method", "")), data.get("id_token"))


def csrf_token(request: Request) -> str:
    data = request.session.get(_USER) or {}
    return str(data.get("csrf", ""))


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
