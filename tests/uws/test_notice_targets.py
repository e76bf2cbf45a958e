"""uws.notices: which addresses a webhook may reach, and which NOTIFY values a job may
have, without HTTP (tests/uws/test_notify_jobs.py drives them through the app)."""

from __future__ import annotations

import dataclasses
import hmac
import ipaddress

import pytest

from conf import load_settings
from dali.errors import UsageError
from soda.ops.runtime import notice_config
from uws.delivery import Ending, mail_message, signature, webhook_body
from uws.notices import check_webhook, is_public, parse_targets

CONFIG = dataclasses.replace(notice_config(load_settings(environ={})), webhook_secret="k",
                             smtp_host="mail.example.org", mail_from="jobs@example.org")


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.8.9.10", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
    "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "240.0.0.1", "192.0.2.1",
    "::1", "::", "fe80::1", "fd12:3456::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
    "64:ff9b::7f00:1", "2002:7f00:1::1", "2001:db8::1",
])
def test_addresses_that_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


def test_a_name_is_judged_by_every_address_it_resolves_to() -> None:
    one_private = lambda host, port: ["8.8.8.8", "10.0.0.7"]  # noqa: E731 - a resolver that answers both
    with pytest.raises(UsageError, match="not a public address"):
        check_webhook("https://hooks.example.org/x", CONFIG, one_private)
    assert check_webhook("https://hooks.example.org/x", CONFIG, lambda h, p: ["8.8.8.8"]) == [
        ipaddress.ip_address("8.8.8.8")]
    with pytest.raises(UsageError, match="does not resolve"):
        check_webhook("https://hooks.example.org/x", CONFIG, lambda h, p: [])


def test_private_targets_when_the_service_allows_them() -> None:
    allowed = dataclasses.replace(CONFIG, allow_private_targets=True)
    assert check_webhook("https://localhost:8443/x", allowed)


def test_targets_are_deduplicated_and_bounded() -> None:
    values = ["mailto:a@example.org", " mailto:a@example.org", "https://8.8.8.8/h"]
    assert parse_targets(values, CONFIG, anonymous=False) == ["mailto:a@example.org", "https://8.8.8.8/h"]
    with pytest.raises(UsageError, match="at most 1"):
        parse_targets(values, dataclasses.replace(CONFIG, max_targets=1), anonymous=False)
    assert parse_targets([], None, anonymous=True) == []


@pytest.mark.parametrize(("anonymous", "target", "allowed"), [
    ("webhook", "https://8.8.8.8/h", True), ("webhook", "mailto:a@example.org", False),
    ("off", "https://8.8.8.8/h", False), ("all", "mailto:a@example.org", True),
])
def test_what_anonymous_callers_may_ask(anonymous: str, target: str, allowed: bool) -> None:
    config = dataclasses.replace(CONFIG, anonymous=anonymous)
    if allowed:
        assert parse_targets([target], config, anonymous=True) == [target]
    else:
        with pytest.raises(UsageError, match="log in"):
            parse_targets([target], config, anonymous=True)
    assert parse_targets([target], config, anonymous=False) == [target]


def test_webhooks_need_a_secret_and_mail_a_server() -> None:
    with pytest.raises(UsageError, match="no webhooks"):
        parse_targets(["https://8.8.8.8/h"], dataclasses.replace(CONFIG, webhook_secret=""), anonymous=False)
    with pytest.raises(UsageError, match="no e-mail"):
        parse_targets(["mailto:a@example.org"], dataclasses.replace(CONFIG, smtp_host=""), anonymous=False)


ENDING = Ending(job_id="j1", phase="ERROR", url="https://svc.example.org/async/j1", run_id="r",
                ended="2026-01-02T03:04:05.000Z", results=("https://svc.example.org/async/j1/results/a",),
                error="UsageError: bad")


def test_the_mail_names_the_job_its_phase_link_results_and_error() -> None:
    mail = mail_message(CONFIG, "a@example.org", ENDING)
    assert (mail["Subject"], mail["From"], mail["To"]) == ("Job j1 ERROR", "jobs@example.org", "a@example.org")
    body = mail.get_content()
    for line in ("Job: https://svc.example.org/async/j1", "Error: UsageError: bad", "Run id: r",
                 "  https://svc.example.org/async/j1/results/a"):
        assert line + "\n" in body


def test_the_signature_is_the_hmac_of_the_exact_body() -> None:
    body = webhook_body(ENDING, "d1", "2026-01-02T03:04:06.000Z")
    assert signature("k", body) == "sha256=" + hmac.new(b"k", body, "sha256").hexdigest()
    assert signature("k", body + b" ") != signature("k", body)
    assert signature("other", body) != signature("k", body)
