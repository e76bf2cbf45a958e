"""GET /openapi.json describes the app as it is: every route (but the documented exclusions)
with its methods and no path the app lacks; it validates as OpenAPI 3.1; and real answers
of the service have a status and media type the description names for them."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from starlette.routing import Route

from conftest import app_client
from soda.web.openapi import EXCLUDED, openapi_document

METHODS = {"get", "post", "delete", "put", "patch"}


def _app_routes(client: httpx.Client) -> dict[str, set[str]]:
    routes: dict[str, set[str]] = {}
    for route in client.app.routes:  # type: ignore[attr-defined]
        path = getattr(route, "path", "")
        if any(path.startswith(prefix) or path + "/" == prefix for prefix in EXCLUDED):
            continue
        assert isinstance(route, Route), (f"{route!r} at {path!r}: describe it in soda/web/openapi.py, or "
                                          f"add its prefix to EXCLUDED there with the reason")
        routes[route.path] = {m.lower() for m in route.methods or ()} - {"head"}
    return routes


def _described(document: dict[str, Any]) -> dict[str, set[str]]:
    return {path: {m for m in item if m in METHODS} for path, item in document["paths"].items()}


@pytest.mark.parametrize("selftest", ["false", "true"])
def test_every_route_is_described_and_every_described_path_exists(tmp_path: Path, demo_root: Path,
                                                                  selftest: str) -> None:
    with app_client(tmp_path / "data", demo_root, CUTOUT_SELFTEST_JOBS=selftest) as client:
        answer = client.get("/openapi.json")
        assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
        document = answer.json()
        routes = _app_routes(client)
    described = _described(document)
    assert set(routes) - set(described) == set(), "routes of the app the description lacks"
    assert set(described) - set(routes) == set(), "described paths the app does not have"
    for path, methods in routes.items():
        assert described[path] == methods, path
    assert ("/selftest" in described) == (selftest == "true")
    assert {"/async", "/bulk", "/sync", "/links", "/query", "/capabilities", "/availability", "/tokens",
            "/usage", "/whoami", "/healthz", "/readyz", "/metrics"} <= set(described)
    assert document["servers"] == [{"url": "http://testserver"}]
    created = document["paths"]["/async"]["post"]["requestBody"]["content"]
    assert {"ID", "POS", "CIRCLE", "BAND", "RESPONSEFORMAT", "PHASE", "RUNID"} <= \
        set(created["application/x-www-form-urlencoded"]["schema"]["properties"])
    bulk = document["paths"]["/bulk"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert {"UPLOAD", "RADIUS", "LAYOUT", "positions"} <= set(bulk["properties"])


def test_the_description_is_valid_openapi_3_1(tmp_path: Path, demo_root: Path) -> None:
    with app_client(tmp_path / "data", demo_root) as client:
        document = client.get("/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    validate(document)
    broken = openapi_document({})
    broken["paths"]["/sync"]["get"]["responses"]["200"] = {"content": {}}   # no description
    with pytest.raises(OpenAPIValidationError):
        validate(broken)


def test_the_dali_components_carry_dali_names() -> None:
    parameters = openapi_document({})["components"]["parameters"]
    assert parameters["dali-maxrec"]["name"] == "MAXREC"
    assert parameters["dali-maxrec"]["schema"]["minimum"] == 0
    assert parameters["dali-upload"]["name"] == "UPLOAD"
    assert re.match(parameters["dali-upload"]["schema"]["pattern"], "positions,param:positions")
    assert parameters["dali-responseformat"]["name"] == "RESPONSEFORMAT"
    sync = openapi_document({})["paths"]["/sync"]["get"]
    names = {parameters[p["$ref"].rsplit("/", 1)[1]]["name"] for p in sync["parameters"]}
    assert {"ID", "POS", "CIRCLE", "POLYGON", "BAND", "TIME", "POL", "RESPONSEFORMAT"} <= names


def _resolve(document: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in item:
        kind, name = item["$ref"].split("/")[-2:]
        item = document["components"][kind][name]
    return item


def _documents(document: dict[str, Any], template: str, method: str, answer: httpx.Response) -> None:
    responses = document["paths"][template][method]["responses"]
    status = str(answer.status_code)
    assert status in responses, (f"{method.upper()} {template} answered {status}, which the description "
                                 f"does not name ({sorted(responses)}): {answer.text[:300]}")
    content = _resolve(document, responses[status]).get("content")
    media = answer.headers.get("content-type", "").split(";")[0].strip()
    if content and answer.content:
        names = {m.split(";")[0] for m in content}
        assert media in names or "*/*" in names, (method, template, status, media, sorted(names))


def test_real_answers_are_as_described(tmp_path: Path, demo_root: Path) -> None:
    with app_client(tmp_path / "data", demo_root, CUTOUT_SELFTEST_JOBS="false",
                    CUTOUT_ANONYMOUS_RATE_LIMIT="0") as client:
        document = client.get("/openapi.json").json()
        tile = "ivo://demo.cutout/des?DES0139-4457_r"
        calls: list[tuple[str, str, httpx.Response]] = [
            ("/sync", "get", client.get("/sync", params={"ID": tile, "CIRCLE": "24.9655 -44.9583 0.01"})),
            ("/sync", "get", client.get("/sync", params={"ID": tile, "CIRCLE": "24.9655 -44.9583 0.01",
                                                         "RESPONSEFORMAT": "png"})),
            ("/sync", "get", client.get("/sync", params={"POS": "CIRCLE 200 80 0.01"})),
            ("/sync", "get", client.get("/sync", params={"POS": "CIRCLE 400 0 1"})),
            ("/sync", "post", client.post("/sync", data={"ID": "ivo://demo.cutout/des?DES1234-5678_r",
                                                         "CIRCLE": "24.9655 -44.9583 0.01"})),
            ("/links", "get", client.get("/links", params={"ID": tile})),
            ("/query", "get", client.get("/query", params={"POS": "CIRCLE 24.9655 -44.9583 0.01"})),
            ("/query", "get", client.get("/query", params={"POS": "CIRCLE x"})),
            ("/capabilities", "get", client.get("/capabilities")),
            ("/availability", "get", client.get("/availability")),
            ("/coverage/{file}", "get", client.get("/coverage/des.json")),
            ("/coverage/{file}", "get", client.get("/coverage/nothing.fits")),
            ("/whoami", "get", client.get("/whoami")),
            ("/usage", "get", client.get("/usage")),
            ("/tokens", "get", client.get("/tokens")),
            ("/files", "get", client.get("/files", params={"ID": tile})),
            ("/healthz", "get", client.get("/healthz")),
            ("/readyz", "get", client.get("/readyz")),
            ("/metrics", "get", client.get("/metrics")),
            ("/", "get", client.get("/")),
        ]
        created = client.post("/async", data={"ID": tile, "CIRCLE": "24.9655 -44.9583 0.01"})
        calls.append(("/async", "post", created))
        job = created.headers["location"].removeprefix("http://testserver")
        calls += [
            ("/async/{job_id}", "get", client.get(job)),
            ("/async/{job_id}/phase", "get", client.get(job + "/phase")),
            ("/async/{job_id}/parameters", "get", client.get(job + "/parameters")),
            ("/async/{job_id}/quote", "get", client.get(job + "/quote")),
            ("/async/{job_id}/phase", "post", client.post(job + "/phase", data={"PHASE": "WALK"})),
            ("/async/{job_id}", "post", client.post(job, data={"ACTION": "nothing"})),
            ("/async/{job_id}/phase", "post", client.post(job + "/phase", data={"PHASE": "RUN"})),
        ]
        end = time.monotonic() + 30
        while client.get(job + "/phase").text not in ("COMPLETED", "ERROR") and time.monotonic() < end:
            time.sleep(0.1)
        results = client.get(job + "/results")
        calls.append(("/async/{job_id}/results", "get", results))
        [href] = re.findall(r'href="([^"]+)"', results.text)
        calls += [
            ("/async/{job_id}/results/{result_id}", "get", client.get(href.removeprefix("http://testserver"))),
            ("/async/{job_id}/results.zip", "get", client.get(job + "/results.zip")),
            ("/async/{job_id}/results.tar", "get", client.get(job + "/results.tar",
                                                              headers={"Range": "bytes=0-99"})),
            ("/async/{job_id}", "delete", client.delete(job)),
            ("/async/{job_id}", "get", client.get(job)),
            ("/async", "get", client.get("/async")),
        ]
    statuses = set()
    for template, method, answer in calls:
        _documents(document, template, method, answer)
        statuses.add(answer.status_code)
    assert {200, 204, 206, 303, 400, 401, 404} <= statuses
