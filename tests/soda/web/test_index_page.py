"""The service root: a short HTML page for browsers, a plain list for everything else;
the login is offered only where it is configured."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from lxml import html

from conftest import app_client

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
OIDC = {"CUTOUT_OIDC_ISSUER": "http://127.0.0.1:9/never-contacted", "CUTOUT_OIDC_CLIENT_ID": "cutout"}


@pytest.fixture(scope="module", params=["no-login", "login"])
def root(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, demo_root) -> Iterator[dict]:  # type: ignore[no-untyped-def]
    login = request.param == "login"
    data = tmp_path_factory.mktemp(f"index-{request.param}") / "data"
    with app_client(data, demo_root, CUTOUT_ANONYMOUS_RATE_LIMIT="0", CUTOUT_TRUSTED_PROXIES="127.0.0.1",
                    **(OIDC if login else {})) as client:
        yield {"client": client, "login": login}


def page(client: httpx.Client, **headers: str) -> html.HtmlElement:
    r = client.get("/", headers={**HTML, **headers})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert {"Accept", "X-Forwarded-Prefix"} <= {v.strip() for v in r.headers["vary"].split(",")}
    return html.fromstring(r.text)


def test_plain_list_for_clients_that_do_not_ask_for_html(root: dict) -> None:  # type: ignore[type-arg]
    for accept in (None, "*/*", "text/plain"):
        r = root["client"].get("/", headers={"Accept": accept} if accept else {})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        paths = [line.split("\t")[0] for line in r.text.splitlines() if line.startswith("/")]
        assert paths[:2] == ["/sync", "/async"]
        assert {"/links", "/capabilities", "/availability", "/whoami"} <= set(paths)
        assert ("/login" in paths) is root["login"] and ("/tokens" in paths) is root["login"]


def test_page_is_accessible_markup(root: dict) -> None:  # type: ignore[type-arg]
    doc = page(root["client"])
    assert doc.get("lang") == "en"
    assert doc.find(".//meta[@name='viewport']") is not None
    assert [h.tag for h in doc.iter("h1")] == ["h1"]
    levels = [int(h.tag[1]) for h in doc.iter("h1", "h2", "h3")]
    assert all(b - a <= 1 for a, b in zip(levels, levels[1:])), levels   # no skipped level
    for field in doc.iter("input", "select"):
        assert field.getparent().tag == "label" and field.getparent().text_content().strip()
    style = doc.find(".//style").text
    assert "prefers-color-scheme: dark" in style and "color-scheme: light dark" in style


def test_page_names_the_surveys_bands_images_and_authority(root: dict) -> None:  # type: ignore[type-arg]
    doc = page(root["client"])
    text = doc.text_content()
    assert "DES" in [h.text_content() for h in doc.iter("h3")]
    assert "ivo://demo.cutout/des?<image>" in text and "demo.cutout" in text
    assert "6 images" in text    # the demo: two tiles in g, r, i
    assert [h.text_content() for h in doc.iter("h3")][:2] == ["DES", "LSST"]   # as configured
    assert "ivo://demo.cutout/lsst?<image>" in text
    assert "12 images" in text   # the lsst demo: 2 x 2 patches in g, r, i
    des, lsst = [t for t in doc.iter("table") if t.find("caption") is not None]
    rows = [[td.text_content() for td in tr.findall("td")] for tr in des.iter("tr")][1:]
    assert [(band, images) for band, _, images in rows] == [("g", "2"), ("r", "2"), ("i", "2")]
    assert rows[1][1] == "542 to 710"   # DES r, nm
    rows = [[td.text_content() for td in tr.findall("td")] for tr in lsst.iter("tr")][1:]
    assert [(band, images) for band, _, images in rows] == [("g", "4"), ("r", "4"), ("i", "4")]
    assert rows[1][1] == "552 to 691"   # LSST r, nm


def test_page_links_the_endpoints_and_login_only_where_configured(root: dict) -> None:  # type: ignore[type-arg]
    client = root["client"]
    doc = page(client)
    hrefs = [a.get("href") for a in doc.iter("a")]
    paths = {urlsplit(h).path for h in hrefs}
    assert {"/sync", "/async", "/links", "/capabilities", "/availability"} <= paths
    assert ("/login" in paths) is root["login"] and ("/tokens" in paths) is root["login"]
    assert (doc.xpath("//h2[.='Log in']") != []) is root["login"]
    for href in hrefs:   # every link of the page answers: no 404, no 500
        assert href.startswith("http://testserver/"), href
        r = client.get(href)
        path = urlsplit(href).path
        if path == "/sync":      # without parameters: says what to give
            assert r.status_code == 400 and r.text.startswith("UsageError: give ID"), r.text
        elif path in ("/tokens", "/usage"):   # the caller's own: after a login
            assert r.status_code == 401 and "log in first" in r.text, r.text
        else:
            assert r.status_code in (200, 302), (href, r.status_code, r.text[:200])
    if root["login"]:
        assert client.get("/login").status_code == 302
        # The page to come back to keeps its own query string through the redirect.
        back = "/ui/jobs?phase=COMPLETED&page=2"
        to = client.get("/login", params={"next": back}, follow_redirects=False).headers["location"]
        assert urlsplit(to).path == "/login/oidc" and parse_qs(urlsplit(to).query) == {"next": [back]}, to


def test_page_form_defaults_make_a_picture(root: dict) -> None:  # type: ignore[type-arg]
    doc = page(root["client"])
    [form] = doc.forms
    assert form.method == "GET" and urlsplit(form.action).path == "/sync"
    values = dict(form.form_values())
    assert values["POS"].startswith("CIRCLE ") and values["RESPONSEFORMAT"] == "image/png"
    assert [o.get("value") for o in form.inputs["FILTER"].iter("option")] == ["g", "r", "i"]
    r = root["client"].get(form.action, params=values)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text[:300]
    assert r.content.startswith(b"\x89PNG")


def test_page_links_follow_the_proxy(root: dict) -> None:  # type: ignore[type-arg]
    doc = page(root["client"], **{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "vo.example.org",
                                  "X-Forwarded-Prefix": "/cutouts"})
    hrefs = [a.get("href") for a in doc.iter("a")] + [f.action for f in doc.forms]
    assert hrefs and all(h.startswith("https://vo.example.org/cutouts/") for h in hrefs), hrefs
