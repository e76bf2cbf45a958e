"""The auth settings: validated at start, secrets from the environment or files, safe
cookie defaults."""

from __future__ import annotations

import stat

import pytest

from conf import ConfigError, load_settings


def test_bad_auth_values_each_get_a_message(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as caught:
        load_settings({"CUTOUT_DATA_DIR": str(tmp_path), "CUTOUT_OIDC_ISSUER": "ftp://idp",
                       "CUTOUT_ANONYMOUS_ASYNC": "sometimes", "CUTOUT_ANONYMOUS_RATE_LIMIT": "-1",
                       "CUTOUT_OIDC_SCOPES": "profile", "CUTOUT_ANONYMOUS_MAX_CUTOUT_PIXELS": "0"})
    text = "\n".join(caught.value.problems)
    for name in ("OIDC_ISSUER", "ANONYMOUS_ASYNC", "ANONYMOUS_RATE_LIMIT", "OIDC_SCOPES",
                 "ANONYMOUS_MAX_CUTOUT_PIXELS"):
        assert f"CUTOUT_{name}=" in text, text


def test_login_cross_checks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as caught:
        load_settings({"CUTOUT_DATA_DIR": str(tmp_path), "CUTOUT_OIDC_ISSUER": "https://idp.example.org",
                       "CUTOUT_SAML_IDP_METADATA": str(tmp_path / "missing.xml"),
                       "CUTOUT_SESSION_SECRET_FILE": str(tmp_path / "nope"),
                       "CUTOUT_API_TOKEN_DEFAULT_DAYS": "400"})
    text = "\n".join(caught.value.problems)
    assert "CUTOUT_OIDC_CLIENT_ID: required" in text
    assert "CUTOUT_PUBLIC_URL: required" in text
    assert "missing.xml: no such file" in text
    assert "CUTOUT_SESSION_SECRET_FILE" in text and "API_TOKEN_DEFAULT_DAYS=400" in text


def test_secrets_come_from_the_environment_or_a_file_and_are_masked(tmp_path) -> None:  # type: ignore[no-untyped-def]
    secret_file = tmp_path / "client-secret"
    secret_file.write_text("from-a-file\n")
    settings = load_settings({"CUTOUT_DATA_DIR": str(tmp_path), "CUTOUT_OIDC_CLIENT_SECRET_FILE": str(secret_file)})
    assert settings.auth.secret("oidc_client_secret") == "from-a-file"
    settings = load_settings({"CUTOUT_DATA_DIR": str(tmp_path), "CUTOUT_OIDC_CLIENT_SECRET": "from-env",
                              "CUTOUT_SESSION_SECRET": "s3cret"})
    assert settings.auth.secret("oidc_client_secret") == "from-env"
    shown = repr(settings.describe())
    assert "from-env" not in shown and "s3cret" not in shown


def test_session_cookie_is_secure_by_default_and_its_key_is_private(tmp_path, demo_root) -> None:  # type: ignore[no-untyped-def]
    from starlette.middleware.sessions import SessionMiddleware

    from conftest import link_demo
    from soda.web.app import create_app

    link_demo(tmp_path, demo_root)
    settings = load_settings({"CUTOUT_DATA_DIR": str(tmp_path)})
    assert settings.auth.session_cookie_secure
    app = create_app(settings, build_demo=False)
    [session] = [m for m in app.user_middleware if m.cls is SessionMiddleware]
    assert session.kwargs["https_only"] is True and session.kwargs["same_site"] == "lax"
    key = tmp_path / "secrets" / "session.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_text().strip()) >= 48
    app.state.runtime.close()


@pytest.mark.parametrize("given,kept", [
    ("/whoami", "/whoami"), ("/async?PHASE=RUN", "/async?PHASE=RUN"), (None, "/tokens"),
    ("//evil.example", "/tokens"), ("/\\evil.example", "/tokens"), ("https://evil.example/", "/tokens"),
    ("whoami", "/tokens"), ("/" + "a" * 90, "/tokens"), ("/x\r\nSet-Cookie: a=b", "/tokens")])
def test_login_returns_only_to_a_local_path(given, kept) -> None:  # type: ignore[no-untyped-def]
    from soda.web.accounts import _safe_next
    assert _safe_next(given) == kept
