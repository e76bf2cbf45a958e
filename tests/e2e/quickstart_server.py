"""``cutout serve`` as a newcomer starts it from the README's quick start: on the shipped
defaults (no ``CUTOUT_*`` setting but those given), in a folder of its own whose ``.venv`` is
the environment the tests run in, with the checkout's code first on PYTHONPATH (what
``pip install -e .`` gives), on a free port. The first start builds the demo surveys in that
folder. Used by the README examples' test and the notebooks' test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
START_SECONDS = 90   # the first start builds the demo surveys


def quickstart_env() -> dict[str, str]:
    """The test's environment without any of the service's settings, the checkout importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUTOUT_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


class QuickStartServer:
    """One ``cutout serve`` at a time in ``folder``, its output appended to ``log``."""

    def __init__(self, folder: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.log = log
        self.env = env if env is not None else quickstart_env()
        self.port = free_port()
        self.process: subprocess.Popen | None = None  # type: ignore[type-arg]
        folder.mkdir()
        (folder / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serve(self, assignments: dict[str, str] | None = None) -> None:
        """(Re)start it with these settings (``CUTOUT_X=value`` assignments) and wait until it answers."""
        self.stop()
        env = {**self.env, **(assignments or {})}
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(self.folder / ".venv" / "bin" / "cutout"), "serve", "--port", str(self.port)],
                cwd=self.folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        end = time.monotonic() + START_SECONDS
        while time.monotonic() < end:
            assert self.process.poll() is None, f"cutout serve exited:\n{self.log.read_text()[-4000:]}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/", timeout=1).status_code == 200:
                    return
            time.sleep(0.2)
        raise AssertionError(f"cutout serve did not answer:\n{self.log.read_text()[-4000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.process = None
