"""VOSI 1.1 capabilities (§3.1) and availability (§3.2) of the embedded service."""

from __future__ import annotations

import datetime as dt
import io
import threading
import time
import warnings
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from lxml import etree

from conftest import assert_valid, eventually, free_port
from soda.ops.health import redis_probe

CAPS_NS = "http://www.ivoa.net/xml/VOSICapabilities/v1.0"
AVAIL_NS = "http://www.ivoa.net/xml/VOSIAvailability/v1.0"
VS_NS = "http://www.ivoa.net/xml/VODataService/v1.1"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
AV = {"vosi": AVAIL_NS}

# standardID -> (sibling path, accessURL use)
EXPECTED = {
    "ivo://ivoa.net/std/VOSI#capabilities": ("capabilities", "full"),
    "ivo://ivoa.net/std/VOSI#availability": ("availability", "full"),
    "ivo://ivoa.net/std/SODA#sync-1.0": ("sync", "base"),
    "ivo://ivoa.net/std/SODA#async-1.0": ("async", "base"),
    "ivo://ivoa.net/std/DataLink#links-1.1": ("links", "base"),
}
UWS_REST = "ivo://ivoa.net/std/UWS#rest-1.1"


# --- helpers ---------------------------------------------------------------------------------

def capabilities(client: httpx.Client, **headers: str) -> etree._Element:
    response = client.get("/capabilities", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    return assert_valid(response.content, "ivoa-bundle.xsd")


def access_urls(doc: etree._Element) -> list[tuple[str, str, str]]:
    """(standardID, accessURL, use) of every interface."""
    return [(cap.get("standardID"), url.text, url.get("use"))
            for cap in doc.iter("capability") for url in cap.iter("accessURL")]


def url_of(doc: etree._Element, standard_id: str) -> str:
    urls = [url for sid, url, _ in access_urls(doc) if sid == standard_id]
    assert len(urls) == 1, (standard_id, urls)
    return urls[0]


def availability(client: httpx.Client) -> tuple[bool, list[str], str | None]:
    response = client.get("/availability")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    doc = assert_valid(response.content, "VOSIAvailability-v1.0.xsd")
    assert doc.tag == f"{{{AVAIL_NS}}}availability"
    available = doc.findtext("vosi:available", namespaces=AV)
    assert available in ("true", "false")
    notes = [n.text or "" for n in doc.findall("vosi:note", AV)]
    return available == "true", notes, doc.findtext("vosi:upSince", namespaces=AV)


def runtime(client: httpx.Client):  # type: ignore[no-untyped-def]
    return client.app_state.runtime  # type: ignore[attr-defined]


# --- capabilities ----------------------------------------------------------------------------

def test_capabilities_validate_and_list_every_service(embedded: httpx.Client) -> None:
    doc = capabilities(embedded)
    assert doc.tag == f"{{{CAPS_NS}}}capabilities"
    found = {(sid, use) for sid, _, use in access_urls(doc)}
    for standard_id, (_, use) in EXPECTED.items():
        assert (standard_id, use) in found, standard_id
    uws_urls = {url for sid, url, _ in access_urls(doc) if sid == UWS_REST}
    assert url_of(doc, "ivo://ivoa.net/std/SODA#async-1.0") in uws_urls


def test_every_interface_is_param_http_with_role_std(embedded: httpx.Client) -> None:
    doc = capabilities(embedded)
    interfaces = list(doc.iter("interface"))
    assert interfaces
    for interface in interfaces:
        assert interface.get(XSI_TYPE) == "vs:ParamHTTP"
        assert interface.nsmap.get("vs") == VS_NS
        assert interface.get("role") == "std"


def test_access_urls_are_absolute_siblings_of_capabilities(embedded: httpx.Client) -> None:
    doc = capabilities(embedded)
    for standard_id, (name, _) in EXPECTED.items():
        url = url_of(doc, standard_id)
        parts = urlsplit(url)
        assert parts.scheme == "http" and parts.netloc == "testserver", url
        assert url == f"http://testserver/{name}"


def test_access_urls_reach_real_endpoints(embedded: httpx.Client) -> None:
    for _, url, _ in access_urls(capabilities(embedded)):
        response = embedded.get(urlsplit(url).path)
        assert response.status_code != 404, url


def test_forwarded_headers_move_every_url(embedded: httpx.Client) -> None:
    doc = capabilities(embedded, **{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "vo.example.org",
                                    "X-Forwarded-Prefix": "/soda"})
    urls = access_urls(doc)
    assert urls
    for _, url, _ in urls:
        assert url.startswith("https://vo.example.org/soda/"), url
    assert url_of(doc, "ivo://ivoa.net/std/SODA#sync-1.0") == "https://vo.example.org/soda/sync"


def test_forwarded_headers_ignored_when_untrusted(embedded: httpx.Client) -> None:
    from starlette.testclient import TestClient

    from soda.web.app import create_app

    settings = runtime(embedded).settings
    settings = settings.model_copy(update={"ops": settings.ops.model_copy(update={"trust_forwarded_headers": False})})
    with TestClient(create_app(settings, build_demo=False), base_url="http://testserver") as client:
        doc = capabilities(client, **{"X-Forwarded-Host": "evil.example.org"})
    assert all(url.startswith("http://testserver/") for _, url, _ in access_urls(doc))


def test_sync_and_links_interfaces(embedded: httpx.Client) -> None:
    doc = capabilities(embedded)
    by_id = {cap.get("standardID"): cap for cap in doc.iter("capability")}
    sync = by_id["ivo://ivoa.net/std/SODA#sync-1.0"].find("interface")
    assert [q.text for q in sync.findall("queryType")] == ["GET", "POST"]
    links = by_id["ivo://ivoa.net/std/DataLink#links-1.1"].find("interface")
    assert links.findtext("resultType") == "application/x-votable+xml;content=datalink"
    params = {p.findtext("name"): p for p in links.findall("param")}
    assert params["ID"].get("use") == "required"
    assert params["ID"].findtext("ucd") == "meta.id;meta.main"


def test_vosi_interfaces_need_no_credentials(embedded: httpx.Client) -> None:
    """VOSI §4: no securityMethod on the VOSI interfaces; and anonymous requests work."""
    doc = capabilities(embedded)
    for cap in doc.iter("capability"):
        if cap.get("standardID", "").startswith("ivo://ivoa.net/std/VOSI#"):
            assert cap.find(".//securityMethod") is None
    for path in ("/capabilities", "/availability"):  # no credentials of any kind
        response = embedded.get(path)
        assert response.status_code == 200
        assert "www-authenticate" not in response.headers


def test_last_modified_is_a_past_http_date_that_stays_put(embedded: httpx.Client) -> None:
    first = embedded.get("/capabilities").headers.get("last-modified")
    assert first, "VOSI §3.1 takes the capabilities' age from Last-Modified"
    when = parsedate_to_datetime(first)
    assert when.tzinfo is not None
    assert when <= dt.datetime.now(dt.timezone.utc)
    assert dt.datetime.now(dt.timezone.utc) - when < dt.timedelta(hours=1)
    assert embedded.get("/capabilities").headers["last-modified"] == first


def test_head_gives_headers_without_body(embedded: httpx.Client) -> None:
    get = embedded.get("/capabilities")
    head = embedded.head("/capabilities")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["last-modified"] == get.headers["last-modified"]
    assert head.headers["content-type"].startswith("text/xml")


def test_conditional_get(embedded: httpx.Client) -> None:
    modified = embedded.get("/capabilities").headers["last-modified"]
    unchanged = embedded.get("/capabilities", headers={"If-Modified-Since": modified})
    assert unchanged.status_code == 304 and unchanged.content == b""
    older = format_datetime(parsedate_to_datetime(modified) - dt.timedelta(seconds=5), usegmt=True)
    assert embedded.get("/capabilities", headers={"If-Modified-Since": older}).status_code == 200
    garbage = embedded.get("/capabilities", headers={"If-Modified-Since": "yesterday"})
    assert garbage.status_code == 200


@pytest.mark.parametrize("path", ["/capabilities", "/availability"])
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_other_methods_are_405(embedded: httpx.Client, path: str, method: str) -> None:
    """VOSI §2: only GET is defined."""
    assert embedded.request(method, path).status_code == 405


def test_pyvo_reads_both_documents(embedded: httpx.Client) -> None:
    from pyvo.io import vosi

    with warnings.catch_warnings():
        # pyvo flags repeated queryType and ParamHTTP params (as in DataLink §2.2's own
        # example); both are valid against VODataService 1.2.
        warnings.simplefilter("ignore")
        caps = vosi.parse_capabilities(io.BytesIO(embedded.get("/capabilities").content))
        avail = vosi.parse_availability(io.BytesIO(embedded.get("/availability").content))
    urls = {cap.standardid: cap.interfaces[0].accessurls[0].content for cap in caps}
    assert urls["ivo://ivoa.net/std/SODA#sync-1.0"] == "http://testserver/sync"
    assert urls["ivo://ivoa.net/std/SODA#async-1.0"] == "http://testserver/async"
    assert avail.available is True

# --- availability ------------------------------------------------------------------------------

def test_available_when_everything_works(embedded: httpx.Client) -> None:
    available, notes, up_since = availability(embedded)
    assert available, notes
    assert up_since is not None
    since = dt.datetime.fromisoformat(up_since.replace("Z", "+00:00"))
    assert since <= dt.datetime.now(dt.timezone.utc)
    assert all(name in notes[0] for name in ("database", "images", "results"))


def test_unwritable_results_store(embedded: httpx.Client, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the results directory should be")
    storage = runtime(embedded).storage
    monkeypatch.setattr(storage, "root", blocker / "results")
    available, notes, up_since = availability(embedded)
    assert not available
    assert up_since is None
    assert any(n.startswith("results: ") and "not-a-dir" in n for n in notes), notes
    assert not any(n.startswith(("database", "images")) for n in notes), notes

    monkeypatch.undo()
    available, notes, up_since = availability(embedded)
    assert available, notes
    assert up_since is not None


def test_a_survey_without_images(embedded: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    from soda.surveys.in_memory import InMemoryCatalogue

    survey = runtime(embedded).datasets.surveys["des"]
    monkeypatch.setattr(survey, "catalogue", InMemoryCatalogue())
    available, notes, _ = availability(embedded)
    assert not available
    assert any(n.startswith("images: survey des: no images in the index") for n in notes), notes


def test_missing_survey_files(embedded: httpx.Client, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from soda.surveys.in_memory import InMemoryCatalogue

    survey = runtime(embedded).datasets.surveys["des"]
    moved = [dataclasses.replace(image, path=tmp_path / "no-such-root" / image.path.name)
             for image in survey.catalogue.in_field("des", "DES0139-4457")]
    monkeypatch.setattr(survey, "catalogue", InMemoryCatalogue(moved))
    available, notes, _ = availability(embedded)
    assert not available
    assert any(n.startswith("images: survey des: ") and "no-such-root" in n for n in notes), notes


def test_a_check_that_raises_is_a_failed_check(embedded: httpx.Client,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise RuntimeError("connection refused\n\tIs the server running?")

    monkeypatch.setattr(runtime(embedded).store, "ping", broken)
    available, notes, _ = availability(embedded)
    assert not available
    assert "database: connection refused" in notes


def test_a_hung_check_times_out_without_blocking_other_requests(
        embedded: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    monkeypatch.setattr(runtime(embedded).health, "timeout", 3.0)
    monkeypatch.setattr(runtime(embedded).store, "ping", lambda: release.wait(20))
    answer: list[tuple[bool, list[str], str | None]] = []
    poller = threading.Thread(target=lambda: answer.append(availability(embedded)))
    try:
        poller.start()
        time.sleep(0.2)
        # Another request is answered while the availability poll is still held by the check.
        assert embedded.get("/capabilities").status_code == 200
        assert poller.is_alive(), "the availability poll returned before its check timed out"
        poller.join(10)
        assert not poller.is_alive(), "the hung check was not cut off by its timeout"
    finally:
        release.set()
        poller.join(5)
    available, notes, _ = answer[0]
    assert not available
    assert "database: no answer within 3 s" in notes


def test_polls_share_a_hung_check_instead_of_piling_up_threads(
        embedded: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    calls: list[float] = []

    def hung() -> None:
        calls.append(time.monotonic())
        release.wait(10)

    monkeypatch.setattr(runtime(embedded).health, "timeout", 0.3)
    monkeypatch.setattr(runtime(embedded).store, "ping", hung)
    try:
        for _ in range(3):
            available, notes, _ = availability(embedded)
            assert not available and "database: no answer within 0.3 s" in notes
        assert len(calls) == 1
    finally:
        release.set()
    # Once the hung call has returned, a later poll checks afresh. (A poll made while it was
    # still returning may share its result, so wait for the fresh check, not the first true.)
    eventually(lambda: availability(embedded)[0] and len(calls) == 2, timeout=5)

def test_availability_is_not_cached(embedded: httpx.Client) -> None:
    response = embedded.get("/availability")
    assert "no-store" in response.headers.get("cache-control", "")


def test_redis_check_fails_fast_on_a_closed_port() -> None:
    started = time.monotonic()
    with pytest.raises(Exception, match="(?i)connect"):
        redis_probe(f"redis://127.0.0.1:{free_port()}/0", 1.0)()
    assert time.monotonic() - started < 2
