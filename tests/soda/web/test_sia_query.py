"""SIA 2.0 /query and the coverage maps over HTTP, in-process.

The catalogue is the runtime's own image index (soda/index), which ingested the demo DES
survey when the app started.
"""

from __future__ import annotations

from io import BytesIO

import pytest
from lxml import etree
from mocpy import MOC

from conftest import app_client, assert_valid, assert_votable, header_identity, stilts
from soda.index.catalogue import IndexCatalogue
from soda.index.ingest import ingest
from soda.index.tables import MIGRATIONS
from soda.ops.database import close_database, migrate, open_database
from soda.sky.coverage import outside
from soda.surveys.des import DESSurvey, tile_centre

V = "{http://www.ivoa.net/xml/VOTable/v1.3}"
SOUTH, EQUATOR = "DES0139-4457", "DES0000+0209"
RA, DEC = tile_centre(SOUTH)
HERE = f"CIRCLE {RA} {DEC} 0.01"
WRAP = f"CIRCLE 359.99 {tile_centre(EQUATOR)[1]} 0.005"  # inside the tile, west of RA 0
DATALINK = "application/x-votable+xml;content=datalink"
R_BAND = "6.0e-7 6.2e-7"   # inside r only (test_band_constants checks it against the survey)


@pytest.fixture
def sia(embedded):  # type: ignore[no-untyped-def]
    assert sum(embedded.app_state.runtime.catalogue.bands("des").values()) == 6
    return embedded


def rows(body: bytes) -> list[dict[str, str | None]]:
    doc = assert_votable(body)
    names = [f.get("name") for f in doc.iter(f"{V}FIELD")]
    return [dict(zip(names, (td.text for td in tr), strict=True)) for tr in doc.iter(f"{V}TR")]


def statuses(body: bytes) -> list[str]:
    doc = etree.fromstring(body)
    results = doc.find(f"{V}RESOURCE[@type='results']")
    return [(i.get("value"), "after" if i.getprevious() is not None and i.getprevious().tag == f"{V}TABLE"
             else "before") for i in results.findall(f"{V}INFO[@name='QUERY_STATUS']")]


def query(client, *pairs: tuple[str, str]):  # type: ignore[no-untyped-def]
    r = client.get("/query", params=list(pairs))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-votable+xml")
    return r


def names(body: bytes) -> list[str]:
    return sorted(str(row["obs_id"]) for row in rows(body))


def test_a_position_finds_the_images_of_its_tile_as_obscore_rows(sia, demo_root):
    r = query(sia, ("POS", HERE))
    doc = assert_votable(r.content)
    assert statuses(r.content) == [("OK", "before")]
    fields = {f.get("name"): f for f in doc.iter(f"{V}FIELD")}
    for name in ("dataproduct_type", "calib_level", "obs_collection", "obs_id", "obs_publisher_did",
                 "access_url", "access_format", "access_estsize", "target_name", "s_ra", "s_dec", "s_fov",
                 "s_region", "s_resolution", "s_xel1", "s_xel2", "t_min", "t_max", "t_exptime",
                 "t_resolution", "t_xel", "em_min", "em_max", "em_res_power", "em_xel", "o_ucd",
                 "pol_states", "pol_xel", "facility_name", "instrument_name"):
        assert fields[name].get("utype", "").startswith("obscore:"), name
    assert fields["obs_publisher_did"].get("ucd") == "meta.ref.ivoid"
    assert (fields["s_region"].get("xtype"), fields["s_region"].get("unit")) == ("polygon", "deg")
    assert (fields["em_min"].get("unit"), fields["s_ra"].get("ucd")) == ("m", "pos.eq.ra")
    found = rows(r.content)
    assert sorted(row["obs_id"] for row in found) == [f"{SOUTH}_g", f"{SOUTH}_i", f"{SOUTH}_r"]
    r_row = next(row for row in found if row["obs_id"] == f"{SOUTH}_r")
    did = f"ivo://demo.cutout/des?{SOUTH}_r"
    assert r_row["obs_publisher_did"] == did and r_row["obs_collection"] == "des"
    assert r_row["dataproduct_type"] == "image" and r_row["access_format"] == DATALINK
    assert abs(float(r_row["s_ra"]) - RA) < 1e-4 and abs(float(r_row["s_dec"]) - DEC) < 1e-4
    assert int(r_row["s_xel1"]) == int(r_row["s_xel2"]) == 1024
    assert len(r_row["s_region"].split()) == 16 and r_row["t_min"] is None
    source = next(demo_root.glob(f"{SOUTH}_*_r.fits.fz"))
    assert int(r_row["access_estsize"]) == -(-source.stat().st_size // 1024)
    low, high = sia.app_state.runtime.datasets.surveys["des"].band_range("r")
    assert (float(r_row["em_min"]), float(r_row["em_max"])) == pytest.approx((low, high))
    # DataLink 1.1 §4: the access URL is the row's {links}; the descriptor names ID by reference.
    links = sia.get(r_row["access_url"])
    assert links.status_code == 200 and links.headers["content-type"] == DATALINK
    semantics = [row["semantics"] for row in rows(links.content)]
    assert "#this" in semantics and "#cutout" in semantics
    [service] = [res for res in doc.iter(f"{V}RESOURCE") if res.get("type") == "meta"]
    assert service.get("utype") == "adhoc:service"
    params = {p.get("name"): p.get("value") for p in service.findall(f"{V}PARAM")}
    assert params["standardID"] == "ivo://ivoa.net/std/DataLink#links-1.1"
    assert params["accessURL"] == "http://testserver/links"
    [ident] = service.findall(f"{V}GROUP[@name='inputParams']/{V}PARAM")
    assert ident.get("name") == "ID" and ident.get("ref") == "obs_publisher_did"


def test_band_constants(sia):
    survey = sia.app_state.runtime.datasets.surveys["des"]
    assert survey.bands_in(6.0e-7, 6.2e-7) == ["r"]


def test_post_is_answered_as_get(sia):
    r = sia.post("/query", data={"POS": HERE, "BAND": R_BAND})
    assert r.status_code == 200 and names(r.content) == [f"{SOUTH}_r"]


def test_positions_or_and_other_parameters_and(sia):
    both = names(query(sia, ("POS", HERE), ("POS", WRAP)).content)
    assert len(both) == 6 and {n.split("_")[0] for n in both} == {SOUTH, EQUATOR}
    assert names(query(sia, ("POS", HERE), ("POS", WRAP), ("BAND", R_BAND)).content) == \
        [f"{EQUATOR}_r", f"{SOUTH}_r"]
    g_low = sia.app_state.runtime.datasets.surveys["des"].band_range("g")[0]
    assert names(query(sia, ("POS", HERE), ("BAND", R_BAND), ("BAND", f"{g_low} {g_low}")).content) == \
        [f"{SOUTH}_g", f"{SOUTH}_r"]
    assert names(query(sia, ("POS", HERE), ("COLLECTION", "nope")).content) == []
    assert names(query(sia, ("POS", HERE), ("COLLECTION", "nope"), ("COLLECTION", "des")).content) == \
        [f"{SOUTH}_g", f"{SOUTH}_i", f"{SOUTH}_r"]


def test_the_position_across_ra_zero_and_the_other_shapes(sia):
    assert names(query(sia, ("POS", WRAP)).content) == [f"{EQUATOR}_g", f"{EQUATOR}_i", f"{EQUATOR}_r"]
    assert len(names(query(sia, ("POS", "RANGE 359.9 360 2.1 2.2")).content)) == 3
    assert len(names(query(sia, ("POS", "POLYGON 359.95 2.1 0.05 2.1 0.05 2.2 359.95 2.2")).content)) == 3
    assert names(query(sia, ("POS", "CIRCLE 180 0 1")).content) == []
    # Beside the tile's edge, within its covering circle: not in the image.
    half = 1024 * 0.263 / 3600 / 2
    assert names(query(sia, ("POS", f"CIRCLE 0.0131 {tile_centre(EQUATOR)[1] + half + 0.004} 0.003")).content) == []


def test_no_position_finds_every_image(sia):
    # The shipped demo surveys: des (2 tiles x 3 bands) and lsst (4 patches x 3 bands).
    found = names(query(sia).content)
    assert len(found) == 18 and sum(n.startswith("DES") for n in found) == 6


@pytest.mark.parametrize("pairs, expected", [
    ((("ID", f"ivo://demo.cutout/des?{SOUTH}_g"), ("ID", f"IVO://DEMO.CUTOUT/des?{EQUATOR}_i")),
     [f"{EQUATOR}_i", f"{SOUTH}_g"]),
    ((("ID", "ivo://elsewhere/des?x"),), []),
    ((("POS", HERE), ("TARGET", SOUTH.lower())), [f"{SOUTH}_g", f"{SOUTH}_i", f"{SOUTH}_r"]),
    ((("POS", HERE), ("TARGET", EQUATOR)), []),
    ((("POS", HERE), ("TIME", "50000 70000")), []),            # coadds have no time of observation
    ((("POS", HERE), ("EXPTIME", "0 +Inf")), []),
    ((("POS", HERE), ("SPATRES", "0 +Inf")), []),
    ((("POS", HERE), ("POL", "I")), []),                       # not polarimetric: pol_states null
    ((("POS", HERE), ("FACILITY", "Blanco")), []),
    ((("POS", HERE), ("INSTRUMENT", "DECam")), []),
    ((("POS", HERE), ("DPTYPE", "cube")), []),
    ((("POS", HERE), ("DPTYPE", "image"), ("CALIB", "3")), [f"{SOUTH}_g", f"{SOUTH}_i", f"{SOUTH}_r"]),
    ((("POS", HERE), ("CALIB", "2")), []),
    ((("POS", HERE), ("FOV", "0.1 0.2")), [f"{SOUTH}_g", f"{SOUTH}_i", f"{SOUTH}_r"]),
    ((("POS", HERE), ("FOV", "1 2")), []),
    ((("POS", HERE), ("FORMAT", "image/png"), ("BAND", R_BAND)), [f"{SOUTH}_r"]),
    ((("POS", HERE), ("FORMAT", DATALINK), ("BAND", R_BAND)), [f"{SOUTH}_r"]),
    ((("POS", HERE), ("FORMAT", "text/html")), []),
])
def test_each_constraint(sia, pairs, expected):
    assert names(query(sia, *pairs).content) == expected


def test_unknown_parameters_are_ignored(sia):
    assert names(query(sia, ("POS", HERE), ("BAND", R_BAND), ("REQUEST", "queryData"),
                       ("NOSUCH", "1")).content) == [f"{SOUTH}_r"]


def test_maxrec_truncates_with_overflow_after_the_table(sia):
    r = query(sia, ("MAXREC", "2"))
    assert len(rows(r.content)) == 2 and statuses(r.content) == [("OK", "before"), ("OVERFLOW", "after")]
    r = query(sia, ("MAXREC", "18"))
    assert len(rows(r.content)) == 18 and statuses(r.content) == [("OK", "before")]


def test_maxrec_zero_is_metadata_only(sia):
    r = query(sia, ("MAXREC", "0"), ("POS", HERE))
    doc = assert_votable(r.content)
    assert len(list(doc.iter(f"{V}FIELD"))) == 30 and rows(r.content) == []
    assert statuses(r.content) == [("OK", "before"), ("OVERFLOW", "after")]


def test_maxrec_default_and_hard_limit_come_from_the_settings(tmp_path, demo_root):
    with app_client(tmp_path / "data", demo_root, identify=header_identity, CUTOUT_SIA_MAXREC_DEFAULT="4",
                    CUTOUT_SIA_MAXREC_LIMIT="5", CUTOUT_SIA_SCAN_LIMIT="100") as client:
        assert len(rows(query(client).content)) == 4
        r = query(client, ("MAXREC", "1000"))
        assert len(rows(r.content)) == 5 and ("OVERFLOW", "after") in statuses(r.content)


def test_a_scan_that_reached_its_limit_is_an_overflow(tmp_path, demo_root):
    with app_client(tmp_path / "data", demo_root, identify=header_identity,
                    CUTOUT_SIA_SCAN_LIMIT="3") as client:
        r = query(client, ("BAND", R_BAND))
        assert len(rows(r.content)) <= 3 and ("OVERFLOW", "after") in statuses(r.content)


@pytest.mark.parametrize("pairs, status, words", [
    ((("POS", "CIRCLE 1 2"),), 400, "UsageError: POS="),
    ((("BAND", "r"),), 400, "UsageError: BAND="),
    ((("MAXREC", "-3"),), 400, "UsageError: MAXREC="),
    ((("MAXREC", "1"), ("MAXREC", "2")), 400, "MultiValuedParamNotSupported: MAXREC"),
    ((("RESPONSEFORMAT", "text/csv"),), 400, "UsageError: RESPONSEFORMAT="),
    ((("POS", "CIRCLE 1 2 3"),) * 51, 400, "UsageError: POS was given 51 times"),
])
def test_bad_input_is_a_votable_error(sia, pairs, status, words):
    r = sia.get("/query", params=list(pairs))
    assert r.status_code == status and r.headers["content-type"].startswith("application/x-votable+xml")
    doc = assert_votable(r.content)
    [info] = doc.iter(f"{V}INFO")
    assert info.get("name") == "QUERY_STATUS" and info.get("value") == "ERROR"
    assert info.text.startswith(words), info.text


def test_a_survey_with_no_images_ingested_answers_empty(tmp_path, demo_root):
    # The des survey's root exists but holds no image: the index the runtime ingested at
    # start has no row of it, and discovery says so rather than failing.
    (tmp_path / "data" / "demo" / "des").mkdir(parents=True)
    with app_client(tmp_path / "data", demo_root, identify=header_identity) as client:
        assert client.app_state.runtime.catalogue.bands("des") == {}
        r = query(client, ("POS", HERE))
        assert rows(r.content) == [] and statuses(r.content) == [("OK", "before")]
        assert rows(query(client, ("COLLECTION", "des")).content) == []
        assert rows(query(client, ("COLLECTION", "lsst")).content)  # the other survey is still there
        j = client.get("/coverage/des.json")
        assert j.status_code == 200 and MOC.from_json(j.json()).empty()
        assert "ivo://ivoa.net/std/SIA#query-2.0" in client.get("/capabilities").text


def test_stilts_votlint_is_silent_on_answers_and_errors(sia, tmp_path):
    for n, pairs in enumerate(([("POS", HERE), ("POS", WRAP)], [("MAXREC", "2")], [("MAXREC", "0")],
                               [("POS", "CIRCLE 1 2")])):
        path = tmp_path / f"answer{n}.xml"
        path.write_bytes(sia.get("/query", params=pairs).content)
        lint = stilts("votlint", path).replace("Picked up JAVA_TOOL_OPTIONS: -Djava.awt.headless=true", "")
        assert lint.strip() == "", lint


# --- capabilities and the front page ----------------------------------------------------

def test_capabilities_register_the_sia_query(sia):
    r = sia.get("/capabilities")
    doc = assert_valid(r.content, "ivoa-bundle.xsd")  # VOSI capabilities, VODataService, VOResource
    [cap] = [c for c in doc.iter("capability") if c.get("standardID") == "ivo://ivoa.net/std/SIA#query-2.0"]
    interface = cap.find("interface")
    assert interface.find("accessURL").text == "http://testserver/query"
    assert [q.text for q in interface.findall("queryType")] == ["GET", "POST"]
    params = [p.find("name").text for p in interface.findall("param")]
    assert {"POS", "BAND", "TIME", "COLLECTION", "FORMAT", "MAXREC", "RESPONSEFORMAT"} <= set(params)


def test_the_front_page_lists_the_discovery_endpoints(sia):
    page = sia.get("/").text
    assert "/query" in page
    assert "/coverage/des.fits" in page


# --- coverage maps ----------------------------------------------------------------------

def test_coverage_fits_and_json(sia):
    r = sia.get("/coverage/des.fits")
    assert r.status_code == 200 and r.headers["content-type"] == "application/fits"
    moc = MOC.from_fits(BytesIO(r.content))
    for tile in (SOUTH, EQUATOR):
        assert not outside(moc, *tile_centre(tile))
    assert not outside(moc, 359.99, tile_centre(EQUATOR)[1])
    assert outside(moc, 180.0, 0.0) and outside(moc, RA, DEC + 1.0)
    j = sia.get("/coverage/des.json")
    assert j.status_code == 200 and j.headers["content-type"] == "application/json"
    assert MOC.from_json(j.json()) == moc


def test_coverage_follows_the_catalogue(sia, demo_root, tmp_path):
    whole = MOC.from_fits(BytesIO(sia.get("/coverage/des.fits").content))
    # An index of the southern tile's files only, filled by the real ingest.
    fewer = open_database(f"sqlite:///{tmp_path / 'fewer.sqlite'}")
    migrate(fewer, [("images", MIGRATIONS)])
    report = ingest(fewer, "des", DESSurvey, sorted(demo_root.glob(f"{SOUTH}_*.fits.fz")))
    assert report.images == 3
    sia.app_state.runtime.catalogue = IndexCatalogue(fewer)
    try:
        smaller = MOC.from_fits(BytesIO(sia.get("/coverage/des.fits").content))
    finally:
        close_database(fewer)
    assert smaller != whole and outside(smaller, *tile_centre(EQUATOR)) and not outside(smaller, RA, DEC)


@pytest.mark.parametrize("path", ["/coverage/nope.fits", "/coverage/des.png", "/coverage/des"])
def test_unknown_coverage_maps_are_labelled_404s(sia, path):
    r = sia.get(path)
    assert r.status_code == 404 and r.text.startswith("UsageError: no coverage map")


class Recording:
    """The runtime's index, counting the searches asked of it."""

    def __init__(self, catalogue) -> None:  # type: ignore[no-untyped-def]
        self.catalogue, self.searches = catalogue, 0

    def search(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.searches += 1
        return self.catalogue.search(*args, **kwargs)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.catalogue, name)


def test_positions_outside_the_coverage_map_search_no_index(sia):
    recording = Recording(sia.app_state.runtime.catalogue)
    sia.app_state.runtime.catalogue = recording
    assert names(query(sia, ("POS", HERE)).content) == [f"{SOUTH}_g", f"{SOUTH}_i", f"{SOUTH}_r"]
    made = recording.searches  # the map of each survey (des, lsst), once, then the position's lookup
    assert made == 3
    for pos in ("CIRCLE 180 0 1", "RANGE 100 101 10 11", "POLYGON 200 -30 201 -30 201 -29"):
        r = query(sia, ("POS", pos))
        assert rows(r.content) == [] and statuses(r.content) == [("OK", "before")]
    assert recording.searches == made
    # One POS value inside the survey is enough for it to be searched.
    assert len(names(query(sia, ("POS", "CIRCLE 180 0 1"), ("POS", WRAP)).content)) == 3
    assert recording.searches == made + 1
    # Beside the tile but within a cell of the map: searched, and the exact test says no.
    half = 1024 * 0.263 / 3600 / 2
    assert names(query(sia, ("POS", f"CIRCLE 0.0131 {tile_centre(EQUATOR)[1] + half + 0.004} 0.003")).content) == []
