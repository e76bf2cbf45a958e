"""/login/saml stores a row (the AuthnRequest id) before anyone is known, so it counts
against the anonymous rate limit of the client's address: a loop of logins cannot fill
the table."""

from __future__ import annotations

from pathlib import Path

from saml_idp import IdpState, make_key_and_cert

from auth.tables import AuthTables
from conftest import app_client


def idp_metadata(workdir: Path) -> Path:
    """The metadata of an IdP (never contacted: the login stops at its redirect)."""
    key, cert = make_key_and_cert(workdir, "idp.test")
    state = IdpState(base_url="http://idp.test", entity_id="http://idp.test/metadata",
                     key_file=key, cert_file=cert, sp_metadata_source="")
    path = workdir / "idp-metadata.xml"
    path.write_bytes(state.metadata())
    return path


def test_saml_logins_beyond_the_rate_limit_are_refused_without_a_row(tmp_path, demo_root) -> None:  # type: ignore[no-untyped-def]
    with app_client(tmp_path / "data", demo_root, CUTOUT_PUBLIC_URL="http://testserver",
                    CUTOUT_SAML_IDP_METADATA=str(idp_metadata(tmp_path)),
                    CUTOUT_ANONYMOUS_RATE_LIMIT="3", CUTOUT_ANONYMOUS_RATE_WINDOW_SECONDS="3600") as client:
        answers = [client.get("/login/saml") for _ in range(5)]
        assert [r.status_code for r in answers] == [302, 302, 302, 429, 429], answers[-1].text
        assert answers[0].headers["location"].startswith("http://idp.test/sso")
        assert "too many requests from 127.0.0.1: logins may make 3 per 3600 s" in answers[-1].text, answers[-1].text
        assert 0 < int(answers[-1].headers["Retry-After"]) <= 3600
        tables = AuthTables(client.app_state.runtime.db)  # type: ignore[attr-defined]
        with tables.db.connection_context():
            assert tables.SamlRequest.select().count() == 3
