"""The DALI common code (dali/): the error family, request parameters, timestamps, the
VOTable error document, and the HTTP helpers on hand-built Starlette requests."""

from __future__ import annotations

import datetime as dt

import pytest
from starlette.requests import Request

from conftest import assert_votable
from dali.errors import (
    AuthenticationError,
    AuthorizationError,
    MultiValuedParamNotSupported,
    ServiceError,
    ServiceUnavailable,
    UsageError,
    not_found,
)
from dali.http import error_response, public_base, wants_votable
from dali.params import RequestParams, clean, parse_int
from dali.timestamps import isoformat, parse_timestamp, utcnow
from dali.votable import VOTABLE_NS, VOTABLE_TYPE, error_document

# --- the error family -----------------------------------------------------------------------------

@pytest.mark.parametrize(("cls", "label", "status"), [
    (ServiceError, "Error", 500),
    (UsageError, "UsageError", 400),
    (MultiValuedParamNotSupported, "MultiValuedParamNotSupported", 400),
    (AuthenticationError, "AuthenticationError", 401),
    (AuthorizationError, "AuthorizationError", 403),
    (ServiceUnavailable, "ServiceUnavailable", 503),
])
def test_labels_and_statuses(cls, label, status):
    error = cls("went wrong")
    assert (error.text, error.status, error.headers) == (f"{label}: went wrong", status, {})
    assert str(error) == "went wrong"


def test_status_and_headers_travel_with_the_instance():
    error = ServiceUnavailable("busy", status=429, headers={"Retry-After": "5"})
    assert (error.status, error.headers) == (429, {"Retry-After": "5"})
    assert ServiceUnavailable("later").status == 503  # the class default is untouched
    missing = not_found("no job x")
    assert type(missing) is UsageError and missing.status == 404 and missing.text == "UsageError: no job x"


# --- parameters --------------------------------------------------------------------------------------

PAIRS = [("ID", "a"), ("pos", "CIRCLE 1 2 3"), ("id", "b"), ("Runid", "Case Kept"), ("POS", "x")]


def test_all_matches_names_case_insensitively_in_order():
    params = RequestParams(PAIRS)
    assert params.all("id") == ["a", "b"]
    assert params.all("POS") == ["CIRCLE 1 2 3", "x"]
    assert params.all("missing") == []


def test_single():
    params = RequestParams(PAIRS)
    assert params.single("RUNID") == "Case Kept"
    assert params.single("nothing") is None
    with pytest.raises(MultiValuedParamNotSupported) as caught:
        params.single("Id")
    assert caught.value.message == "ID was given 2 times; it takes one value"


def test_without_drops_names_in_any_case():
    params = RequestParams(PAIRS)
    assert params.without(frozenset({"ID", "RUNID"})) == [("pos", "CIRCLE 1 2 3"), ("POS", "x")]
    assert params.without(frozenset()) == PAIRS


def test_clean_drops_empty_values_only():
    cleaned = clean([("A", ""), ("B", " "), ("C", "0"), ("", "nameless"), ("D", "")])
    assert cleaned.pairs == [("B", " "), ("C", "0"), ("", "nameless")]


@pytest.mark.parametrize("pair", [("ID", "a\x00b"), ("ID", "bell\x07"), ("ID", "form\x0cfeed"),
                                  ("I\x1bD", "x"), ("ID", "\ufffe"), ("ID", "\uffff")])
def test_clean_refuses_characters_xml_cannot_carry(pair):
    with pytest.raises(UsageError, match="contains control characters"):
        clean([("OK", "fine"), pair])


def test_clean_keeps_whitespace_and_unicode():
    text = "tab\there\nnew line\r\u00e9\u4e2d\U0001f52d"
    assert clean([("X", text)]).pairs == [("X", text)]


def test_clean_shortens_a_long_name_in_its_message():
    with pytest.raises(UsageError) as caught:
        clean([("N" * 200 + "\x01", "v")])
    assert caught.value.message == f"parameter {'N' * 40!r} contains control characters"


def test_parse_int():
    assert parse_int("MAXREC", " 42 ") == 42
    assert parse_int("MAXREC", "-7") == -7
    with pytest.raises(UsageError) as caught:
        parse_int("MAXREC", "4.2")
    assert caught.value.message == "MAXREC must be an integer, not '4.2'"


# --- timestamps -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("2026-01-31T12:00:00", dt.datetime(2026, 1, 31, 12)),          # no zone: UTC
    ("2026-01-31T12:00:00Z", dt.datetime(2026, 1, 31, 12)),
    ("2026-01-31T12:00:00.250Z", dt.datetime(2026, 1, 31, 12, 0, 0, 250000)),
    ("2026-01-31T12:00:00+02:00", dt.datetime(2026, 1, 31, 10)),
    ("2026-01-31T23:30:00-05:30", dt.datetime(2026, 2, 1, 5)),      # the next day in UTC
    (" 2026-01-31T12:00:00Z ", dt.datetime(2026, 1, 31, 12)),
    ("2026-01-31", dt.datetime(2026, 1, 31)),
])
def test_parse_timestamp_is_naive_utc(text, expected):
    parsed = parse_timestamp("DESTRUCTION", text)
    assert parsed == expected
    assert parsed.tzinfo is None


@pytest.mark.parametrize("text", ["9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+05:00"])
def test_parse_timestamp_overflow_is_a_usage_error(text):
    with pytest.raises(UsageError) as caught:
        parse_timestamp("DESTRUCTION", text)
    assert caught.value.message == f"DESTRUCTION {text!r} is outside the years 1 to 9999 once in UTC"


@pytest.mark.parametrize("text", ["tomorrow", "2026-13-01T00:00:00Z", "2026-01-31T25:00:00", "", "1769860800"])
def test_parse_timestamp_refuses_non_iso_text(text):
    with pytest.raises(UsageError) as caught:
        parse_timestamp("DESTRUCTION", text)
    assert caught.value.message.startswith("DESTRUCTION must be an ISO 8601 timestamp such as 2026-01-31T12:00:00Z")
    assert caught.value.message.endswith(f"not {text!r}")


def test_isoformat():
    assert isoformat(dt.datetime(2026, 1, 31, 12, 0, 0, 123456)) == "2026-01-31T12:00:00.123Z"
    assert isoformat(dt.datetime(2026, 1, 31)) == "2026-01-31T00:00:00.000Z"
    zone = dt.timezone(dt.timedelta(hours=2))
    assert isoformat(dt.datetime(2026, 1, 31, 12, tzinfo=zone)) == "2026-01-31T10:00:00.000Z"
    assert isoformat(dt.datetime(2026, 1, 31, 12, tzinfo=dt.UTC)) == "2026-01-31T12:00:00.000Z"


def test_isoformat_and_parse_timestamp_round_trip():
    now = utcnow()
    assert now.tzinfo is None
    assert abs(now - dt.datetime.now(dt.UTC).replace(tzinfo=None)) < dt.timedelta(seconds=5)
    shown = isoformat(now)
    assert parse_timestamp("T", shown) == now.replace(microsecond=now.microsecond // 1000 * 1000)


# --- VOTable error documents ----------------------------------------------------------------------

def test_error_document_is_a_valid_votable_with_the_text():
    text = "UsageError: POS='CIRCLE <1> & 2': not a number \u00e9"
    body = error_document(text)
    assert body.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    doc = assert_votable(body)
    ns = {"v": VOTABLE_NS}
    assert doc.get("version") == "1.4"
    [resource] = doc.findall("v:RESOURCE", ns)
    assert resource.get("type") == "results"
    [info] = resource.findall("v:INFO", ns)
    assert (info.get("name"), info.get("value"), info.text) == ("QUERY_STATUS", "ERROR", text)


# --- HTTP helpers on hand-built requests ---------------------------------------------------------

def make_request(path: str = "/sync", query: str = "", headers: dict[str, str] | None = None,
                 root_path: str = "") -> Request:
    return Request({
        "type": "http", "method": "GET", "scheme": "http", "path": path, "root_path": root_path,
        "query_string": query.encode(), "server": ("internal", 8000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    })


def test_public_base_behind_a_proxy():
    proxied = make_request(headers={"Host": "internal:8000", "X-Forwarded-Proto": "https, http",
                                    "X-Forwarded-Host": "data.example.org", "X-Forwarded-Prefix": "/cutout/"})
    assert public_base(proxied, trust_forwarded=True) == "https://data.example.org/cutout"
    assert public_base(proxied, trust_forwarded=False) == "http://internal:8000"
    mounted = make_request(headers={"Host": "h"}, root_path="/svc")
    assert public_base(mounted, trust_forwarded=True) == "http://h/svc"


def test_wants_votable():
    assert wants_votable(make_request(query="RESPONSEFORMAT=votable"))
    assert wants_votable(make_request(headers={"Accept": "application/x-votable+xml"}))
    assert not wants_votable(make_request(query="RESPONSEFORMAT=application/fits",
                                          headers={"Accept": "text/plain"}))


def test_error_response_as_text_and_as_votable():
    error = ServiceUnavailable("try later", headers={"Retry-After": "10"})
    plain = error_response(make_request(), error)
    assert (plain.status_code, plain.body) == (503, b"ServiceUnavailable: try later\n")
    assert plain.headers["content-type"].startswith("text/plain")
    assert plain.headers["retry-after"] == "10"
    table = error_response(make_request(headers={"Accept": "application/x-votable+xml"}), error)
    assert table.status_code == 503
    assert table.headers["content-type"] == VOTABLE_TYPE
    assert table.headers["retry-after"] == "10"
    info = assert_votable(table.body).find(".//{*}INFO[@name='QUERY_STATUS']")
    assert info is not None and info.get("value") == "ERROR"
    assert b"ServiceUnavailable: try later" in table.body
