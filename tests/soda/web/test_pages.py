"""The web pages for people (/ui/...): each answers HTML to the right caller, sends others
to log in (or a labelled 401/403), names bad input in a labelled 400, and leaves what the
VO endpoints answer programs as it was."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from itsdangerous import TimestampSigner
from lxml import html

from conftest import app_client

OIDC = {"CUTOUT_OIDC_ISSUER": "http://127.0.0.1:9/never-contacted", "CUTOUT_OIDC_CLIENT_ID": "cutout"}
PAGES = ("/ui/cutout", "/ui/bulk", "/ui/jobs", "/ui/account")


def session_cookie(data_dir: Path, content: dict) -> str:  # type: ignore[type-arg]
    secret = (data_dir / "secrets" / "session.key").read_text().strip()
    return TimestampSigner(secret).sign(base64.b64encode(json.dumps(content).encode())).decode()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, demo_root: Path) -> Iterator[dict]:  # type: ignore[type-arg]
    """A service with login configured (never contacted), and a logged-in alice."""
    data = tmp_path_factory.mktemp("pages") / "data"
    with app_client(data, demo_root, CUTOUT_ANONYMOUS_RATE_LIMIT="0", **OIDC) as client:
        sid, user = client.app_state.access.sessions.create("alice", "oidc")  # type: ignore[attr-defined]
        yield {"client": client, "cookie": session_cookie(data, {"sid": sid}), "csrf": user.csrf}


def as_alice(site: dict) -> httpx.Client:  # type: ignore[type-arg]
    client: httpx.Client = site["client"]
    client.cookies.set("cutout_session", site["cookie"])
    return client


def anonymous(site: dict) -> httpx.Client:  # type: ignore[type-arg]
    client: httpx.Client = site["client"]
    client.cookies.clear()
    return client


def doc(r: httpx.Response, status: int = 200) -> html.HtmlElement:
    assert r.status_code == status, r.text[:500]
    assert r.headers["content-type"].startswith("text/html")
    return html.fromstring(r.text)


def every_control_labelled(page: html.HtmlElement) -> None:
    labelled = {label.get("for") for label in page.iter("label") if label.get("for")}
    for control in page.iter("input", "select", "textarea"):
        if control.get("type") in ("hidden",):
            continue
        inside = any(a.tag == "label" for a in control.iterancestors())
        assert inside or control.get("id") in labelled or control.get("aria-label"), html.tostring(control)
    for button in page.iter("button"):
        assert (button.text_content() or "").strip() or button.get("aria-label")


@pytest.mark.parametrize("path", PAGES)
def test_every_page_answers_alice_in_html(site: dict, path: str) -> None:  # type: ignore[type-arg]
    page = doc(as_alice(site).get(path))
    assert page.get("lang") == "en" and page.find(".//meta[@name='viewport']") is not None
    assert [h.tag for h in page.iter("h1")] == ["h1"]
    assert "alice" in page.find(".//header").text_content()
    assert page.find(".//meta[@name='csrf-token']").get("content") == site["csrf"]
    current = [a.get("href") for a in page.iter("a") if a.get("aria-current") == "page"]
    assert current == ["http://testserver" + path]
    every_control_labelled(page)


def test_pages_are_not_framed_nor_the_account_cached(site: dict) -> None:  # type: ignore[type-arg]
    r = as_alice(site).get("/ui/account")
    assert r.headers["x-frame-options"] == "DENY" and r.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("path", ["/ui/jobs", "/ui/account"])
def test_pages_of_ones_own_send_anonymous_callers_to_log_in(site: dict, path: str) -> None:  # type: ignore[type-arg]
    r = anonymous(site).get(path, params={"phase": "COMPLETED"} if path == "/ui/jobs" else None)
    assert r.status_code == 303
    target = urlsplit(r.headers["location"])
    assert target.path == "/login"
    assert dict(parse_qsl(target.query))["next"] == path + ("?phase=COMPLETED" if path == "/ui/jobs" else "")


def test_without_login_configured_pages_of_ones_own_are_a_labelled_401(tmp_path: Path, demo_root: Path) -> None:
    with app_client(tmp_path / "data", demo_root) as client:
        for path in ("/ui/jobs", "/ui/account"):
            page = doc(client.get(path), 401)
            assert page.find(".//*[@role='alert']").text_content().startswith("AuthenticationError:")
        navigation = [a.text for a in doc(client.get("/ui/cutout")).iterfind(".//nav//a")]
        assert navigation[:2] == ["Cutout", "Bulk"]  # no login: no pages of one's own offered
        assert "My jobs" not in navigation and "Account" not in navigation


def test_anonymous_callers_get_the_cutout_and_bulk_pages(site: dict) -> None:  # type: ignore[type-arg]
    client = anonymous(site)
    page = doc(client.get("/ui/cutout"))
    assert "Without logging in" in page.text_content()
    assert page.find(".//header//a[@href]").get("href") == "http://testserver/"
    assert any(a.text == "Log in" for a in page.iter("a"))
    doc(client.get("/ui/bulk"))


def test_the_statistics_page_is_for_operators(tmp_path: Path, demo_root: Path) -> None:
    with app_client(tmp_path / "data", demo_root, CUTOUT_OPERATOR_CLIENTS="127.0.0.1/32") as client:
        page = doc(client.get("/ui/stats", params={"days": "7"}))
        assert page.get_element_by_id("stats").get("data-source") == "http://testserver/stats.json?days=7"
        assert "Statistics" in [a.text for a in page.iterfind(".//nav//a")]
        for days in ("0", "9" * 5000):  # Python's int() refuses more than 4300 digits
            bad = doc(client.get("/ui/stats", params={"days": days}), 400)
            assert bad.find(".//*[@role='alert']").text_content().startswith("UsageError: days must be")
    with app_client(tmp_path / "data2", demo_root, CUTOUT_OPERATOR_CLIENTS="10.9.9.9/32") as client:
        page = doc(client.get("/ui/stats"), 403)
        assert page.find(".//*[@role='alert']").text_content().startswith("AuthorizationError:")
        assert "Statistics" not in [a.text for a in page.iterfind(".//nav//a")]


def test_the_cutout_page_shows_the_request_it_makes(site: dict) -> None:  # type: ignore[type-arg]
    client = anonymous(site)
    page = doc(client.get("/ui/cutout", params={"survey": "des", "ra": "24.9655", "dec": "-44.9583",
                                                 "radius": "18", "band": ["r", "g", "i"], "format": "fits"}))
    preview = page.get_element_by_id("preview").get("src")
    fits_url = page.get_element_by_id("dl-fits").get("href")
    curl = page.get_element_by_id("code-curl").text
    assert curl.startswith("curl -fsS -o cutout.fits 'http://testserver/sync?") and fits_url in curl
    assert dict(parse_qsl(urlsplit(preview).query)) == {
        "CIRCLE": "24.965500 -44.958300 0.005", "RGB": "i,r,g", "RESPONSEFORMAT": "image/png", "SIZE": "400"}
    assert parse_qsl(urlsplit(fits_url).query) == [
        ("CIRCLE", "24.965500 -44.958300 0.005"), ("FILTER", "g"), ("FILTER", "r"), ("FILTER", "i"),
        ("RESPONSEFORMAT", "application/fits")]
    # What the page shows, /sync serves: a colour preview and a FITS file of three bands.
    r = client.get(preview.removeprefix("http://testserver"))
    assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content[:4] == b"\x89PNG"
    r = client.get(fits_url.removeprefix("http://testserver"))
    assert r.status_code == 200 and r.headers["content-type"] == "application/fits"
    pyvo = page.get_element_by_id("code-pyvo").text
    assert "SodaQuery('http://testserver/sync', circle=(24.965500, -44.958300, 0.005))" in pyvo
    assert "query['FILTER'] = 'g,r,i'" in pyvo


def test_the_cutout_page_starts_at_the_surveys_example(site: dict) -> None:  # type: ignore[type-arg]
    page = doc(anonymous(site).get("/ui/cutout"))
    ra, dec = (float(page.get_element_by_id(f).get("value")) for f in ("f-ra", "f-dec"))
    described = anonymous(site).get("/ui/cutout/request", params={"ra": ra, "dec": dec, "band": "r"}).json()
    assert described["preview"] == page.get_element_by_id("preview").get("src").replace("FILTER=g", "FILTER=r") \
        or "FILTER=r" in described["preview"]
    assert anonymous(site).get(described["url"].removeprefix("http://testserver")).status_code == 200


@pytest.mark.parametrize(("params", "field", "start"), [
    ({"ra": "abc", "dec": "0"}, "ra", "RA (degrees) must be a number"),
    ({"ra": "10", "dec": "95"}, "dec", "Dec (degrees) must be between -90 and 90"),
    ({"ra": "10", "dec": "0", "radius": "0"}, "radius", "Radius (arcseconds) must be between"),
    ({"survey": "nosuch"}, "survey", "no survey 'nosuch' here"),
    ({"band": "z9"}, "band", "des has no band 'z9'"),
    ({"band": ["g", "r"], "format": "png"}, "band", "a picture shows one band (grey) or three"),
    ({"format": "gif"}, "format", "format must be one of png, jpeg, fits"),
])
def test_bad_cutout_input_is_named_in_a_labelled_400(site: dict, params: dict, field: str, start: str) -> None:  # type: ignore[type-arg]
    client = anonymous(site)
    page = doc(client.get("/ui/cutout", params=params), 400)
    alert = page.get_element_by_id("form-errors").text_content()
    assert alert.strip().startswith("UsageError:") and start in alert
    r = client.get("/ui/cutout/request", params=params)
    assert r.status_code == 400 and r.json()["error"].startswith("UsageError: ") and start in r.json()["fields"][field]


@pytest.mark.parametrize(("params", "start"), [
    ({"phase": "DONE"}, "UsageError: phase must be one of"),
    ({"kind": "nosuch"}, "UsageError: kind must be one of"),
    ({"page": "0"}, "UsageError: page must be a whole number"),
    ({"page": "x"}, "UsageError: page must be a whole number"),
    ({"page": "7" * 5000}, "UsageError: page must be a whole number"),
])
def test_bad_job_filters_are_a_labelled_400(site: dict, params: dict, start: str) -> None:  # type: ignore[type-arg]
    page = doc(as_alice(site).get("/ui/jobs", params=params), 400)
    assert page.find(".//*[@role='alert']").text_content().startswith(start)


def test_my_jobs_lists_filters_and_pages_alices_own(site: dict) -> None:  # type: ignore[type-arg]
    client = as_alice(site)
    store = client.app_state.runtime.store  # type: ignore[attr-defined]
    for i in range(23):
        store.create(kind="soda", owner="alice", parameters=(("ID", f"x{i}"),), run_id=f"run{i}",
                     execution_duration=60, destruction=None)
    store.create(kind="soda", owner="bob", parameters=(), run_id="bobs", execution_duration=60, destruction=None)
    first = doc(client.get("/ui/jobs", params={"phase": "PENDING", "kind": "soda"}))
    ids = [a.text for a in first.iterfind(".//table//td[@data-label='Job']/a")]
    assert len(ids) == 20 and "bobs" not in ids  # newest first; jobs made in one instant by id
    pager = {a.get("rel"): a.get("href") for a in first.iterfind(".//nav[@class='pager']/a")}
    assert pager == {"next": "http://testserver/ui/jobs?phase=PENDING&kind=soda&page=2"}
    second = doc(client.get("/ui/jobs", params={"phase": "PENDING", "kind": "soda", "page": "2"}))
    rest = [a.text for a in second.iterfind(".//table//td[@data-label='Job']/a")]
    assert sorted(ids + rest) == sorted(f"run{i}" for i in range(23))
    assert doc(client.get("/ui/jobs", params={"phase": "COMPLETED"})).find(".//table") is None
    row = first.find(".//tbody/tr")
    assert row.get("data-job").startswith("http://testserver/async/")
    assert row.find(".//button[@data-abort]") is not None and row.find(".//button[@data-delete]") is not None


def test_the_account_page_lists_tokens_and_usage(site: dict) -> None:  # type: ignore[type-arg]
    client = as_alice(site)
    r = client.post("/tokens", data={"name": "laptop", "csrf_token": site["csrf"]},
                    headers={"Accept": "application/json"})
    assert r.status_code == 201
    page = doc(client.get("/ui/account"))
    names = [tr.find("td").text for tr in page.iterfind(".//table[@id='tokens']/tbody/tr")]
    assert "laptop" in names
    assert "Result space:" in page.get_element_by_id("usage-space-label").text_content()


def test_the_front_page_links_the_web_interface(site: dict) -> None:  # type: ignore[type-arg]
    page = doc(anonymous(site).get("/", headers={"Accept": "text/html"}))
    assert "http://testserver/ui/cutout" in [a.get("href") for a in page.iter("a")]


def test_static_files_are_served_and_ui_redirects(site: dict) -> None:  # type: ignore[type-arg]
    client = anonymous(site)
    for name, kind in (("site.css", "text/css"), ("site.js", "javascript"), ("cutout.js", "javascript"),
                       ("stats.js", "javascript"), ("theme.js", "javascript")):
        r = client.get(f"/ui/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
    assert client.get("/ui/static/nosuch.js").status_code == 404
    r = client.get("/ui/")
    assert r.status_code == 307 and r.headers["location"] == "http://testserver/ui/cutout"


def test_the_vo_endpoints_answer_programs_as_before(site: dict) -> None:  # type: ignore[type-arg]
    """The pages add routes only under /ui/: the VO endpoints' answers to a program
    (no Accept: text/html) are untouched, the front page's plain list included."""
    client = anonymous(site)
    r = client.get("/")
    assert r.headers["content-type"].startswith("text/plain") and "/ui/" not in r.text
    r = client.get("/capabilities")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/xml") and b"/ui" not in r.content
    r = client.get("/sync", params={"CIRCLE": "24.9655 -44.9583 0.003", "FILTER": "r"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/fits"
    r = client.get("/sync", params={"CIRCLE": "24.9655 -44.9583"})
    assert r.status_code == 400 and r.text.startswith("UsageError")
    r = client.get("/async")
    assert r.status_code == 200 and b"uws:jobs" in r.content
    assert {route.path for route in client.app.routes if not route.path.startswith("/ui")} >= {  # type: ignore[attr-defined]
        "/sync", "/async", "/bulk", "/links", "/query", "/capabilities", "/availability"}


def test_my_jobs_shows_sizes_and_lists_few_results_one_by_one(site: dict) -> None:  # type: ignore[type-arg]
    client = as_alice(site)
    store = client.app_state.runtime.store  # type: ignore[attr-defined]
    few = store.create(kind="bulk", owner="alice", parameters=(), run_id="few", execution_duration=60,
                       destruction=None)
    many = store.create(kind="bulk", owner="alice", parameters=(), run_id="many", execution_duration=60,
                        destruction=None)
    for i in range(3):
        store.add_result(few.id, f"r{i}.fits", f"k/{i}", "application/fits", 1500)
    for i in range(30):
        store.add_result(many.id, f"r{i}.fits", f"m/{i}", "application/fits", 100_000)
    page = doc(client.get("/ui/jobs", params={"kind": "bulk"}))
    rows = {tr.find("td[@data-label='Job']/a").text: tr for tr in page.iterfind(".//tbody/tr")}
    assert rows["few"].find("td[@data-label='Size']").text.strip() == "4.4 KiB"
    assert rows["many"].find("td[@data-label='Size']").text.strip() == "2.9 MiB"
    listed = [a.get("href") for a in rows["few"].iterfind(".//details//a")]
    assert listed == [f"http://testserver/bulk/{few.id}/results/r{i}.fits" for i in range(3)]
    assert rows["many"].find(".//details") is None  # 30: the archive and the result list instead
    links = [a.get("href") for a in rows["many"].iterfind("td[@data-label='Results']/a")]
    assert links == [f"http://testserver/bulk/{many.id}/results.zip", f"http://testserver/bulk/{many.id}/results"]


def test_the_cutout_page_without_aladin_lite_asks_for_a_typed_position(site: dict, tmp_path: Path,  # type: ignore[type-arg]
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from soda.web.pages import cutout
    monkeypatch.setattr(cutout, "ALADIN", tmp_path / "absent" / "aladin.js")
    page = doc(anonymous(site).get("/ui/cutout"))
    assert "not installed" in page.get_element_by_id("no-sky").text_content()
    assert not [s for s in page.iter("script") if "sky.js" in (s.get("src") or "")]
    monkeypatch.setattr(cutout, "ALADIN", tmp_path / "aladin.js")
    (tmp_path / "aladin.js").write_text("")
    page = doc(anonymous(site).get("/ui/cutout"))
    assert page.get_element_by_id("aladin").get("data-coverage") == "http://testserver/coverage/des.json"
    assert [s.get("type") for s in page.iter("script") if "sky.js" in (s.get("src") or "")] == ["module"]
