"""Request bodies and form fields are bounded: 413, labelled, before a large body is parsed.

The reported shape (400 fields of 1 MB each, accepted and parsed for 10 s) is scaled down
here by lowering the limits, so every refusal is reached with small bodies.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from conftest import FAST_TIMINGS, assert_votable, header_identity, link_demo

MAX_BODY = 64_000
MAX_FIELDS = 20
MAX_FIELD = 1_000
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, demo_root: Path) -> Iterator[Any]:
    from starlette.testclient import TestClient

    from conf import load_settings
    from soda.web.app import create_app

    data = link_demo(tmp_path_factory.mktemp("limits") / "data", demo_root)
    env = {**FAST_TIMINGS, "CUTOUT_DATA_DIR": str(data),
           "CUTOUT_MAX_REQUEST_BODY_BYTES": str(MAX_BODY),
           "CUTOUT_MAX_FORM_FIELDS": str(MAX_FIELDS),
           "CUTOUT_MAX_FORM_FIELD_BYTES": str(MAX_FIELD)}
    app = create_app(load_settings(environ=env), identify=header_identity, build_demo=False)
    with TestClient(app, base_url="http://testserver", follow_redirects=False,
                    raise_server_exceptions=False) as test_client:
        yield test_client


def assert_refused(response: Any, status: int, text: str) -> None:
    assert response.status_code == status, response.text
    assert response.text.startswith("UsageError: "), response.text
    assert text in response.text


@pytest.mark.parametrize("path", ["/sync", "/selftest", "/links"])
def test_the_reported_shape_scaled_down_is_refused_by_its_length(client: Any, path: str) -> None:
    # 400 fields x 1 MB, scaled: 40 fields x 10 kB, ten times the body limit.
    fields = {f"POS{i}": "x" * 10_000 for i in range(40)}
    response = client.post(path, data=fields)
    assert response.status_code == 413, response.text
    assert f"body larger than {MAX_BODY} bytes" in response.text
    if path == "/links":  # its declared error form (a DataLink fault) is kept
        assert_votable(response.content)
    else:
        assert_refused(response, 413, f"body larger than {MAX_BODY} bytes")


def test_a_streamed_body_without_length_is_counted(client: Any) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b"ID=" + b"x" * 9_997 + b"&"

    response = client.post("/sync", content=chunks(),
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_refused(response, 413, f"body larger than {MAX_BODY} bytes")


def test_a_large_body_of_another_type_is_refused_too(client: Any) -> None:
    response = client.post("/sync", content=b"\0" * (MAX_BODY + 1),
                           headers={"Content-Type": "application/octet-stream"})
    assert_refused(response, 413, f"body larger than {MAX_BODY} bytes")


def test_the_refusal_is_a_votable_when_asked(client: Any) -> None:
    response = client.post("/sync?RESPONSEFORMAT=votable", data={"ID": "x" * (MAX_BODY + 1)})
    assert response.status_code == 413
    assert_votable(response.content)
    assert b"UsageError: request body larger than" in response.content


def test_too_many_fields(client: Any) -> None:
    # As many fields as allowed are read: the bad value is a plain 400 about the value.
    fields = [("POS", "CIRCLE nonsense")] * MAX_FIELDS
    response = client.post("/sync", content=urlencode(fields), headers=FORM)
    assert response.status_code == 400
    assert response.text.startswith("UsageError: ") and "POS" in response.text, response.text
    fields = [("POS", f"CIRCLE {i} 0 0.01") for i in range(MAX_FIELDS + 5)]
    response = client.post("/sync", content=urlencode(fields), headers=FORM)
    assert_refused(response, 413, f"more than {MAX_FIELDS} fields")


def test_too_many_multipart_fields(client: Any) -> None:
    fields = {f"F{i}": (None, "1") for i in range(MAX_FIELDS + 5)}
    response = client.post("/selftest", files=fields)
    assert_refused(response, 413, f"more than {MAX_FIELDS} fields")


def test_a_field_too_large(client: Any) -> None:
    response = client.post("/selftest", data={"DURATION": "0", "RUNID": "r" * 60,
                                              "SIZE": "1" + " " * (MAX_FIELD - 10)})
    assert response.status_code in (303, 400) and "larger than" not in response.text, response.text
    response = client.post("/sync", data={"POS": "POLYGON " + "1 " * MAX_FIELD})
    assert_refused(response, 413, f"larger than {MAX_FIELD} bytes")


def test_a_multipart_field_too_large(client: Any) -> None:
    response = client.post("/selftest", files={"POS": (None, "1 " * MAX_FIELD)})
    assert_refused(response, 413, f"larger than {MAX_FIELD} bytes")


def test_a_body_that_stops_arriving_is_answered_408() -> None:
    """A client that sends part of its body and then nothing holds no request for long."""
    import asyncio

    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.routing import Route

    from dali.http import EXCEPTION_HANDLERS, read_params, text_response
    from dali.limits import BodyLimitMiddleware

    async def echo(request: Any) -> Any:
        return text_response(str((await read_params(request)).pairs))

    app = Starlette(routes=[Route("/", echo, methods=["POST"])], exception_handlers=EXCEPTION_HANDLERS,
                    middleware=[Middleware(BodyLimitMiddleware, max_bytes=MAX_BODY, max_fields=MAX_FIELDS,
                                           max_field_bytes=MAX_FIELD, body_timeout=0.3)])
    scope = {"type": "http", "method": "POST", "path": "/", "raw_path": b"/", "query_string": b"",
             "headers": [(b"content-type", b"application/x-www-form-urlencoded"),
                         (b"content-length", b"100")], "http_version": "1.1", "scheme": "http",
             "server": ("testserver", 80), "client": ("127.0.0.1", 1), "root_path": ""}
    parts = [{"type": "http.request", "body": b"ID=abc", "more_body": True}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if parts:
            return parts.pop(0)
        await asyncio.sleep(60)  # the client went quiet
        raise AssertionError("not reached")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def run() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.wait_for(app(scope, receive, send), 5)
        return loop.time() - start

    elapsed = asyncio.run(run())
    assert elapsed < 2, elapsed
    assert sent[0]["status"] == 408
    assert b"".join(m.get("body", b"") for m in sent[1:]).startswith(b"UsageError: the request body did not arrive")
