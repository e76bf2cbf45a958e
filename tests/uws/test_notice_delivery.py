"""uws.delivery on the wire: a webhook over TLS to the address checked, with the URL's
name for SNI, Host and the certificate; no redirects; every attempt bounded in time;
e-mail over STARTTLS with a login."""

from __future__ import annotations

import dataclasses
import datetime as dt
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conf import load_settings
from conftest import WebhookReceiver, free_port
from soda.ops.runtime import notice_config
from uws.delivery import DeliveryFailed, Ending, post_webhook, send_mail

CONFIG = dataclasses.replace(notice_config(load_settings(environ={})), webhook_secret="k",
                             allow_private_targets=True, allow_http=True, timeout_seconds=1.0)
BODY = b'{"job_id":"j"}'
ENDING = Ending(job_id="j1", phase="COMPLETED", url="https://svc.example.org/async/j1", run_id=None,
                ended=None, results=(), error=None)


def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A certificate for ``name`` only (no IP address in it), and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture
def tls_hook(tmp_path: Path) -> Iterator[tuple[WebhookReceiver, Path]]:
    cert, key = self_signed(tmp_path, "localhost")
    receiver = WebhookReceiver(tls=(cert, key))
    yield receiver, cert
    receiver.close()


def test_https_goes_to_the_checked_address_under_the_urls_name(tls_hook, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    hook, cert = tls_hook
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust the test's certificate only
    url = f"https://localhost:{hook.port}/in?x=1"
    assert post_webhook(CONFIG, url, BODY, {"Content-Type": "application/json"}) == 200
    path, headers, body, _ = hook.received[0]
    assert (path, headers["Host"], body) == ("/in?x=1", f"localhost:{hook.port}", BODY)


def test_https_checks_the_certificate(tls_hook, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    hook, cert = tls_hook
    with pytest.raises(DeliveryFailed, match="CERTIFICATE_VERIFY_FAILED"):  # not trusted
        post_webhook(CONFIG, f"https://localhost:{hook.port}/in", BODY, {})
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    with pytest.raises(DeliveryFailed, match="CERTIFICATE_VERIFY_FAILED"):  # not the name it was given for
        post_webhook(CONFIG, f"https://127.0.0.1:{hook.port}/in", BODY, {})
    assert hook.received == []


def test_a_redirect_is_not_followed() -> None:
    target = WebhookReceiver()
    hook = WebhookReceiver(statuses=(302,), headers={"Location": target.url + "/elsewhere"})
    try:
        with pytest.raises(DeliveryFailed, match="answered 302") as failed:
            post_webhook(CONFIG, hook.url + "/in", BODY, {})
        assert not failed.value.permanent  # tried again later, like any other answer
        assert len(hook.received) == 1 and target.received == []
    finally:
        hook.close()
        target.close()


def test_a_receiver_that_never_answers_costs_the_timeout() -> None:
    with socket.socket() as silent:  # accepts connections (the backlog), never reads or answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        started = time.monotonic()
        with pytest.raises(DeliveryFailed, match="timed out"):
            post_webhook(CONFIG, f"http://127.0.0.1:{silent.getsockname()[1]}/in", BODY, {})
        assert time.monotonic() - started < 3 * CONFIG.timeout_seconds


def test_a_target_no_longer_allowed_is_given_up_at_once() -> None:
    strict = dataclasses.replace(CONFIG, allow_private_targets=False)
    with pytest.raises(DeliveryFailed, match="not a public address") as failed:
        post_webhook(strict, "http://127.0.0.1:9/in", BODY, {})
    assert failed.value.permanent


def test_mail_over_starttls_with_a_login(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    cert, key = self_signed(tmp_path, "localhost")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    received: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]  # noqa: N802
            received.append(envelope.content)
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"jobs", b"pw")
        return AuthResult(success=ok)

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=tls, require_starttls=True,
                            authenticator=authenticator, auth_required=True)
    controller.start()
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        config = dataclasses.replace(CONFIG, smtp_host="localhost", smtp_port=port, smtp_security="starttls",
                                     smtp_user="jobs", smtp_password="pw", mail_from="jobs@example.org",
                                     timeout_seconds=5.0)
        send_mail(config, "a@example.org", ENDING)
        assert len(received) == 1 and b"Subject: Job j1 COMPLETED" in received[0]
        with pytest.raises(DeliveryFailed, match="530") as refused:  # no login: authentication required
            send_mail(dataclasses.replace(config, smtp_user=""), "a@example.org", ENDING)
        assert refused.value.permanent and len(received) == 1
    finally:
        controller.stop()
