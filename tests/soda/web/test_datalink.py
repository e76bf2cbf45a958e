"""DataLink 1.1 {links}: documents, descriptors, errors, STILTS lints, /files, CORS."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from lxml import etree
from starlette.testclient import TestClient

from conftest import DEMO_SIZE, app_client, assert_votable, stilts
from soda.surveys.des import tile_centre

V = "{http://www.ivoa.net/xml/VOTable/v1.3}"
TILE = "DES0139-4457"
DID = f"ivo://demo.cutout/des?{TILE}_r"


def links(client, *ids: str, **extra: str):  # type: ignore[no-untyped-def]
    r = client.get("/links", params=[("ID", i) for i in ids] + list(extra.items()))
    return r


def rows(doc: etree._Element) -> list[dict[str, str | None]]:
    names = [f.get("name") for f in doc.iter(f"{V}FIELD")]
    return [dict(zip(names, (td.text for td in tr), strict=True)) for tr in doc.iter(f"{V}TR")]


def descriptor(doc: etree._Element, xml_id: str) -> etree._Element:
    [res] = [r for r in doc.iter(f"{V}RESOURCE") if r.get("ID") == xml_id]
    return res


def test_links_for_one_id(embedded, demo_root):
    r = links(embedded, DID)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-votable+xml;content=datalink"
    doc = assert_votable(r.content)
    results = doc.find(f"{V}RESOURCE")
    assert results.get("type") == "results"
    infos = {i.get("name"): i.get("value") for i in results.findall(f"{V}INFO")}
    assert infos == {"QUERY_STATUS": "OK", "standardID": "ivo://ivoa.net/std/DataLink#links-1.1"}
    table = rows(doc)
    assert [(t["ID"], t["semantics"]) for t in table] == [
        (DID, "#this"), (DID, "#preview"), (DID, "#cutout"), (DID, "#cutout")]
    this = table[0]
    assert this["access_url"].startswith("http://testserver/files?ID=")
    source = next(demo_root.glob(f"{TILE}_*_r.fits.fz"))
    assert int(this["content_length"]) == source.stat().st_size
    download = embedded.get(this["access_url"])
    assert download.status_code == 200 and download.content == source.read_bytes()
    preview = embedded.get(table[1]["access_url"])
    assert preview.status_code == 200 and preview.headers["content-type"] == "image/png"
    assert table[1]["content_type"] == "image/png"
    for row, standard, url in ((table[2], "sync-1.0", "http://testserver/sync"),
                               (table[3], "async-1.0", "http://testserver/async")):
        res = descriptor(doc, row["service_def"])
        assert res.get("type") == "meta" and res.get("utype") == "adhoc:service"
        params = {p.get("name"): p for p in res.findall(f"{V}PARAM")}
        assert params["standardID"].get("value") == f"ivo://ivoa.net/std/SODA#{standard}"
        assert params["accessURL"].get("value") == url
        inputs = {p.get("name"): p for p in res.find(f"{V}GROUP[@name='inputParams']").findall(f"{V}PARAM")}
        assert inputs["ID"].get("ref") == "ID" and inputs["ID"].get("value") == ""
        circle = inputs["CIRCLE"]
        assert (circle.get("xtype"), circle.get("arraysize"), circle.get("unit"), circle.get("ucd")) == \
            ("circle", "3", "deg", "pos.outline;obs")
        ra, dec, radius = (float(v) for v in circle.find(f"{V}VALUES/{V}MAX").get("value").split())
        cra, cdec = tile_centre(TILE)
        assert abs(ra - cra) < 1e-4 and abs(dec - cdec) < 1e-4
        half_diagonal = DEMO_SIZE * 0.263 / 3600 * 2**0.5 / 2
        assert half_diagonal <= radius < half_diagonal * 1.01
        assert len(inputs["POLYGON"].find(f"{V}VALUES/{V}MAX").get("value").split()) == 8
        band = inputs["BAND"]
        assert (band.get("unit"), band.get("ucd"), band.get("xtype")) == ("m", "em.wl;stat.interval", "interval")
        low = float(band.find(f"{V}VALUES/{V}MIN").get("value"))
        high = float(band.find(f"{V}VALUES/{V}MAX").get("value"))
        assert 5.0e-7 < low < high < 7.5e-7
        assert [o.get("value") for o in inputs["FILTER"].iter(f"{V}OPTION")] == ["r"]
        assert set(inputs) >= {"POS", "POL", "RESPONSEFORMAT"}


def test_links_several_ids_and_an_unknown_one(embedded):
    doc = assert_votable(links(embedded, DID, "ivo://demo.cutout/des?nope", f"ivo://demo.cutout/des?{TILE}_g").content)
    table = rows(doc)
    assert [t["ID"] for t in table] == [DID] * 4 + ["ivo://demo.cutout/des?nope"] + [f"ivo://demo.cutout/des?{TILE}_g"] * 4
    error = table[4]
    assert error["error_message"].startswith("NotFoundFault: ") and error["semantics"] == "#this"
    assert error["access_url"] is None and error["service_def"] is None
    for t in table:  # DataLink §3.2: exactly one of access_url, service_def, error_message
        assert sum(bool(t[k]) for k in ("access_url", "service_def", "error_message")) == 1


def test_links_without_id_is_an_empty_table_with_generic_descriptors(embedded):
    doc = assert_votable(links(embedded).content)
    assert rows(doc) == []
    sync = descriptor(doc, "soda-sync")
    options = [o.get("value") for o in sync.iter(f"{V}OPTION")]
    assert {"g", "r", "i", "z", "Y"} <= set(options)


def test_links_overflow_beyond_the_id_limit(embedded):
    doc = assert_votable(links(embedded, *[f"ivo://demo.cutout/des?x{i}" for i in range(101)]).content)
    assert len(rows(doc)) == 100
    infos = doc.find(f"{V}RESOURCE").findall(f"{V}INFO")
    assert infos[-1].get("name") == "QUERY_STATUS" and infos[-1].get("value") == "OVERFLOW"
    assert doc.find(f"{V}RESOURCE/{V}TABLE").getnext() is infos[-1]


@pytest.mark.parametrize("fmt", ["votable", "application/x-votable+xml", "application/x-votable+xml;content=datalink"])
def test_links_standard_formats(embedded, fmt):
    assert links(embedded, DID, RESPONSEFORMAT=fmt).status_code == 200


@pytest.mark.parametrize("extra,status,fault", [
    ({"RESPONSEFORMAT": "text/csv"}, 400, "UsageFault: "),
    ({"RESPONSEFORMAT": ["votable", "votable"]}, 400, "UsageFault: "),
])
def test_links_errors_are_votables_with_datalink_faults(embedded, extra, status, fault):
    r = embedded.get("/links", params={"ID": DID, **extra})
    assert r.status_code == status
    doc = assert_votable(r.content)
    info = doc.find(f"{V}RESOURCE/{V}INFO")
    assert info.get("value") == "ERROR" and info.text.startswith(fault)


def fault_of(response: httpx.Response, status: int, label: str) -> str:
    """DataLink §3.4: the whole-request error is a VOTable whose QUERY_STATUS text starts
    with the fault label; returns that text."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/x-votable+xml"
    doc = assert_votable(response.content)
    [info] = doc.findall(f"{V}RESOURCE/{V}INFO")
    assert info.get("name") == "QUERY_STATUS" and info.get("value") == "ERROR"
    assert info.text.startswith(f"{label}: "), info.text
    return info.text


@pytest.fixture(scope="module")
def policed(tmp_path_factory: pytest.TempPathFactory, demo_root) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    """The app behind the real access policy, with a small anonymous rate limit."""
    data = tmp_path_factory.mktemp("links-policy") / "data"
    with app_client(data, demo_root, CUTOUT_ANONYMOUS_RATE_LIMIT="3", CUTOUT_TRUSTED_PROXIES="127.0.0.1",
                    CUTOUT_ANONYMOUS_RATE_WINDOW_SECONDS="3600") as client:
        yield client


def test_links_refused_token_is_a_usage_fault_with_its_challenge(policed):
    r = policed.get("/links", params={"ID": DID}, headers={"Authorization": "Bearer cut_bogus"})
    assert "unknown or revoked API token" in fault_of(r, 401, "UsageFault")
    challenges = r.headers.get_list("www-authenticate")
    assert any(c.startswith("Bearer ") and 'error="invalid_token"' in c for c in challenges), challenges


def test_links_other_authorization_scheme_is_a_usage_fault(policed):
    r = policed.post("/links", data={"ID": DID}, headers={"Authorization": "Basic YWxpY2U6cHc="})
    fault_of(r, 401, "UsageFault")
    assert any('error="invalid_request"' in c for c in r.headers.get_list("www-authenticate"))


def test_links_anonymous_rate_limit_is_a_transient_fault_with_retry_after(policed):
    here = {"X-Forwarded-For": "192.0.2.41"}
    assert [policed.get("/links", params={"ID": DID}, headers=here).status_code
            for _ in range(3)] == [200, 200, 200]
    r = policed.get("/links", params={"ID": DID}, headers=here)
    assert "too many requests" in fault_of(r, 429, "TransientFault")
    assert 1 <= int(r.headers["retry-after"]) <= 3600


def test_links_method_not_allowed_is_a_usage_fault_with_allow(policed):
    r = policed.delete("/links", params={"ID": DID}, headers={"X-Forwarded-For": "192.0.2.42"})
    assert "DELETE is not allowed" in fault_of(r, 405, "UsageFault")
    assert set(r.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "POST"}


def test_links_unreadable_body_is_a_usage_fault(policed):
    r = policed.post("/links", content=b"ID=x", headers={"Content-Type": "text/plain",
                                                         "X-Forwarded-For": "192.0.2.43"})
    assert "POST bodies must be" in fault_of(r, 400, "UsageFault")


def test_links_needs_a_login_when_anonymous_access_is_off(tmp_path, demo_root):
    with app_client(tmp_path / "data", demo_root, CUTOUT_ANONYMOUS_ACCESS="false") as client:
        r = client.get("/links", params={"ID": DID})
    assert "needs a login" in fault_of(r, 401, "UsageFault")
    assert any(c.startswith("Bearer ") for c in r.headers.get_list("www-authenticate"))


def test_links_unexpected_failure_is_a_fatal_fault(embedded, monkeypatch):
    def broken(dataset_id: str):  # type: ignore[no-untyped-def]
        raise RuntimeError("the image store fell over")
    monkeypatch.setattr(embedded.app_state.runtime.datasets, "by_id", broken)
    quiet = TestClient(embedded.app, base_url="http://testserver", raise_server_exceptions=False)
    r = quiet.get("/links", params={"ID": DID})
    text = fault_of(r, 500, "FatalFault")
    assert "internal failure, logged as incident" in text and "fell over" not in text


# --- link_auth and link_authorized (DataLink §3.2.11, §3.2.12) ------------------------------

def auth_columns(doc: etree._Element) -> dict[str, tuple[str | None, str | None]]:
    """(link_auth, link_authorized) by row, keyed by semantics (#cutout: sync, async)."""
    fields = {f.get("name"): f for f in doc.iter(f"{V}FIELD")}
    assert fields["link_auth"].get("datatype") == "char" and fields["link_auth"].get("ucd") == "meta.code"
    assert fields["link_authorized"].get("datatype") == "boolean"   # §3.2.12: MUST
    out = {}
    for row in rows(doc):
        key = row["semantics"] if row["semantics"] != "#cutout" else f"#cutout {row['service_def']}"
        out[key] = (row["link_auth"], row["link_authorized"])
    return out


@pytest.fixture(scope="module")
def defaults(tmp_path_factory: pytest.TempPathFactory, demo_root) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    """The service's own anonymous limits: no whole files, a 1024² preview (the demo's size)."""
    with app_client(tmp_path_factory.mktemp("links-defaults") / "data", demo_root,
                    CUTOUT_ANONYMOUS_RATE_LIMIT="0") as client:
        yield client


def bearer(client: httpx.Client) -> dict[str, str]:
    import datetime as dt
    later = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=1)
    _, secret = client.app_state.access.tokens.create("alice", "links", later)  # type: ignore[attr-defined]
    return {"Authorization": f"Bearer {secret}"}


def test_link_auth_for_anonymous_callers_follows_the_settings(defaults):
    r = defaults.get("/links", params={"ID": DID})
    assert "Authorization" in r.headers["vary"]
    assert auth_columns(assert_votable(r.content)) == {
        "#this": ("true", "false"),              # anonymous_files = false: /files needs a login
        "#preview": ("optional", "true"),        # 1024² demo image, at the anonymous limit
        "#cutout soda-sync-1": ("optional", "true"),
        "#cutout soda-async-1": ("optional", "true"),   # anonymous_async = "limited"
    }


def test_link_authorized_predicts_what_an_anonymous_caller_gets(defaults):
    table = rows(assert_votable(defaults.get("/links", params={"ID": DID}).content))
    for row in (t for t in table if t["access_url"]):
        r = defaults.get(row["access_url"])
        if row["link_authorized"] == "true":
            assert r.status_code == 200 and r.headers["content-type"] == row["content_type"]
        else:
            assert r.status_code == 401 and r.headers.get_list("www-authenticate"), r.text


def test_link_authorized_for_a_logged_in_caller(defaults):
    user = bearer(defaults)
    table = rows(assert_votable(defaults.get("/links", params={"ID": DID}, headers=user).content))
    assert {t["link_authorized"] for t in table} == {"true"}
    assert [t["link_auth"] for t in table] == ["true", "optional", "optional", "optional"]
    this = table[0]
    assert defaults.get(this["access_url"], headers=user).status_code == 200


def test_link_auth_when_anonymous_callers_get_less(tmp_path, demo_root):
    with app_client(tmp_path / "data", demo_root, CUTOUT_ANONYMOUS_RATE_LIMIT="0",
                    CUTOUT_ANONYMOUS_MAX_CUTOUT_PIXELS=str(DEMO_SIZE**2 - 1),
                    CUTOUT_ANONYMOUS_ASYNC="off", CUTOUT_ANONYMOUS_FILES="true") as client:
        doc = assert_votable(client.get("/links", params={"ID": DID}).content)
        assert auth_columns(doc) == {
            "#this": ("optional", "true"),
            "#preview": ("true", "false"),            # one pixel over the anonymous limit
            "#cutout soda-sync-1": ("optional", "true"),
            "#cutout soda-async-1": ("true", "false"),
        }
        preview = rows(doc)[1]["access_url"]
        refused = client.get(preview)
        assert refused.status_code == 400 and "anonymous" in refused.text
        assert client.get(preview, headers=bearer(client)).status_code == 200


def test_link_auth_is_null_on_error_rows(defaults):
    doc = assert_votable(defaults.get("/links", params={"ID": "ivo://demo.cutout/des?nope"}).content)
    [row] = rows(doc)
    assert row["error_message"].startswith("NotFoundFault: ")
    assert (row["link_auth"], row["link_authorized"]) == (None, None)


def test_files_unknown_id_is_404(embedded):
    r = embedded.get("/files", params={"ID": "ivo://demo.cutout/des?nope"})
    assert r.status_code == 404 and r.text.startswith("UsageError: ")


def test_links_behind_a_proxy(embedded):
    r = embedded.get("/links", params={"ID": DID}, headers={
        "X-Forwarded-Proto": "https", "X-Forwarded-Host": "vo.example.org", "X-Forwarded-Prefix": "/cutouts"})
    doc = assert_votable(r.content)
    assert rows(doc)[0]["access_url"].startswith("https://vo.example.org/cutouts/files?ID=")
    urls = [p.get("value") for p in doc.iter(f"{V}PARAM") if p.get("name") == "accessURL"]
    assert urls == ["https://vo.example.org/cutouts/sync", "https://vo.example.org/cutouts/async"]


def test_cors_for_browser_clients(embedded):
    r = embedded.get("/links", params={"ID": DID}, headers={"Origin": "https://aladin.example"})
    assert r.headers["access-control-allow-origin"] == "*"
    pre = embedded.options("/sync", headers={"Origin": "https://aladin.example",
                                             "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 200 and "POST" in pre.headers["access-control-allow-methods"]


@pytest.mark.parametrize("ids", [[DID], [DID, "ivo://demo.cutout/des?nope", "ivo://demo.cutout/des?DES0000+0209_i"], []])
def test_stilts_datalinklint_and_votlint_are_clean(embedded, tmp_path, ids):
    path = tmp_path / "links.xml"
    path.write_bytes(links(embedded, *ids).content)
    report = stilts("datalinklint", path)
    assert "Totals: Errors: 0; Warnings: 0;" in report, report
    lint = stilts("votlint", path)
    assert "ERROR" not in lint and "WARNING" not in lint, lint


def test_stilts_votlint_on_error_documents(embedded, tmp_path):
    path = tmp_path / "error.xml"
    path.write_bytes(embedded.get("/links", params={"RESPONSEFORMAT": "text/csv"}).content)
    lint = stilts("votlint", path)
    assert "ERROR" not in lint and "WARNING" not in lint, lint
