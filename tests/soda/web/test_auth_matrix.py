"""Who may do what: anonymous / user A / user B / a bad token / an expired token, against
every UWS sub-resource and every SODA endpoint, on the real access policy (API tokens in
the database, no stand-in resolver)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import httpx
import pytest

from conftest import app_client, assert_uws, assert_votable, uws_text
from soda.surveys.des import tile_centre

TILE = "DES0139-4457"
RA0, DEC0 = tile_centre(TILE)
DID = f"ivo://demo.cutout/des?{TILE}_r"
SMALL = {"ID": DID, "CIRCLE": f"{RA0} {DEC0} 0.01"}   # about 270 x 270 pixels

CALLERS = ("anonymous", "A", "B", "bad", "expired")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, demo_root) -> Iterator[dict]:  # type: ignore[no-untyped-def]
    data = tmp_path_factory.mktemp("matrix") / "data"
    with app_client(data, demo_root, CUTOUT_ANONYMOUS_RATE_LIMIT="0", CUTOUT_ANONYMOUS_ASYNC="off") as client:
        tokens = client.app_state.access.tokens  # type: ignore[attr-defined]
        later = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=1)
        _, a = tokens.create("alice", "matrix", later)
        _, b = tokens.create("bob", "matrix", later)
        _, old = tokens.create("alice", "old", later - dt.timedelta(days=2))
        headers = {"anonymous": {}, "A": {"Authorization": f"Bearer {a}"},
                   "B": {"Authorization": f"Bearer {b}"},
                   "bad": {"Authorization": "Bearer cut_not-a-token-of-ours"},
                   "expired": {"Authorization": f"Bearer {old}"}}
        created = client.post("/async", data=SMALL, headers=headers["A"])
        assert created.status_code == 303, created.text
        job = created.headers["location"].removeprefix("http://testserver")
        yield {"client": client, "headers": headers, "job": job}


# (method, path template, form data, expected status per caller). {job} is A's PENDING job.
OWNER_ONLY = {"anonymous": 401, "A": 200, "B": 403, "bad": 401, "expired": 401}
CASES = [
    ("GET", "{job}", None, OWNER_ONLY),
    ("GET", "{job}/phase", None, OWNER_ONLY),
    ("GET", "{job}/executionduration", None, OWNER_ONLY),
    ("GET", "{job}/destruction", None, OWNER_ONLY),
    ("GET", "{job}/quote", None, OWNER_ONLY),
    ("GET", "{job}/owner", None, OWNER_ONLY),
    ("GET", "{job}/parameters", None, OWNER_ONLY),
    ("GET", "{job}/results", None, OWNER_ONLY),
    ("GET", "{job}/error", None, {**OWNER_ONLY, "A": 404}),          # a PENDING job has no error
    ("GET", "{job}/results/none.fits", None, {**OWNER_ONLY, "A": 404}),
    ("POST", "{job}/executionduration", {"EXECUTIONDURATION": "100"}, {**OWNER_ONLY, "A": 303}),
    ("POST", "{job}/destruction", {"DESTRUCTION": "2030-01-01T00:00:00Z"}, {**OWNER_ONLY, "A": 303}),
    ("POST", "{job}/parameters", {"CIRCLE": f"{RA0} {DEC0} 0.008"}, {**OWNER_ONLY, "A": 303}),
    ("POST", "{job}/phase", {"PHASE": "NONSENSE"}, {**OWNER_ONLY, "A": 400}),
    ("POST", "{job}", {"ACTION": "NONSENSE"}, {**OWNER_ONLY, "A": 400}),
    ("DELETE", "{job}", None, {**OWNER_ONLY, "A": None}),            # A's delete is tested apart
    ("GET", "/async", None, {"anonymous": 200, "A": 200, "B": 200, "bad": 401, "expired": 401}),
    ("POST", "/async", SMALL, {"anonymous": 401, "A": 303, "B": 303, "bad": 401, "expired": 401}),
    ("GET", "/sync?ID={did}&CIRCLE={circle}", None,
     {"anonymous": 200, "A": 200, "B": 200, "bad": 401, "expired": 401}),
    ("POST", "/sync", SMALL, {"anonymous": 200, "A": 200, "B": 200, "bad": 401, "expired": 401}),
    ("GET", "/links?ID={did}", None, {"anonymous": 200, "A": 200, "B": 200, "bad": 401, "expired": 401}),
    ("GET", "/files?ID={did}", None, {"anonymous": 401, "A": 200, "B": 200, "bad": 401, "expired": 401}),
    ("GET", "/capabilities", None, dict.fromkeys(CALLERS, 200)),   # VOSI is public
    ("GET", "/availability", None, dict.fromkeys(CALLERS, 200)),
    ("GET", "/usage", None, {"anonymous": 401, "A": 200, "B": 200, "bad": 401, "expired": 401}),
    ("GET", "/tokens", None, {"anonymous": 401, "A": 200, "B": 200, "bad": 401, "expired": 401}),
    # Tokens are made from a browser login, never with a token.
    ("POST", "/tokens", {"name": "x"}, {"anonymous": 401, "A": 403, "B": 403, "bad": 401, "expired": 401}),
    ("GET", "/whoami", None, {"anonymous": 200, "A": 200, "B": 200, "bad": 401, "expired": 401}),
]


MATRIX = [(caller, method, template, data, statuses[caller])
          for method, template, data, statuses in CASES for caller in CALLERS
          if statuses[caller] is not None]


def error_text(path: str, response: httpx.Response) -> str:
    """The error document's text: DataLink §3.4 errors of /links are VOTables ("...Fault:"),
    every other endpoint answers DALI text/plain ("AuthenticationError:")."""
    if not path.startswith("/links"):
        return response.text
    info = assert_votable(response.content).find(
        "{*}RESOURCE/{*}INFO[@name='QUERY_STATUS'][@value='ERROR']")
    return info.text


@pytest.mark.parametrize("caller,method,template,data,expected", MATRIX,
                         ids=[f"{c}-{m} {t.split('?')[0]}" for c, m, t, _, _ in MATRIX])
def test_permissions(world: dict, caller: str, method: str, template: str, data, expected: int) -> None:  # type: ignore[no-untyped-def]
    path = template.format(job=world["job"], did=DID, circle=f"{RA0} {DEC0} 0.01")
    client: httpx.Client = world["client"]
    response = client.request(method, path, data=data, headers=world["headers"][caller])
    assert response.status_code == expected, f"{caller} {method} {path}: {response.text[:300]}"
    if expected == 401:
        challenges = response.headers.get_list("www-authenticate")
        assert len([c for c in challenges if c.startswith("Bearer ")]) == 1, challenges
        # No login is configured here: no token page to offer (test_login_challenges.py has them).
        assert not any(c.startswith("ivoa_") for c in challenges), challenges
        label = "UsageFault:" if path.startswith("/links") else "AuthenticationError:"
        assert error_text(path, response).startswith(label)
        if caller in ("bad", "expired"):
            assert any('error="invalid_token"' in c for c in challenges), challenges
    if expected == 403:
        assert response.text.startswith(("AuthorizationError:", "UsageError:")), response.text


def test_each_sees_only_their_own_jobs(world: dict) -> None:
    client, headers, job = world["client"], world["headers"], world["job"]
    job_id = job.rsplit("/", 1)[1]
    for caller, sees in (("A", True), ("B", False), ("anonymous", False)):
        listing = client.get("/async", headers=headers[caller])
        doc = assert_uws(listing.content)
        ids = [ref.get("id") for ref in doc]
        assert (job_id in ids) is sees, (caller, ids)
    doc = assert_uws(client.get(job, headers=headers["A"]).content)
    assert uws_text(doc, "uws:ownerId") == "alice"
    assert client.get(job + "/owner", headers=headers["A"]).text == "alice"


def test_expired_token_says_so(world: dict) -> None:
    response = world["client"].get("/async", headers=world["headers"]["expired"])
    assert response.status_code == 401 and "expired" in response.text


def test_owner_deletes_own_job(world: dict) -> None:
    client, headers = world["client"], world["headers"]
    created = client.post("/async", data=SMALL, headers=headers["A"])
    job = created.headers["location"].removeprefix("http://testserver")
    assert client.delete(job, headers=headers["B"]).status_code == 403
    assert client.delete(job, headers=headers["A"]).status_code == 303
    assert client.get(job, headers=headers["A"]).status_code == 404


def test_other_authorization_schemes_are_refused_with_challenges(world: dict) -> None:
    response = world["client"].get("/async", headers={"Authorization": "Basic YWxpY2U6cHc="})
    assert response.status_code == 401
    assert any(c.startswith("Bearer ") for c in response.headers.get_list("www-authenticate"))


def test_token_page_for_browsers_lists_tokens_with_revoke_forms(world: dict) -> None:
    page = world["client"].get("/tokens", headers={**world["headers"]["A"], "Accept": "text/html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    from lxml import html
    doc = html.fromstring(page.text)
    revoke = [f for f in doc.forms if f.action.startswith("/tokens/")]
    assert len(revoke) == 2   # alice's "matrix" and "old" tokens
    assert all(set(f.fields) >= {"csrf_token", "ACTION"} for f in revoke)
    assert [f for f in doc.forms if f.action == "/tokens"], "no form to create a token"
