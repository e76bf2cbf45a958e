"""`cutout serve` bounds its connections: idle or trickling sockets up to the limit leave
/healthz answering (a labelled 503 with Retry-After while the limit is reached), and are
closed after the header timeout, so the server answers normally again by itself."""

from __future__ import annotations

import contextlib
import re
import socket
import time
from pathlib import Path

import httpx

from conftest import base_env, start_server

MAX_CONNECTIONS = 16
HEADER_TIMEOUT = 1.5


def _open_files_limits(pid: int) -> tuple[str, str]:
    line = next(l for l in Path(f"/proc/{pid}/limits").read_text().splitlines()
                if l.startswith("Max open files"))
    soft, hard = re.split(r"\s{2,}", line)[1:3]
    return soft, hard


def test_idle_and_trickling_sockets_do_not_starve_the_server(tmp_path, demo_root):
    env = base_env(tmp_path / "data", demo_root, CUTOUT_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
                   CUTOUT_REQUEST_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
                   CUTOUT_MAX_REQUEST_HEAD_BYTES="4096")
    server, base = start_server(env, tmp_path / "server.log")
    port = int(base.rsplit(":", 1)[1])
    sockets: list[socket.socket] = []
    try:
        soft, hard = _open_files_limits(server.pid)
        assert soft == hard, (soft, hard)  # raised to the hard limit at start
        # More idle sockets than the limit, one of them trickling a request head.
        for _ in range(MAX_CONNECTIONS + 8):
            sockets.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        trickler = sockets[0]
        trickler.sendall(b"GET /healthz HTTP/1.1\r\n")
        time.sleep(0.3)
        opened = time.monotonic()
        for _ in range(5):
            busy = httpx.get(base + "/healthz", timeout=5)
            assert busy.status_code == 503, busy.text
            assert busy.text.startswith("ServiceUnavailable: ")
            assert busy.headers["retry-after"]
        # The header timeout closes them all, the trickling one too.
        for i, sock in enumerate(sockets):
            if i == 0:
                with contextlib.suppress(OSError):
                    sock.sendall(b"Host: x\r\n")
            sock.settimeout(max(0.1, opened + HEADER_TIMEOUT + 3 - time.monotonic()))
            assert sock.recv(1024) == b"", f"socket {i} was not closed"
        elapsed = time.monotonic() - opened
        assert elapsed < HEADER_TIMEOUT + 3, elapsed
        ok = httpx.get(base + "/healthz", timeout=5)
        assert ok.status_code == 200 and ok.text == "ok\n"
        # A request head growing past the allowed size is a labelled 400, not held.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"x" * 8000)
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 400 "), answer
        assert b"\r\n\r\nUsageError: " in answer, answer
        # Refusals are logged once per interval, not once each.
        assert server.output().count("Exceeded concurrency limit.") == 1, server.output()
    finally:
        for sock in sockets:
            sock.close()
        server.stop()
