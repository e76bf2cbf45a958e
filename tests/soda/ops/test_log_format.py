"""Log lines: readable text at a terminal, JSON lines otherwise or when configured."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conf import load_settings
from conftest import ROOT, base_env, free_port
from soda.ops.logs import chosen_format, configure
from uws import context

TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) +\S+ ")


@contextlib.contextmanager
def terminal() -> Iterator[tuple[int, io.TextIOWrapper]]:
    """A pseudo-terminal: its controller's fd, and its other end as a text stream."""
    controller, device = os.openpty()
    stream = os.fdopen(device, "w", buffering=1)
    try:
        yield controller, stream
    finally:
        stream.close()
        os.close(controller)


def read_available(fd: int, timeout: float = 0.5) -> str:
    chunks = []
    while select.select([fd], [], [], timeout)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        chunks.append(chunk)
        timeout = 0.05
    return b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_auto_is_text_on_a_terminal_and_json_otherwise(tmp_path: Path) -> None:
    with terminal() as (_, tty):
        assert tty.isatty()
        assert chosen_format("auto", tty) == "text"
        assert chosen_format("json", tty) == "json"
        assert chosen_format("text", tty) == "text"
    with (tmp_path / "log").open("w") as file:
        assert chosen_format("auto", file) == "json"
        assert chosen_format("text", file) == "text"
    assert chosen_format("auto", io.StringIO()) == "json"
    read, write = os.pipe()
    with os.fdopen(read) as _, os.fdopen(write, "w") as pipe:
        assert chosen_format("auto", pipe) == "json"
    closed = io.StringIO()
    closed.close()
    assert chosen_format("auto", closed) == "json"


def test_text_lines_on_a_terminal(restore_logging: None) -> None:
    with terminal() as (controller, tty):
        assert configure("INFO", "auto", tty) == "text"
        log = logging.getLogger("cutout.test")
        log.info("plain %s", "line")
        token = context.request_id.set("trace-tty-7")
        try:
            log.warning("with an id")
        finally:
            context.request_id.reset(token)
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("failed")
        log.debug("not shown at INFO")
        out = read_available(controller)
    lines = out.splitlines()
    assert TEXT_LINE.match(lines[0]) and lines[0].endswith(" INFO    cutout.test plain line"), lines
    assert TEXT_LINE.match(lines[1]) and lines[1].endswith(" WARNING cutout.test [trace-tty-7] with an id"), lines
    assert lines[2].endswith(" ERROR   cutout.test failed") and lines[3] == "Traceback (most recent call last):"
    assert "RuntimeError: boom" in out and "not shown" not in out
    assert not any(line.startswith("{") for line in lines)


def test_json_lines_when_not_a_terminal_or_when_asked(tmp_path: Path, restore_logging: None) -> None:
    stream = io.StringIO()
    assert configure("INFO", "auto", stream) == "json"
    token = context.request_id.set("trace-file-8")
    try:
        logging.getLogger("cutout.test").info("to a file")
    finally:
        context.request_id.reset(token)
    entry = json.loads(stream.getvalue())
    assert entry["message"] == "to a file" and entry["request_id"] == "trace-file-8"
    assert {"time", "level", "logger", "process"} <= set(entry)
    with terminal() as (controller, tty):
        assert configure("INFO", "json", tty) == "json"
        logging.getLogger("cutout.test").info("on a terminal")
        assert json.loads(read_available(controller))["message"] == "on a terminal"


@pytest.mark.parametrize(("env", "effective"), [
    ({}, "auto"),
    ({"CUTOUT_LOG_FORMAT": "text"}, "text"),
    ({"CUTOUT_LOG_FORMAT": "JSON"}, "json"),
    ({"CUTOUT_LOG_JSON": "true"}, "json"),  # the older switch, kept as an alias
    ({"CUTOUT_LOG_JSON": "false"}, "text"),
    ({"CUTOUT_LOG_JSON": "false", "CUTOUT_LOG_FORMAT": "json"}, "text"),  # the alias wins
    ({"CUTOUT_LOG_JSON": "auto", "CUTOUT_LOG_FORMAT": "json"}, "json"),
])
def test_log_format_setting(env: dict[str, str], effective: str) -> None:
    assert load_settings(environ=env).ops.effective_log_format == effective


def serve_on(env: dict[str, str], stderr: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "soda.ops.cli", "serve", "--port", env["PORT"]],
                            env=env, cwd=ROOT, stdout=stderr, stderr=stderr, start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


def served_log(env: dict[str, str]) -> str:
    """What ``cutout serve`` prints on a terminal while answering one traced request."""
    port = free_port()
    env = {**env, "PORT": str(port)}
    controller, device = os.openpty()
    proc = serve_on(env, device)
    os.close(device)
    out = ""
    try:
        end = time.monotonic() + 40
        while time.monotonic() < end and proc.poll() is None:
            out += read_available(controller, 0.2)
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", headers={"X-Request-ID": "trace-cli-9"},
                             timeout=1).status_code == 200:
                    break
        time.sleep(0.3)
        out += read_available(controller)
    finally:
        stop(proc)
        out += read_available(controller, 0.2)
        os.close(controller)
    assert "trace-cli-9" in out, out[-3000:]
    return out


def test_serve_logs_text_on_a_terminal(tmp_path: Path, demo_root: Path) -> None:
    out = served_log(base_env(tmp_path / "data", demo_root))
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines and all(TEXT_LINE.match(line) for line in lines if not line.startswith(" ")), lines
    assert any("uvicorn.access [trace-cli-9]" in line and "/healthz" in line for line in lines), lines


def test_serve_logs_json_on_a_terminal_when_configured(tmp_path: Path, demo_root: Path) -> None:
    out = served_log(base_env(tmp_path / "data", demo_root, CUTOUT_LOG_FORMAT="json"))
    entries = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert any(e.get("request_id") == "trace-cli-9" and e["logger"] == "uvicorn.access" for e in entries)
