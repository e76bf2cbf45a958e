"""Job creations with files are read a few at a time per job list (each may hold
max_upload_bytes in memory): one more while they last is refused at once with a labelled 503."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from conftest import base_env, start_server

pytestmark = [pytest.mark.slow]


def test_an_upload_beyond_the_bound_is_refused_while_one_is_read(tmp_path, demo_root):
    env = base_env(tmp_path / "data", demo_root, CUTOUT_MAX_UPLOADS_AT_ONCE="1",
                   CUTOUT_REQUEST_BODY_TIMEOUT_SECONDS="20")
    server, base = start_server(env, tmp_path / "server.log")
    slow = socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])))
    try:
        boundary = "b0undary"
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="positions"; filename="p.csv"\r\n'
                f"Content-Type: text/csv\r\n\r\nra,dec\r\n").encode()
        slow.sendall((f"POST /bulk HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
                      f"Content-Length: 100000\r\n\r\n").encode() + head)  # the rest never comes (yet)
        time.sleep(1.0)
        r = httpx.post(base + "/bulk", data={"UPLOAD": "positions,param:positions"},
                       files={"positions": ("p.csv", b"ra,dec\n24.9655,-44.9583\n", "text/csv")}, timeout=10)
        assert r.status_code == 503, r.text
        assert r.text.startswith("ServiceUnavailable: ") and r.headers["retry-after"]
        slow.close()  # the slow one gives up: its place is free again
        time.sleep(1.0)
        r = httpx.post(base + "/bulk", data={"UPLOAD": "positions,param:positions"},
                       files={"positions": ("p.csv", b"ra,dec\n24.9655,-44.9583\n", "text/csv")}, timeout=10)
        assert r.status_code == 303, r.text
        # Jobs without files are never held behind uploads.
        assert httpx.post(base + "/async", data={"POS": "CIRCLE 24.9655 -44.9583 0.01"}).status_code == 303
    finally:
        slow.close()
        server.stop()
