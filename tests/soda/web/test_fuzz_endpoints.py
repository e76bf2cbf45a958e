"""A seeded fuzzer over every endpoint and parameter of the service, in-process.

Whatever a client sends, the application answers without failing (no status >= 500),
every refusal is labelled (a DALI/SODA label in text/plain, or a VOTable whose
QUERY_STATUS text starts with a label or a DataLink fault; 405 with Allow), and every
2xx answer parses (XML documents parse; UWS documents validate against the schema).

Deterministic (``derandomize=True``) and bounded: a fixed number of cases per test,
counted, and the total checked by the last test of the module.
"""

from __future__ import annotations

import datetime as dt
import string
from urllib.parse import quote_from_bytes
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from conftest import app_client, assert_uws
from soda.surveys.des import tile_centre

TILES = ("DES0139-4457", "DES0000+0209")
BANDS = ("g", "r", "i")
IDS = [f"ivo://demo.cutout/des?{t}_{b}" for t in TILES for b in BANDS]
CENTRES = [tile_centre(t) for t in TILES]

LABELS = ("UsageError:", "MultiValuedParamNotSupported:", "AuthenticationError:",
          "AuthorizationError:", "ServiceUnavailable:")
FAULTS = ("UsageFault:", "NotFoundFault:", "TransientFault:", "FatalFault:", "DefaultFault:")

# Cases per test; the module's total must reach TOTAL.
BUDGET = {"sync": 1150, "links": 750, "create": 500, "job": 1600, "other": 1000}
TOTAL = 5000
CASES: Counter[str] = Counter()
STATUSES: Counter[str] = Counter()


def fuzz_settings(name: str):  # type: ignore[no-untyped-def]
    return settings(max_examples=BUDGET[name], derandomize=True, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=True)


# --- values ----------------------------------------------------------------------------

def _fmt(x: float) -> str:
    return repr(x)


numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(_fmt),
    st.integers().map(str),
    st.sampled_from(["NaN", "nan", "+Inf", "-Inf", "inf", "Infinity", "1e309", "-1e309", "1e-320",
                     "0", "-0", "0x1p3", "1_000", "١٢٣", "²", "¹⁰", "１２", "½", "Ⅻ", "𝟗", "1e",
                     ".", "-", "+", "--1", "1,5", " 1 ", "9" * 5000, "0." + "0" * 4000 + "1",
                     "1" + "0" * 5000, "-" + "9" * 5000]),
)

ugly = st.one_of(
    st.text(max_size=16),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x1f), max_size=8),
    st.sampled_from(["\x00", "a\x00b", "<", ">", "&", "&amp;", "'", '"', "]]>", "<![CDATA[x]]>",
                     "<?xml version='1.0'?>", "&#0;", "\ufffe", "\ud7ff", "\u2028", "%00", "%",
                     "../../etc/passwd", "*", "", " ", "\t", "\r\n", "x" * 3000, "é" * 2000]),
)


@st.composite
def near_tile(draw: st.DrawFn) -> tuple[float, float]:
    ra, dec = draw(st.sampled_from(CENTRES))
    return ra + draw(st.floats(-0.4, 0.4)), dec + draw(st.floats(-0.4, 0.4))


@st.composite
def shape_body(draw: st.DrawFn, kind: str) -> str:
    """A small CIRCLE, RANGE or POLYGON near a demo tile (the value of its own parameter)."""
    ra, dec = draw(near_tile())
    r = draw(st.floats(0.0005, 0.005))
    if kind == "CIRCLE":
        return f"{ra} {dec} {r}"
    if kind == "RANGE":
        return f"{ra - r} {ra + r} {dec - r} {dec + r}"
    return f"{ra - r} {dec - r} {ra + r} {dec - r} {ra} {dec + r}"


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[str]) -> str:
    value = draw(base)
    how = draw(st.sampled_from(["keep", "keep", "insert", "delete", "replace", "swapcase", "number",
                                "repeat", "append"]))
    if how == "keep" or not value:
        return value
    i = draw(st.integers(0, len(value) - 1))
    if how == "insert":
        return value[:i] + draw(ugly) + value[i:]
    if how == "delete":
        return value[:i] + value[i + draw(st.integers(1, 5)):]
    if how == "replace":
        words = value.split(" ")
        words[draw(st.integers(0, len(words) - 1))] = draw(numbers)
        return " ".join(words)
    if how == "swapcase":
        return value.swapcase()
    if how == "number":
        return draw(numbers)
    if how == "repeat":
        return " ".join([value] * draw(st.integers(2, 4)))
    return value + draw(st.sampled_from([" ", ",", " 1", " NaN", "\x00", "&x=1", " CIRCLE 1 2 3"]))


pos_values = st.sampled_from(["CIRCLE", "RANGE", "POLYGON"]).flatmap(
    lambda kind: shape_body(kind).map(lambda body: f"{kind} {body}"))

SODA_VALUES: dict[str, st.SearchStrategy[str]] = {
    "ID": st.one_of(st.sampled_from(IDS), st.sampled_from([
        "ivo://demo.cutout/des?DES1234-5678_r", "ivo://demo.cutout/des?", "ivo://demo.cutout/des",
        "ivo://other/des?DES0139-4457_r", "DES0139-4457_r", "ivo://demo.cutout/des?DES0139-4457_z",
        "ivo://demo.cutout/des?DES0139-4457_r?x", "ivo://demo.cutout/des?../../x"])),
    "POS": pos_values,
    "CIRCLE": shape_body("CIRCLE"),
    "RANGE": shape_body("RANGE"),
    "POLYGON": shape_body("POLYGON"),
    "BAND": st.sampled_from(["4e-7 5.5e-7", "5.6e-7 6.5e-7", "6e-7 6e-7", "7e-7 8.5e-7", "1 2", "-Inf +Inf",
                             "6e-7", "6.5e-7 5.6e-7"]),
    "FILTER": st.sampled_from(["g", "r", "i", "g,r", "g,r,i", "z", "R", "", ",", "g,,r"]),
    "POL": st.sampled_from(["I", "Q", "I Q", "i", "XX", ""]),
    "TIME": st.sampled_from(["55000 56000", "-Inf +Inf", "56000 55000", "55000", "now"]),
    "RESPONSEFORMAT": st.sampled_from(["application/fits", "fits", "image/fits", "image/png", "png",
                                       "image/jpeg", "jpeg", "jpg", "image/jpg", "text/html",
                                       "application/x-votable+xml", "FITS", "image/png;q=1"]),
    "STRETCH": st.sampled_from(["linear", "asinh", "log", "sqrt", "LOG", "cubic"]),
    "LIMITS": st.sampled_from(["sky", "zscale", "minmax", "percentile", "SKY", "none"]),
    "PERCENTILES": st.sampled_from(["1 99", "0 100", "99 1", "50 50", "-1 101", "1"]),
    "SIZE": st.sampled_from(["16", "32", "64", "0", "-5", "100000", "1.5", "64px"]),
    "RGB": st.sampled_from(["default", "i,r,g", "g,g,g", "i,r", "i,r,g,z", "x,y,z", ""]),
    "Q": st.sampled_from(["8", "0", "-1", "1e300", "0.5"]),
}
UWS_VALUES: dict[str, st.SearchStrategy[str]] = {
    "PHASE": st.sampled_from(["RUN", "ABORT", "run", "SUSPEND", "COMPLETED", "QUEUED", "EXECUTING",
                              "PENDING", "ERROR", ""]),
    "RUNID": st.text(max_size=30),
    "EXECUTIONDURATION": st.one_of(st.sampled_from(["0", "1", "60", "-1", "86400000"]), numbers),
    "DESTRUCTION": st.one_of(st.sampled_from(["2030-01-01T00:00:00Z", "2000-01-01T00:00:00Z",
                                              "2030-01-01", "2030-13-45T99:99:99Z", "9999-12-31T23:59:59Z",
                                              "0001-01-01T00:00:00Z", "2030-01-01T00:00:00+05:00",
                                              "2030-01-01T00:00:00.123456789Z", "yesterday"]), numbers),
    "WAIT": st.sampled_from(["0", "-1", "1", "0.01", "NaN", "x", "1e9", "-Inf"]),
    "LAST": st.one_of(st.sampled_from(["1", "0", "-1", "10"]), numbers),
    "AFTER": st.sampled_from(["2020-01-01T00:00:00Z", "x", "9999-12-31T23:59:59Z", ""]),
}
SELFTEST_VALUES: dict[str, st.SearchStrategy[str]] = {
    "DURATION": st.sampled_from(["0", "0.01", "-1", "NaN", "1e300", "x"]),
    "RESULTS": st.sampled_from(["0", "1", "2", "-1", "1e9", "x"]),
    "FAIL": st.sampled_from(["true", "false", "fatal", "transient", "x", ""]),
}


def case_variants(name: str) -> st.SearchStrategy[str]:
    return st.one_of(st.just(name), st.just(name.lower()), st.just(name.title()),
                     st.just(name).map(lambda n: "".join(c.lower() if i % 2 else c for i, c in enumerate(n))))


def value_for(pool: dict[str, st.SearchStrategy[str]], name: str) -> st.SearchStrategy[str]:
    base = pool[name]
    return st.one_of(base, base, mutated(base), numbers, ugly)


@st.composite
def param_lists(draw: st.DrawFn, pool: dict[str, st.SearchStrategy[str]],
                always: tuple[str, ...] = (), max_params: int = 4) -> list[tuple[str, str]]:
    names = list(pool)
    pairs: list[tuple[str, str]] = []
    for name in always:
        if draw(st.integers(0, 9)) < 8:
            pairs.append((draw(case_variants(name)), draw(pool[name])))
    for _ in range(draw(st.integers(0, max_params))):
        kind = draw(st.integers(0, 19))
        if kind == 0:  # an unknown parameter
            pairs.append((draw(st.one_of(st.text(string.ascii_letters, min_size=1, max_size=12), ugly)),
                          draw(ugly)))
        else:
            name = draw(st.sampled_from(names))
            pairs.append((draw(case_variants(name)), draw(value_for(pool, name))))
    if pairs and draw(st.integers(0, 9)) == 0:  # a repeated parameter
        pairs.append(pairs[draw(st.integers(0, len(pairs) - 1))])
    return pairs


ACCEPTS = st.one_of(st.none(), st.none(), st.none(), st.sampled_from(["application/x-votable+xml", "text/xml", "application/xml", "text/html",
                           "text/html,application/xhtml+xml,*/*;q=0.8", "*/*", "image/png", "text/plain",
                           "application/x-votable+xml;content=datalink", "\x7f", "a" * 500]))
AUTHS = st.one_of(st.none(), st.none(), st.none(), st.none(), st.sampled_from(["Bearer", "Bearer ", "Bearer x", "Bearer " + "A" * 2000,
                         "Basic Zm9vOmJhcg==", "Basic !!!", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
                         "Bearer a.b.c", "Digest x", "bearer lowercase", "Bearer \x01\x02", "Negotiate",
                         "Bearer ctk_" + "0" * 40, "Bearer @alice", "Bearer @alice", "Bearer @bob"]))
TOKENS: dict[str, str] = {}  # user -> an API token of the fuzzed service, made by the fixture


@st.composite
def headers(draw: st.DrawFn) -> dict[str, str]:
    out = {}
    accept, auth = draw(ACCEPTS), draw(AUTHS)
    if accept is not None:
        out["accept"] = accept
    if auth is not None:
        out["authorization"] = auth
    return out


# --- sending and checking ---------------------------------------------------------------

def _header_safe(h: dict[str, str]) -> dict[str, str]:
    # Header values must be latin-1 text without CR/LF to be sent at all.
    return {k: v for k, v in h.items() if all(0x20 <= ord(c) <= 0xff or c == "\t" for c in v)}


def _raw(text: str) -> bytes:
    """Latin-1 where it can be (bytes that are not UTF-8 on the wire), else UTF-8."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _raw_query(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote_from_bytes(_raw(n), safe='')}={quote_from_bytes(_raw(v), safe='')}"
                    for n, v in pairs)


def _raw_multipart(pairs: list[tuple[str, str]]) -> bytes:
    parts = []
    for name, value in pairs:
        name_bytes = _raw(name).replace(b'"', b"").replace(b"\r", b"").replace(b"\n", b"")
        parts.append(b"--fuzzb\r\nContent-Disposition: form-data; name=\"" + name_bytes + b"\"\r\n\r\n"
                     + _raw(value) + b"\r\n")
    return b"".join(parts) + b"--fuzzb--\r\n"


ODD_TYPES = ["application/json", "text/plain", "multipart/form-data", "multipart/form-data; boundary=",
             "multipart/form-data; boundary=other", "application/x-www-form-urlencoded; charset=latin-1",
             "application/x-www-form-urlencoded; charset=nonsense", "", "*/*"]


def send(client: httpx.Client, method: str, path: str, pairs: list[tuple[str, str]], how: str,
         hdrs: dict[str, str]) -> httpx.Response:
    """One request: parameters in the query (GET, DELETE, or ``query``), or a POST body:
    urlencoded, multipart, the same with raw Latin-1 bytes, under an odd content type, or
    over the form limits."""
    hdrs = _header_safe(hdrs)
    if hdrs.get("authorization", "").startswith("Bearer @"):
        hdrs["authorization"] = "Bearer " + TOKENS[hdrs["authorization"][len("Bearer @"):]]
    if how.startswith("oversize") and method in ("GET", "DELETE"):
        how = "query"  # a URL that long is refused by the client itself
    elif how == "oversize-field":  # over the form-field limit, under the body limit: 413
        how, pairs = "form", [*pairs, ("PAD", "y" * 70_000)]
    elif how == "oversize-count":  # over the number of form fields: 413
        how, pairs = "form", [*pairs, *[("P", "1")] * 1001]
    if how.startswith("raw") and (method in ("GET", "DELETE") or how == "raw-query"):
        query = _raw_query(pairs)
        return client.request(method, path + ("?" + query if query else ""), headers=hdrs)
    if method in ("GET", "DELETE") or how == "query":
        return client.request(method, path, params=pairs, headers=hdrs)
    if how == "multipart":
        files = [(name, (None, value.encode("utf-8", "surrogatepass"))) for name, value in pairs] or \
            [("x", (None, b""))]
        return client.request(method, path, files=files, headers=hdrs)
    if how == "raw-multipart":
        return client.request(method, path, content=_raw_multipart(pairs),
                              headers={**hdrs, "content-type": "multipart/form-data; boundary=fuzzb"})
    if how == "raw-form":
        body = _raw_query(pairs).encode("ascii")
        ctype = "application/x-www-form-urlencoded"
    else:
        body = str(httpx.QueryParams(pairs)).encode("utf-8", "surrogatepass")
        ctype = how[len("odd:"):] if how.startswith("odd:") else "application/x-www-form-urlencoded"
    return client.request(method, path, content=body, headers={**hdrs, "content-type": ctype})


def _query_status(body: bytes) -> str:
    doc = etree.fromstring(body)
    for info in doc.iter("{*}INFO", "INFO"):
        if info.get("name") == "QUERY_STATUS":
            return (info.text or info.get("value") or "").strip()
    raise AssertionError(f"no QUERY_STATUS in {body[:500]!r}")


def check(r: httpx.Response, what: str) -> None:
    status = r.status_code
    STATUSES[f"{what.split()[1].split('/')[1]}:{status}"] += 1
    ctype = r.headers.get("content-type", "")
    where = f"{what} -> {status} {ctype}: {r.content[:400]!r}"
    assert status < 500, where
    if status == 405:
        assert r.headers.get("allow"), where
    if status >= 400:
        if ctype.startswith("text/plain"):
            assert r.text.startswith(LABELS), where
        elif "xml" in ctype:
            text = _query_status(r.content)
            assert text.startswith(LABELS + FAULTS), where
        else:
            raise AssertionError(f"unlabelled refusal: {where}")
    elif 200 <= status < 300 and "xml" in ctype and r.content:
        doc = etree.fromstring(r.content)
        if doc.tag.startswith("{http://www.ivoa.net/xml/UWS/v1.0}"):
            assert_uws(r.content)


REGIONS = {"POS", "CIRCLE", "RANGE", "POLYGON"}
TINY_CIRCLE = ("CIRCLE", f"{CENTRES[0][0]} {CENTRES[0][1]} 0.002")


def with_region(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Run only tiny inputs: an ID alone is the whole image (megabytes, tested elsewhere),
    so a request without a region gets a tiny one."""
    if any(name.upper() in REGIONS for name, _ in pairs):
        return pairs
    return [*pairs, TINY_CIRCLE]


def _safe(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    # Lone surrogates cannot be encoded as UTF-8 by any client: leave them out.
    return [(n, v) for n, v in pairs if not any(0xd800 <= ord(c) <= 0xdfff for c in n + v)]


# --- the service --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, demo_root: Path) -> Iterator[httpx.Client]:
    data = tmp_path_factory.mktemp("fuzz") / "data"
    with app_client(data, demo_root, CUTOUT_ANONYMOUS_RATE_LIMIT="0",
                    CUTOUT_WAIT_MAX_SECONDS="1") as c:
        later = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=1)
        for user in ("alice", "bob"):
            _, TOKENS[user] = c.app_state.access.tokens.create(user, "fuzz", later)  # type: ignore[attr-defined]
        yield c


@pytest.fixture(scope="module")
def jobs(client: httpx.Client) -> list[str]:
    """A few jobs whose sub-resources are fuzzed: pending, completed, failed (selftest), a
    pending cutout job, and one that does not exist."""
    made = []
    for path, data in (("/selftest", {"DURATION": "0", "RESULTS": "2"}),
                       ("/selftest", {"DURATION": "0", "RESULTS": "1", "PHASE": "RUN"}),
                       ("/selftest", {"DURATION": "0", "FAIL": "fatal", "PHASE": "RUN"}),
                       ("/async", {"ID": IDS[1], "CIRCLE": f"{CENTRES[0][0]} {CENTRES[0][1]} 0.005"})):
        r = client.post(path, data=data)
        assert r.status_code == 303, r.text
        made.append(r.headers["location"].replace("http://testserver", ""))
    return [*made, "/async/nosuchjob", "/selftest/" + "x" * 300]


# --- the fuzz tests ---------------------------------------------------------------------

how_sent = st.one_of(st.sampled_from(["query", "form", "form", "multipart", "multipart", "raw-query", "raw-form",
                                      "raw-multipart", "oversize-field", "oversize-count"]),
                      st.sampled_from(ODD_TYPES).map(lambda t: "odd:" + t))


@pytest.mark.parametrize("budget", [BUDGET["sync"]])
def test_sync_fuzz(client: httpx.Client, budget: int) -> None:
    @fuzz_settings("sync")
    @given(method=st.sampled_from(["GET"] * 4 + ["POST"] * 4 + ["DELETE", "PUT"]), how=how_sent,
           pairs=param_lists(SODA_VALUES, always=("ID", "CIRCLE")), hdrs=headers())
    def case(method: str, how: str, pairs: list[tuple[str, str]], hdrs: dict[str, str]) -> None:
        CASES["sync"] += 1
        pairs = with_region(_safe(pairs))
        check(send(client, method, "/sync", pairs, how, hdrs), f"{method} /sync {how} {pairs!r} {hdrs!r}")

    case()
    assert CASES["sync"] >= budget


@pytest.mark.parametrize("budget", [BUDGET["links"]])
def test_links_and_files_fuzz(client: httpx.Client, budget: int) -> None:
    pool = {"ID": SODA_VALUES["ID"], "RESPONSEFORMAT": SODA_VALUES["RESPONSEFORMAT"],
            "MAXREC": st.sampled_from(["0", "1", "-1", "100"])}

    @fuzz_settings("links")
    @given(path=st.sampled_from(["/links", "/links", "/files"]),
           method=st.sampled_from(["GET"] * 4 + ["POST"] * 4 + ["DELETE"]), how=how_sent,
           pairs=param_lists(pool, always=("ID",)), hdrs=headers())
    def case(path: str, method: str, how: str, pairs: list[tuple[str, str]], hdrs: dict[str, str]) -> None:
        CASES["links"] += 1
        pairs = _safe(pairs)
        if path == "/files" and method == "GET":
            # A whole demo tile is megabytes (and tested elsewhere): no real ID on /files.
            pairs = [(n, v) for n, v in pairs if not (n.upper() == "ID" and v in IDS)]
        check(send(client, method, path, pairs, how, hdrs), f"{method} {path} {how} {pairs!r} {hdrs!r}")

    case()
    assert CASES["links"] >= budget


@pytest.mark.parametrize("budget", [BUDGET["create"]])
def test_job_creation_fuzz(client: httpx.Client, budget: int) -> None:
    async_pool = {**SODA_VALUES, **{k: UWS_VALUES[k] for k in ("PHASE", "RUNID", "EXECUTIONDURATION",
                                                               "DESTRUCTION")}}
    self_pool = {**SELFTEST_VALUES, **{k: UWS_VALUES[k] for k in ("PHASE", "RUNID", "EXECUTIONDURATION",
                                                                  "DESTRUCTION")}}

    @fuzz_settings("create")
    @given(data=st.data(), path=st.sampled_from(["/async", "/selftest"]),
           method=st.sampled_from(["POST", "POST", "POST", "GET", "PUT"]), how=how_sent, hdrs=headers())
    def case(data: st.DataObject, path: str, method: str, how: str, hdrs: dict[str, str]) -> None:
        CASES["create"] += 1
        if method == "GET":
            pairs = data.draw(param_lists({k: UWS_VALUES[k] for k in ("PHASE", "LAST", "AFTER")}))
        elif path == "/async":
            pairs = with_region(data.draw(param_lists(async_pool, always=("ID", "CIRCLE"))))
        else:
            pairs = data.draw(param_lists(self_pool))
        pairs = _safe(pairs)
        r = send(client, method, path, pairs, how, hdrs)
        check(r, f"{method} {path} {how} {pairs!r} {hdrs!r}")
        if r.status_code == 303 and method == "POST":
            job = r.headers["location"].replace("http://testserver", "")
            check(client.get(job), f"GET {job}")
            # Leave no job behind: the anonymous limits on unfinished jobs stay far away.
            assert client.delete(job).status_code == 303

    case()
    assert CASES["create"] >= budget


JOB_PARAMS = {**UWS_VALUES, **SELFTEST_VALUES, "CIRCLE": SODA_VALUES["CIRCLE"]}
SUBRESOURCES = ["", "", "/phase", "/executionduration", "/destruction", "/quote", "/error", "/results",
                "/results/result-1.txt", "/results/01_DES0139-4457_r.fits", "/results/../x", "/parameters",
                "/owner", "/nosuch"]


@pytest.mark.parametrize("budget", [BUDGET["job"]])
def test_job_resources_fuzz(client: httpx.Client, jobs: list[str], budget: int) -> None:
    @fuzz_settings("job")
    @given(job=st.sampled_from(jobs), sub=st.sampled_from(SUBRESOURCES),
           method=st.sampled_from(["GET"] * 4 + ["POST"] * 4 + ["DELETE", "PUT"]), how=how_sent,
           pairs=param_lists(JOB_PARAMS, max_params=3), hdrs=headers())
    def case(job: str, sub: str, method: str, how: str, pairs: list[tuple[str, str]],
             hdrs: dict[str, str]) -> None:
        CASES["job"] += 1
        if method == "DELETE" and job in jobs[:4]:
            method = "GET"  # the fixed jobs stay; a DELETE goes to the ones that do not exist
        pairs = _safe(pairs)
        r = send(client, method, job + sub, pairs, how, hdrs)
        check(r, f"{method} {job}{sub} {how} {pairs!r} {hdrs!r}")

    case()
    assert CASES["job"] >= budget


OTHER_PATHS = ["/", "/capabilities", "/availability", "/whoami", "/usage", "/tokens", "/tokens/1",
               "/tokens/x", "/login", "/logout", "/healthz", "/readyz", "/metrics", "/nosuch", "/async",
               "/selftest", "/openapi.json", "/stats.json"]


@pytest.mark.parametrize("budget", [BUDGET["other"]])
def test_other_endpoints_fuzz(client: httpx.Client, budget: int) -> None:
    pool = {"NAME": st.text(max_size=30), "CSRF": ugly, "EXPIRES": numbers, "ACTION": ugly, "days": numbers,
            "NEXT": st.sampled_from(["/", "//evil.example", "https://evil.example/", "/tokens", "\x00"]),
            **{k: UWS_VALUES[k] for k in ("PHASE", "LAST", "AFTER")}}

    @fuzz_settings("other")
    @given(path=st.sampled_from(OTHER_PATHS), method=st.sampled_from(["GET"] * 4 + ["POST"] * 3 + ["DELETE", "PUT"]),
           how=how_sent, pairs=param_lists(pool, max_params=3), hdrs=headers())
    def case(path: str, method: str, how: str, pairs: list[tuple[str, str]], hdrs: dict[str, str]) -> None:
        CASES["other"] += 1
        pairs = _safe(pairs)
        r = send(client, method, path, pairs, how, hdrs)
        if path == "/" and r.status_code == 200:
            assert r.content, "the index page is empty"
        if r.status_code in (302, 303, 307):
            return
        check(r, f"{method} {path} {how} {pairs!r} {hdrs!r}")

    case()
    assert CASES["other"] >= budget


def test_the_fuzzer_ran_its_whole_budget() -> None:
    ran = sum(CASES.values())
    print(f"\nfuzzed {ran} cases: {dict(CASES)}; statuses {dict(sorted(STATUSES.items()))}")
    if set(CASES) != set(BUDGET):
        pytest.skip("only part of the fuzzer ran")
    assert ran >= TOTAL
