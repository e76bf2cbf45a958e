"""The servers the HTTP sections measure, each a real process on a free port: `cutout serve`
(the embedded shape: SQLite, jobs in-process) over the bench tile's plain and row-tiled
files, and the naive baseline (bench/naive_server.py under uvicorn) over the plain file.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tiles import BAND, TILE, Tile  # bench/tiles.py

ROOT = Path(__file__).resolve().parent.parent  # the repository: its code is what runs
BENCH = Path(__file__).resolve().parent
AUTHORITY = "demo.cutout"
SERVED = ("plain", "rows")  # the layouts `cutout serve` is given, one survey each


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """A subprocess in its own session, its output in a log file; stopped by its own id."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("ab")
        self._from = self._out.tell()  # what this process logs: a log may hold an earlier one's
        self.popen = subprocess.Popen(args, env=env, cwd=ROOT, stdout=self._out, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def wait_ready(self, url: str, timeout: float = 120) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.log.stem} exited:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code < 500:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.log.stem} did not answer {url}:\n{self.tail()}")

    def wait_logged(self, text: str, timeout: float = 120) -> None:
        end = time.monotonic() + timeout
        while text not in self.log.read_bytes()[self._from:].decode(errors="replace"):
            if self.popen.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"{self.log.stem} did not log {text!r}:\n{self.tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        self._out.close()


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CUTOUT_")}


def _site_file(tile: Tile, layouts: tuple[str, ...]) -> str:
    return "".join(f'[surveys.{layout}]\nfactory = "soda.surveys.des:DESSurvey"\n'
                   f'root = "{tile.paths[layout].parent}"\n\n' for layout in layouts)


@dataclass
class CutoutService:
    proc: Proc
    base: str
    workers: list[Proc] = field(default_factory=list)  # `cutout worker`s (distributed shape)
    env: dict[str, str] = field(default_factory=dict)
    tmp: Path | None = None
    started: int = 0  # workers started so far (each logs to a file of its own)

    def add_worker(self, threads: int | None = None) -> Proc:
        """One more `cutout worker` on the same broker and database (distributed shape)."""
        assert self.tmp is not None
        extra = ["--threads", str(threads)] if threads else []
        self.started += 1
        worker = Proc([sys.executable, "-m", "soda.ops.cli", "worker", *extra], self.env,
                      self.tmp / f"cutout-worker-{self.started}.log")
        self.workers.append(worker)
        worker.wait_logged("worker started")
        return worker

    def remove_worker(self) -> None:
        """Stop the last worker added (between jobs: it holds no work)."""
        self.workers.pop().stop()

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.proc.stop()

    @staticmethod
    def dataset_id(layout: str) -> str:
        return f"ivo://{AUTHORITY}/{layout}?{TILE}_{BAND}"


def redis_answers(url: str) -> bool:
    """Whether a Redis server answers PING at ``url`` (redis://host:port/db)."""
    parts = httpx.URL(url)
    try:
        with socket.create_connection((parts.host, parts.port or 6379), timeout=2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


IDLE_SECONDS = 10


def start_cutout_service(tile: Tile, tmp: Path, broker_url: str = "", layouts: tuple[str, ...] = SERVED,
                         worker_threads: int | None = None, **settings: str) -> CutoutService:
    """`cutout serve` with shipped defaults but for the anonymous rate limit (off: the load
    would hit it) and the anonymous cutout size (the service's own limit: 5' jobs).

    With ``broker_url`` (Redis), the distributed shape on the same SQLite database: the jobs
    run in one `cutout worker` process (``worker_threads`` threads: its setting when None),
    under a namespace of its own. ``layouts``: one survey per layout, named for it.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "site.toml").write_text(_site_file(tile, layouts), encoding="utf-8")
    env = _clean_env() | {
        "CUTOUT_CONFIG": str(tmp / "site.toml"),
        "CUTOUT_DATA_DIR": str(tmp / "data"),
        "CUTOUT_ANONYMOUS_RATE_LIMIT": "0",
        "CUTOUT_ANONYMOUS_MAX_CUTOUT_PIXELS": "25000000",
        "CUTOUT_LOG_FORMAT": "text",
        # The memory section waits for the cutting processes to end (shipped: 120 s idle).
        "CUTOUT_CUTOUT_IDLE_SECONDS": str(IDLE_SECONDS),
    }
    env |= {f"CUTOUT_{name.upper()}": value for name, value in settings.items()}
    if broker_url:
        env |= {"CUTOUT_BROKER_URL": broker_url, "CUTOUT_REDIS_NAMESPACE": f"cutout-bench-{uuid.uuid4().hex[:8]}"}
    cli = [sys.executable, "-m", "soda.ops.cli"]
    for layout in layouts:
        done = subprocess.run([*cli, "ingest", "--survey", layout], env=env, cwd=ROOT, capture_output=True,
                              text=True, timeout=300)
        if done.returncode != 0 or "1 images indexed" not in done.stdout:
            raise RuntimeError(f"cutout ingest --survey {layout} failed:\n{done.stdout}\n{done.stderr}")
    port = free_port()
    proc = Proc([*cli, "serve", "--port", str(port)], env, tmp / "cutout-serve.log")
    base = f"http://127.0.0.1:{port}"
    service = CutoutService(proc, base, env=env, tmp=tmp)
    try:
        proc.wait_ready(base + "/healthz")
        if broker_url:
            service.add_worker(worker_threads)
    except BaseException:
        service.stop()
        raise
    return service


def start_naive_service(path: Path, tmp: Path) -> tuple[Proc, str]:
    port = free_port()
    env = _clean_env() | {"CUTOUT_NAIVE_FILE": str(path)}
    proc = Proc([sys.executable, "-m", "uvicorn", "--factory", "--app-dir", str(BENCH), "--port", str(port),
                 "naive_server:create_app"], env, tmp / "naive-serve.log")
    base = f"http://127.0.0.1:{port}"
    proc.wait_ready(base + "/")  # 404: up
    return proc, base
