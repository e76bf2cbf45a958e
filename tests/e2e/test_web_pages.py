"""The web pages in a real browser: Playwright driving the system's Chromium (never a
downloaded one) against a live ``cutout serve`` and the test OIDC provider.

One server and one logged-in browser for the module. Screenshots of every page go to
``$CUTOUT_UI_SHOTS`` when set (else the test's temporary folder), to be looked at.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import IN_CI, base_env, free_port, start_server
from oidc_provider import register_client, start_provider
from soda.surveys.des import tile_centre

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
STATS_URL = re.compile(r"/stats\.json\?days=\d+$")
USER = "alice@example.org"
RA0, DEC0 = tile_centre("DES0139-4457")
STATS = {  # the shape of /stats.json (the statistics page's contract), for the chart code
    "since": "2026-11-24T00:00:00Z", "until": "2026-11-30T12:00:00Z", "days": 7,
    "totals": {"cutouts": 1234, "bytes": 56_789_000, "requests": 1100, "users": 12},
    "per_day": [{"day": f"2026-11-{d}", "cutouts": c, "bytes": c * 41_000}
                for d, c in zip(range(24, 31), (120, 80, 260, 0, 190, 330, 254))],
    "by_survey": [{"survey": "des", "cutouts": 1000, "bytes": 50_000_000},
                  {"survey": "lsst", "cutouts": 234, "bytes": 6_789_000}],
    "by_format": [{"format": "fits", "cutouts": 800, "bytes": 50_000_000},
                  {"format": "png", "cutouts": 400, "bytes": 6_000_000},
                  {"format": "jpeg", "cutouts": 34, "bytes": 789_000}],
    "by_kind": [{"kind": "sync", "cutouts": 900, "bytes": 30_000_000},
                {"kind": "bulk", "cutouts": 300, "bytes": 25_000_000},
                {"kind": "async", "cutouts": 34, "bytes": 1_789_000}],
    "jobs_by_phase": [{"phase": "COMPLETED", "jobs": 40}, {"phase": "ERROR", "jobs": 3},
                      {"phase": "EXECUTING", "jobs": 2}],
    "top_users": [{"user": "alice@example.org", "cutouts": 700, "bytes": 30_000_000},
                  {"user": "anonymous", "cutouts": 400, "bytes": 20_000_000},
                  {"user": "bob@example.org", "cutouts": 134, "bytes": 6_789_000}],
    "latency_ms": {"count": 1100, "p50": 12.5, "p90": 40.1, "p99": 120.0, "max": 300.2},
}


def _playwright():  # type: ignore[no-untyped-def]
    problem = None
    if not CHROMIUM.exists():
        problem = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = problem or "playwright is not installed (pip install playwright)"
    if problem:
        if IN_CI:
            pytest.fail(f"{problem}; CI=true requires it", pytrace=False)
        pytest.skip(problem)
    return sync_playwright


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("CUTOUT_UI_SHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def aladin() -> bool:
    """Aladin Lite vendored at test time, as at install time; without the registry the
    pages are tested without the sky view, as a service without it serves them."""
    from soda.web.pages.site import ALADIN
    from soda.web.pages.vendor import fetch
    if not ALADIN.exists():
        try:
            fetch(timeout=30)
        except OSError as exc:
            print(f"Aladin Lite not fetched ({exc}): the cutout page is tested without the sky view")
    return ALADIN.exists()


@pytest.fixture(scope="module")
def service(aladin: bool, tmp_path_factory: pytest.TempPathFactory, demo_root: Path) -> Iterator[dict]:  # type: ignore[type-arg]
    tmp = tmp_path_factory.mktemp("web-pages")
    with start_provider(tmp / "provider.log") as provider:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        client_id, secret = register_client(provider.issuer, [base + "/auth/oidc/callback"])
        httpx.put(f"{provider.issuer}/users/{USER}", json={"email": USER}).raise_for_status()
        env = base_env(tmp / "data", demo_root, CUTOUT_OIDC_ISSUER=provider.issuer,
                       CUTOUT_OIDC_CLIENT_ID=client_id, CUTOUT_OIDC_CLIENT_SECRET=secret,
                       CUTOUT_SESSION_COOKIE_SECURE="false",
                       CUTOUT_SESSION_SECRET="test-only-session-secret-0123456789")
        server, base = start_server(env, tmp / "server.log", port)
        try:
            yield {"base": base, "tmp": tmp, "issuer": provider.issuer}
        finally:
            server.stop()


@pytest.fixture(scope="module")
def browser(service: dict) -> Iterator[object]:  # type: ignore[type-arg]
    sync_playwright = _playwright()
    with sync_playwright() as p:
        # WebGL (the sky view) on the CPU, as on a machine without a GPU: Chromium no longer
        # falls back to SwiftShader by itself.
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def page(browser, service: dict) -> Iterator[object]:  # type: ignore[no-untyped-def,type-arg]
    """One browser tab, logged in as alice through the OIDC provider's login form."""
    context = browser.new_context(viewport={"width": 1200, "height": 900}, color_scheme="light",
                                  accept_downloads=True)
    context.set_default_timeout(15_000)
    tab = context.new_page()
    errors: list[str] = []
    # Aladin Lite's own failures (it fetches sky surveys from the internet; it throws strings,
    # without a stack) are not ours.
    tab.on("pageerror", lambda exc: None if "aladin-lite" in (exc.stack or "") or not exc.stack
           or exc.stack.strip() == str(exc).strip() else errors.append(f"{exc}\n{exc.stack}"))
    tab.goto(service["base"] + "/ui/account")  # → /login → the provider's form
    assert tab.url.startswith(service["issuer"])
    tab.fill("input[name='sub']", USER)
    tab.locator("form").first.evaluate("f => f.submit()")
    tab.wait_for_url(service["base"] + "/ui/account")
    assert USER in tab.locator("header").inner_text()
    tab.errors = errors  # type: ignore[attr-defined]
    yield tab
    context.close()


def shot(tab, shots: Path, name: str) -> Path:  # type: ignore[no-untyped-def]
    path = shots / f"{name}.png"
    tab.screenshot(path=str(path), full_page=True)
    return path


def test_a_cutout_from_the_form_with_its_preview(page, service: dict, shots: Path, aladin: bool) -> None:  # type: ignore[no-untyped-def,type-arg]
    if aladin:  # the sky view asks for the survey's coverage map
        with page.expect_response(lambda r: r.url.endswith("/coverage/des.json") and r.ok):
            page.goto(service["base"] + "/ui/cutout")
    else:
        page.goto(service["base"] + "/ui/cutout")
        assert "not installed" in page.inner_text("#no-sky")
    page.fill("#f-ra", f"{RA0:.5f}")
    page.fill("#f-dec", f"{DEC0:.5f}")
    page.fill("#f-radius", "30")
    for band in ("g", "r", "i"):
        page.check(f"input[name='band'][value='{band}']")
    page.select_option("#f-format", "fits")
    page.wait_for_function("document.getElementById('preview-status').textContent === 'Preview ready.'"
                           " && document.getElementById('preview').dataset.request.includes('RGB=i%2Cr%2Cg')")
    width = page.evaluate("document.getElementById('preview').naturalWidth")
    assert 200 <= width <= 400
    curl = page.inner_text("#code-curl")
    assert curl.startswith("curl -fsS -o cutout.fits ") and "FILTER=g" in curl and "FILTER=i" in curl
    assert "SodaQuery(" in page.inner_text("#code-pyvo")
    with page.expect_download() as download:
        page.click("#dl-fits")
    body = Path(download.value.path()).read_bytes()
    assert body.startswith(b"SIMPLE  =                    T")
    # A bad value is named, and the last good preview stays.
    page.fill("#f-dec", "123")
    page.wait_for_function("document.getElementById('preview-status').textContent.startsWith('UsageError')")
    assert "Dec (degrees) must be between -90 and 90" in page.inner_text("#preview-status")
    page.fill("#f-dec", f"{DEC0:.5f}")
    page.wait_for_function("document.getElementById('preview-status').textContent === 'Preview ready.'")
    if aladin:
        sky_footprints_drawn_and_clicked(page, shots)
    shot(page, shots, "1-cutout")
    assert page.errors == []


def sky_colours(png: bytes, box: int) -> tuple[float, int]:
    """In a screenshot of the sky view: the share of the pixels of the ``box``-pixel square
    round its centre that are the coverage map's blue (blue well above red and green;
    Aladin's empty sky is grey), and the number of pixels of the images' orange outlines."""
    from PIL import Image
    picture = Image.open(io.BytesIO(png)).convert("RGB")
    x, y = picture.width // 2, picture.height // 2
    middle = picture.crop((x - box // 2, y - box // 2, x + box // 2, y + box // 2))
    def rgb(image):  # type: ignore[no-untyped-def]
        data = image.tobytes()
        return zip(data[0::3], data[1::3], data[2::3])
    blue = sum(b > r + 40 and b > g + 20 for r, g, b in rgb(middle))
    orange = sum(r > 200 and 100 < g < 170 and b < 110 for r, g, b in rgb(picture))
    return blue / (box * box), orange


def outlined_round(page, ra: float, dec: float, survey: str = "des") -> None:  # type: ignore[no-untyped-def]
    """Wait for the sky view's coverage map of ``survey`` and its images' outlines round (ra, dec)."""
    page.wait_for_function("""(([ra, dec, survey]) => { const sky = document.getElementById('aladin');
        const at = (sky.dataset.footprintsAt || '').split(' ').map(Number);
        return sky.dataset.coverageReady === survey && Number(sky.dataset.footprints) >= 1
            && Math.abs(at[0] - ra) < 0.002 && Math.abs(at[1] - dec) < 0.002; })""", arg=[ra, dec, survey])


def sky_footprints_drawn_and_clicked(page, shots: Path) -> None:  # type: ignore[no-untyped-def]
    """The sky view at the form's position: the survey's coverage map drawn (blue round the
    reticle, which sits on a demo image), the images' outlines from SIA, and a click on the
    sky moving the form's position there."""
    page.click("#f-radius")  # the position fields' change: the view goes to the tile
    outlined_round(page, RA0, DEC0)
    sky = page.locator("#aladin")
    centre = page.evaluate("(() => { const a = document.querySelector('#aladin').getBoundingClientRect();"
                           " return [a.width / 2, a.height / 2]; })()")
    page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")  # drawn
    shown = sky.screenshot(path=str(shots / "1b-sky.png"))
    blue, orange = sky_colours(shown, 100)
    assert blue > 0.8, f"the coverage map is not drawn round the position ({blue:.0%} blue)"
    assert orange > 300, f"the images' outlines are not drawn ({orange} orange pixels)"
    page.wait_for_function("document.getElementById('preview-status').textContent === 'Preview ready.'")
    # A click 40 pixels right of the reticle: east is left on the sky, so RA decreases.
    sky.click(position={"x": centre[0] + 40, "y": centre[1]})
    page.wait_for_function(f"Math.abs(parseFloat(document.getElementById('f-ra').value) - {RA0}) > 1e-4")
    ra, dec = float(page.input_value("#f-ra")), float(page.input_value("#f-dec"))
    assert ra < RA0 and abs(ra - RA0) < 0.1 and abs(dec - DEC0) < 0.01, (ra, dec)
    page.wait_for_function(f"document.getElementById('preview').dataset.request.includes('CIRCLE={ra:.6f}+')"
                           " && document.getElementById('preview-status').textContent === 'Preview ready.'")
    outlined_round(page, ra, dec)  # the view, with its reticle, went there too
    # Another survey: its own coverage map and images, at its example position.
    page.select_option("#f-survey", "lsst")
    lsst = page.locator("#f-survey option[value='lsst']")
    outlined_round(page, float(lsst.get_attribute("data-ra")), float(lsst.get_attribute("data-dec")), "lsst")
    page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    blue, orange = sky_colours(sky.screenshot(path=str(shots / "1c-sky-lsst.png")), 100)
    assert blue > 0.8 and orange > 300, (blue, orange)
    page.select_option("#f-survey", "des")
    page.wait_for_function("document.getElementById('preview-status').textContent === 'Preview ready.'")


def test_a_bulk_job_from_a_table_followed_to_its_end(page, service: dict, shots: Path) -> None:  # type: ignore[no-untyped-def,type-arg]
    table = service["tmp"] / "positions.csv"
    rows = [(RA0 + 0.003 * i, DEC0 + 0.002 * i, f"star{i}") for i in range(12)]
    table.write_text("ra,dec,id\n" + "".join(f"{ra:.5f},{dec:.5f},{name}\n" for ra, dec, name in rows))
    page.goto(service["base"] + "/ui/bulk")
    page.set_input_files("#b-file", str(table))
    page.fill("#b-radius", "10")
    page.check("input[name='band'][value='r']")
    page.click("#b-submit")
    page.wait_for_selector("#job-panel:not([hidden])")
    page.wait_for_function("document.getElementById('job-phase').textContent === 'COMPLETED'", timeout=60_000)
    assert page.evaluate("document.getElementById('job-progress').value") == 1
    with page.expect_download() as download:
        page.click("#job-zip")
    archive = zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes()))
    names = archive.namelist()
    assert "manifest.csv" in names and sum(n.endswith(".fits") for n in names) == 12, names
    shot(page, shots, "2-bulk")
    service["bulk_job"] = page.get_attribute("#job-link", "href")


def test_my_jobs_download_a_result_and_delete_a_job(page, service: dict, shots: Path) -> None:  # type: ignore[no-untyped-def,type-arg]
    # A second job to delete: a small async cutout made with the session (its CSRF token).
    made = page.evaluate("""async ([base]) => {
        const body = new URLSearchParams({CIRCLE: '%s', FILTER: 'r', RUNID: 'to-delete'});
        const r = await Site.send(base + '/async', {method: 'POST', body});
        return r.url; }""" % f"{RA0} {DEC0} 0.003", [service["base"]])
    assert "/async/" in made
    page.goto(service["base"] + "/ui/jobs")
    assert page.locator("tbody tr").count() == 2
    bulk = page.locator(f"tr[data-job='{service['bulk_job']}']")
    assert bulk.locator("td[data-label='Phase']").inner_text() == "COMPLETED"
    bulk.locator("summary").click()
    with page.expect_download() as download:
        bulk.locator("a[href$='/results/manifest.csv']").click()
    assert Path(download.value.path()).read_text().startswith("row,id,ra,dec,radius,status,result,error")
    shot(page, shots, "3-jobs")
    doomed = page.locator("tr", has=page.locator("a", has_text="to-delete"))
    page.once("dialog", lambda dialog: dialog.accept())
    doomed.locator("button[data-delete]").click()
    page.wait_for_function("!document.body.textContent.includes('to-delete')")
    assert page.locator("tbody tr").count() == 1
    assert httpx.get(made).status_code in (401, 403, 404)


def test_an_api_token_made_and_revoked(page, service: dict, shots: Path) -> None:  # type: ignore[no-untyped-def,type-arg]
    page.goto(service["base"] + "/ui/account")
    assert page.get_attribute("#usage-space", "aria-valuenow") != "0"  # the bulk job's results
    page.fill("#t-name", "laptop")
    page.click("#token-form button[type='submit']")
    page.wait_for_selector("#new-token:not([hidden])")
    secret = page.inner_text("#new-token-secret").strip()
    whoami = httpx.get(service["base"] + "/whoami", headers={"Authorization": f"Bearer {secret}"})
    assert whoami.json()["user"] == USER
    shot(page, shots, "4-account")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button[data-revoke][data-name='laptop']")
    page.wait_for_function("document.getElementById('token-status').textContent.includes('revoked')")
    whoami = httpx.get(service["base"] + "/whoami", headers={"Authorization": f"Bearer {secret}"})
    assert whoami.status_code == 401


def test_the_statistics_charts_from_data_of_the_contracts_shape(page, service: dict, shots: Path) -> None:  # type: ignore[no-untyped-def,type-arg]
    """The chart code, on a fixture of /stats.json's shape served to the page."""
    page.route(STATS_URL, lambda route: route.fulfill(
        status=200, content_type="application/json", body=json.dumps(STATS)))
    try:
        page.goto(service["base"] + "/ui/stats?days=7")
        page.wait_for_selector("#stats:not([hidden])")
        assert page.locator(".chart svg").count() == 8
        assert page.locator("#chart-per-day-cutouts svg rect").count() == 7
        assert page.locator("#chart-users table tbody tr").count() == 3
        assert page.locator("#chart-latency svg").get_attribute("aria-label") == \
            "/sync latency percentiles of 1,100 requests"
        shot(page, shots, "5-stats")
    finally:
        page.unroute(STATS_URL)


def test_the_statistics_page_from_the_service(page, service: dict, shots: Path) -> None:  # type: ignore[no-untyped-def,type-arg]
    """The same page on the service's own /stats.json (the audit records of the cutouts
    and the bulk job the tests above made)."""
    page.goto(service["base"] + "/ui/stats")
    page.wait_for_selector("#stats:not([hidden])")
    assert page.locator(".chart svg").count() == 8
    assert "Cutouts" in page.inner_text("#totals")
    assert page.locator("#chart-per-day-cutouts svg rect").count() == 30
    users = page.locator("#chart-users table tbody td:first-child").all_text_contents()  # in a closed <details>
    assert USER in users
    shot(page, shots, "5b-stats-from-the-service")


def test_the_theme_switch_and_a_phone_screen(page, browser, service: dict, shots: Path) -> None:  # type: ignore[no-untyped-def,type-arg]
    page.goto(service["base"] + "/ui/cutout")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.focus("#theme-toggle")
    page.keyboard.press("Enter")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    assert page.get_attribute("#theme-toggle", "aria-pressed") == "true"
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") != background
    page.reload()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"  # remembered
    page.wait_for_function("document.getElementById('preview-status').textContent === 'Preview ready.'")
    shot(page, shots, "6-cutout-dark")
    page.click("#theme-toggle")
    assert page.evaluate("localStorage.getItem('theme')") == "light"
    # A phone, dark by its system setting: no page wider than its screen.
    phone = browser.new_context(viewport={"width": 375, "height": 812}, color_scheme="dark",
                                storage_state=page.context.storage_state())
    try:
        tab = phone.new_page()
        tab.evaluate("1")
        for path, name in (("/ui/cutout", "7-phone-cutout"), ("/ui/jobs", "8-phone-jobs"),
                           ("/ui/bulk", "9-phone-bulk"), ("/ui/account", "10-phone-account")):
            tab.goto(service["base"] + path)
            tab.evaluate("localStorage.removeItem('theme')")
            tab.reload()
            assert tab.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(22, 23, 26)"
            wide = tab.evaluate("""() => [...document.querySelectorAll('body *')].filter(
                e => e.getBoundingClientRect().right > 376).map(e => e.tagName + '#' + e.id + '.' + e.className).slice(0, 8)""")
            assert tab.evaluate("document.documentElement.scrollWidth") <= 375, (path, wide)
            shot(tab, shots, name)
    finally:
        phone.close()


def test_keyboard_reaches_every_control_with_a_visible_focus(page, service: dict) -> None:  # type: ignore[no-untyped-def,type-arg]
    page.goto(service["base"] + "/ui/cutout")
    seen = set()
    for _ in range(40):
        page.keyboard.press("Tab")
        seen.add(page.evaluate("(e => e.id || e.name || e.textContent.trim().slice(0, 20))(document.activeElement)"))
    assert {"f-survey", "f-ra", "f-dec", "f-radius", "band", "f-format", "theme-toggle", "dl-fits"} <= seen
    # Focus is drawn by the site's style sheet for every kind of control. (A headless window
    # never holds the system's focus, so :focus itself cannot be observed here.)
    outlined = page.evaluate("""() => [...document.styleSheets].flatMap(s => { try { return [...s.cssRules]; }
        catch (e) { return []; } }).filter(r => r.selectorText && r.style
        && /outline: 3px solid/.test(r.style.cssText)).map(r => r.selectorText).join(',')""")
    for control in ("a:focus", "button:focus", "input:focus", "select:focus", "summary:focus"):
        assert control in outlined, outlined


def test_no_script_errors(page) -> None:  # type: ignore[no-untyped-def]
    assert page.errors == []


