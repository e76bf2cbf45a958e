"""Shared fixtures: schema validation, real Redis/PostgreSQL, real server and worker processes.

Redis and PostgreSQL are used for real. When one is missing, its tests fail under
CI=true and are skipped loudly elsewhere.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import httpx
import pytest
from lxml import etree

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = Path(__file__).resolve().parent / "schemas"
IN_CI = os.environ.get("CI", "").lower() == "true"
REDIS_URL = os.environ.get("CUTOUT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_DSN = os.environ.get("CUTOUT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


# --- XML validation -----------------------------------------------------------------

class _Offline(etree.Resolver):
    def resolve(self, url, pubid, context):  # type: ignore[no-untyped-def]
        if url and "://" in url and not url.startswith("file://"):
            raise RuntimeError(f"schema tried to load {url}")
        return None


@cache
def schema(name: str) -> etree.XMLSchema:
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    parser.resolvers.add(_Offline())
    return etree.XMLSchema(etree.parse(str(SCHEMAS / name), parser))


def assert_valid(body: bytes, schema_name: str) -> etree._Element:
    doc = etree.fromstring(body)
    xsd = schema(schema_name)
    if not xsd.validate(doc):
        errors = "\n".join(f"  line {e.line}: {e.message}" for e in xsd.error_log)
        raise AssertionError(f"not valid against {schema_name}:\n{errors}\n{body.decode()[:2000]}")
    return doc


def assert_uws(body: bytes) -> etree._Element:
    return assert_valid(body, "UWS-v1.1.xsd")


def assert_votable(body: bytes) -> etree._Element:
    return assert_valid(body, "VOTable-v1.4.xsd")


UWS = {"uws": "http://www.ivoa.net/xml/UWS/v1.0", "xlink": "http://www.w3.org/1999/xlink"}


def uws_text(doc: etree._Element, path: str) -> str | None:
    found = doc.find(path, UWS)
    return None if found is None else found.text


# --- real services -------------------------------------------------------------------

def require(service: str, problem: str | None) -> None:
    if problem is None:
        return
    message = f"{service} is not reachable ({problem})"
    if IN_CI:
        pytest.fail(f"{message}; CI=true requires it", pytrace=False)
    sys.stderr.write(f"\n!!!!!!!! SKIPPING: {message} !!!!!!!!\n")
    pytest.skip(f"!!! {message} — start it to run this test")


def _redis_problem() -> str | None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001
        return str(exc)
    return None


@pytest.fixture(scope="session")
def redis_url() -> str:
    require("Redis", _redis_problem())
    return REDIS_URL


def _pg_admin():  # type: ignore[no-untyped-def]
    import psycopg2

    conn = psycopg2.connect(POSTGRES_DSN, connect_timeout=3)
    conn.autocommit = True
    return conn


@contextlib.contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """A new, empty database on the test PostgreSQL server (its name starts with ``prefix``),
    dropped afterwards with whatever is still connected to it."""
    try:
        admin = _pg_admin()
    except Exception as exc:  # noqa: BLE001
        require("PostgreSQL", str(exc))
        raise
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES_DSN.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


@contextlib.contextmanager
def redis_namespace(redis_url: str, prefix: str) -> Iterator[str]:
    """A Redis key prefix of a test's own, its keys deleted afterwards."""
    import redis

    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{name}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database for this test session, dropped at the end."""
    with fresh_database("cutout_test") as url:
        yield url


# --- processes -------------------------------------------------------------------------

def stilts(tool: str, path: Path) -> str:
    """What ``stilts <tool> <path>`` prints (votlint, ...); missing STILTS fails in CI."""
    if shutil.which("stilts") is None:
        if IN_CI:
            pytest.fail("stilts is not installed; .ci/run installs it", pytrace=False)
        pytest.skip("!!! stilts is not installed (apt-get install stilts) — lint not run")
    out = subprocess.run(["stilts", tool, str(path)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "JAVA_TOOL_OPTIONS": "-Djava.awt.headless=true"})
    return out.stdout + out.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FAST_TIMINGS = {
    "CUTOUT_HEARTBEAT_SECONDS": "0.5",
    "CUTOUT_STALE_JOB_SECONDS": "2",
    "CUTOUT_SWEEP_INTERVAL_SECONDS": "0.5",
    "CUTOUT_RETRY_BACKOFF_MS": "100",
    "CUTOUT_WORKER_POLL_MS": "20",  # each app's worker threads stop in 40 ms, not 200
    "CUTOUT_LOG_LEVEL": "INFO",
    "CUTOUT_SELFTEST_JOBS": "true",
    # The tests of the layers below auth use anonymous callers as an open service would
    # (tests/soda/web/test_auth_limits.py checks the anonymous limits themselves).
    "CUTOUT_ANONYMOUS_ASYNC": "open",
    "CUTOUT_ANONYMOUS_RATE_LIMIT": "0",
    "CUTOUT_ANONYMOUS_MAX_CUTOUT_PIXELS": "25000000",
    "CUTOUT_ANONYMOUS_MAX_SYNC_CUTOUTS": "50",
    "CUTOUT_ANONYMOUS_FILES": "true",
    # The TestClients below call from 127.0.0.1, as nginx would (tests of proxies).
    "CUTOUT_TRUSTED_PROXIES": "127.0.0.1",
}


class Proc:
    """A ``cutout`` subprocess with its output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args = args
        self.log = log
        self._fh = log.open("ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "soda.ops.cli", *args], env=env, cwd=ROOT,
            stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in self.output():
                return
            if self.popen.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{self.args} did not print {text!r}:\n{self.output()[-4000:]}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)
        self.popen.wait(timeout=15)

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._fh.close()


def start_server(env: dict[str, str], log: Path, port: int | None = None) -> tuple[Proc, str]:
    port = port or free_port()
    proc = Proc(["serve", "--port", str(port)], env, log)
    base = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 40
    while time.monotonic() < end:
        if proc.popen.poll() is not None:
            raise AssertionError(f"server exited:\n{proc.output()[-4000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base + "/", timeout=1).status_code == 200:
                return proc, base
        time.sleep(0.1)
    proc.stop()
    raise AssertionError(f"server did not start:\n{proc.output()[-4000:]}")


def start_worker(env: dict[str, str], log: Path, threads: int = 2) -> Proc:
    proc = Proc(["worker", "--threads", str(threads)], env, log)
    proc.wait_for_output("worker started")
    return proc


def base_env(data_dir: Path, demo: Path | None = None, **extra: str) -> dict[str, str]:
    """Environment of a server or worker process; ``demo`` links a pre-built demo survey."""
    if demo is not None:
        link_demo(data_dir, demo)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUTOUT_")}
    env.update(FAST_TIMINGS)
    env["CUTOUT_DATA_DIR"] = str(data_dir)
    env.update(extra)
    return env


# --- polling helpers for tests ---------------------------------------------------------

def eventually(check, timeout: float = 20, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Return check()'s first truthy value within ``timeout`` seconds, else fail."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value {last!r})")


# --- the embedded app in-process -------------------------------------------------------

async def header_identity(request):  # type: ignore[no-untyped-def]
    """Test stand-in for the auth layer (issue 6): the caller named by X-Test-User."""
    from auth import ANONYMOUS, Identity

    user = request.headers.get("x-test-user")
    return Identity(user) if user else ANONYMOUS


DEMO_SIZE = 1024  # pixels on a side: small, fast to build, real DES geometry and pixel scale


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The des demo survey, built once per test session, with the default lsst demo next to
    it (``lsst_demo_root``): the shipped defaults serve both."""
    from soda.surveys.demo import build_des_demo
    from soda.surveys.lsst_demo import ensure_lsst_demo

    root = tmp_path_factory.mktemp("demo") / "des"
    build_des_demo(root, size=DEMO_SIZE)
    ensure_lsst_demo(lsst_demo_root(root))
    return root


@pytest.fixture(params=["sqlite", "postgresql"])
def index_db(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    """An empty image index, on SQLite and on the session's PostgreSQL (shared: name surveys
    uniquely)."""
    from soda.index.tables import MIGRATIONS
    from soda.ops.database import close_database, migrate, open_database

    url = (f"sqlite:///{tmp_path / 'index.sqlite'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    database = open_database(url)
    migrate(database, [("images", MIGRATIONS)])
    yield database
    close_database(database)


def lsst_demo_root(demo_root: Path) -> Path:
    """The session's lsst demo (the default one), next to the des demo."""
    return demo_root.parent / "lsst"


def scanned_catalogue(root: Path, survey: str = "des", layout=None):  # type: ignore[no-untyped-def]
    """The images of a folder as `cutout ingest` reads them, in a catalogue in memory."""
    from soda.index.ingest import fits_files
    from soda.index.scan import scan_file
    from soda.surveys.des import DESSurvey
    from soda.surveys.in_memory import InMemoryCatalogue

    return InMemoryCatalogue(image for path in fits_files(root)
                             for image in scan_file(path, survey, layout or DESSurvey, {}))


def write_sky_image(path: Path, ra: float, dec: float, size: int = 64, scale: float = 1.0,
                    rotation: float = 0.0, header: dict[str, object] | None = None) -> Path:
    """A small FITS image with a TAN WCS centred on (ra, dec): ``scale`` arcsec per pixel,
    rotated by ``rotation`` degrees; its pixels are a ramp (values tell positions apart)."""
    import math

    import numpy as np
    from astropy.io import fits
    from astropy.wcs import WCS

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [(size + 1) / 2, (size + 1) / 2]
    s, t = scale / 3600.0, math.radians(rotation)
    wcs.wcs.cd = [[-s * math.cos(t), s * math.sin(t)], [s * math.sin(t), s * math.cos(t)]]
    hdu = fits.PrimaryHDU(np.arange(size * size, dtype=np.float32).reshape(size, size),
                          header=wcs.to_header())
    for key, value in (header or {}).items():
        hdu.header[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    hdu.writeto(path, overwrite=True)
    return path


def demo_survey(root: Path, authority: str = "demo.cutout"):  # type: ignore[no-untyped-def]
    """The DES survey over the images of a demo folder."""
    from soda.surveys.des import DESSurvey

    return DESSurvey(scanned_catalogue(root), authority)


def _link_surveys(data_dir: Path, demo_root: Path) -> None:
    (data_dir / "demo").mkdir(parents=True, exist_ok=True)
    for name, target in (("des", demo_root), ("lsst", lsst_demo_root(demo_root))):
        link = data_dir / "demo" / name
        if not link.exists() and target.exists():
            link.symlink_to(target, target_is_directory=True)


@cache
def _indexed_template(demo_root: Path) -> Path:
    """A data dir whose SQLite database holds the demos' index (made once per session)."""
    from auth import tables as auth_tables
    from conf import load_settings
    from soda.index import tables as index_tables
    from soda.index.surveys import prepare_demo_surveys
    from uws import tables as uws_tables
    from soda.ops.database import close_database, migrate, open_database

    data_dir = Path(tempfile.mkdtemp(prefix="indexed-demo-")) / "data"
    _link_surveys(data_dir, demo_root)
    settings = load_settings(environ={"CUTOUT_DATA_DIR": str(data_dir)})
    db = open_database(settings.ops.effective_database_url)
    try:
        migrate(db, [("uws", uws_tables.MIGRATIONS), ("auth", auth_tables.MIGRATIONS),
                     ("images", index_tables.MIGRATIONS)])
        prepare_demo_surveys(db, settings, build=False)
    finally:
        close_database(db)
    return data_dir


def _copy_index(template: Path, data_dir: Path) -> None:
    """The template's database for ``data_dir``: its file paths moved to this data dir."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(template / "cutout.sqlite")) as src, \
            contextlib.closing(sqlite3.connect(data_dir / "cutout.sqlite")) as dst:
        src.backup(dst)
        old, new = f"{template}/demo/", f"{data_dir}/demo/"
        with dst:
            for table in ("index_file", "index_image"):
                dst.execute(f"UPDATE {table} SET path = ? || substr(path, ?) WHERE substr(path, 1, ?) = ?",
                            (new, len(old) + 1, len(old), old))


def link_demo(data_dir: Path, demo_root: Path) -> Path:
    """Point a data dir's des and lsst survey roots at the session's demos, so nothing is
    rebuilt; a new data dir also gets a copy of their index, so an app's start finds it
    up to date instead of reading every demo image again (the start's ingest itself is
    tested where data dirs are made without this)."""
    fresh = not (data_dir / "cutout.sqlite").exists()
    _link_surveys(data_dir, demo_root)
    if fresh:
        _copy_index(_indexed_template(demo_root), data_dir)
    return data_dir


@pytest.fixture
def embedded(tmp_path: Path, demo_root: Path) -> Iterator["httpx.Client"]:
    """The embedded shape (SQLite, stub broker, in-process workers) behind a TestClient."""
    from starlette.testclient import TestClient

    from conf import load_settings
    from soda.web.app import create_app

    link_demo(tmp_path / "data", demo_root)
    # Cut on the app's threads: each pool of cutting processes costs ~0.5 s to start, and
    # hundreds of tests make an app. The default (processes) is tested by app_client, by
    # tests/soda/ops/test_cutting_pool.py and by every e2e test of `cutout serve`.
    env = {**FAST_TIMINGS, "CUTOUT_DATA_DIR": str(tmp_path / "data"), "CUTOUT_WAIT_MAX_SECONDS": "5",
           "CUTOUT_CUTOUT_IN_PROCESSES": "false"}
    app = create_app(load_settings(environ=env), identify=header_identity, build_demo=False)
    with TestClient(app, base_url="http://testserver", follow_redirects=False,
                    client=("127.0.0.1", 50000)) as client:
        client.app_state = app.state  # type: ignore[attr-defined]
        yield client


@contextlib.contextmanager
def app_client(data_dir: Path, demo_root: Path, identify=None, **env: str) -> Iterator["httpx.Client"]:  # type: ignore[no-untyped-def]
    """The embedded app with the real access policy (unless ``identify`` replaces it),
    on the service's own defaults plus ``env``; tests of auth use it."""
    from starlette.testclient import TestClient

    from conf import load_settings
    from soda.web.app import create_app

    link_demo(data_dir, demo_root)
    settings_env = {"CUTOUT_DATA_DIR": str(data_dir), "CUTOUT_SELFTEST_JOBS": "true",
                    "CUTOUT_HEARTBEAT_SECONDS": "0.5", "CUTOUT_STALE_JOB_SECONDS": "2",
                    "CUTOUT_SESSION_COOKIE_SECURE": "false", "CUTOUT_WORKER_POLL_MS": "20", **env}
    app = create_app(load_settings(environ=settings_env), identify=identify, build_demo=False)
    with TestClient(app, base_url="http://testserver", follow_redirects=False,
                    client=("127.0.0.1", 50000)) as client:
        client.app_state = app.state  # type: ignore[attr-defined]
        yield client


class ThrowawayRedis:
    """A redis-server of the test's own on a free port, without persistence: stopping it
    is an outage, and a restart loses every message (the shared server is never touched)."""

    def __init__(self, binary: str, log: Path) -> None:
        self.binary = binary
        self.port = free_port()
        self.log = log
        self.proc: subprocess.Popen | None = None  # type: ignore[type-arg]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        end = time.monotonic() + 15
        while time.monotonic() < end:
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            with contextlib.suppress(Exception):
                if redis.Redis.from_url(self.url, socket_connect_timeout=1).ping():
                    return
            time.sleep(0.05)
        raise AssertionError(f"redis-server did not start: {self.log.read_text()[-2000:]}")

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)


def _wait_until(ready, proc: subprocess.Popen, what: str, log: Path,  # type: ignore[no-untyped-def]
                timeout: float = 20) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(Exception):
            if ready():
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not become ready in {timeout} s: {log.read_text()[-2000:]}")


class ThrowawayPostgres:
    """A PostgreSQL cluster of the test's own in a temporary directory, stoppable,
    freezable and restartable on one port (the shared server is never touched)."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="cutout-throwaway-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.proc: subprocess.Popen | None = None  # type: ignore[type-arg]
        # PostgreSQL refuses to run as root.
        self.as_user = ({"user": "postgres", "group": "postgres", "extra_groups": []}
                        if os.geteuid() == 0 else {})
        if self.as_user:
            shutil.chown(self.dir, "postgres", "postgres")

    @property
    def url(self) -> str:
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def init(self) -> None:
        subprocess.run([str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres",
                        "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"],
                       check=True, capture_output=True, timeout=60, **self.as_user)

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(self.bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-k", str(self.dir), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                 "-c", "full_page_writes=off"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **self.as_user)
        _wait_until(self._accepts, self.proc, "postgres", self.log)

    def _accepts(self) -> bool:
        import psycopg2

        psycopg2.connect(self.url, connect_timeout=1).close()
        return True

    def create_database(self) -> str:
        """A fresh database in this cluster; its URL."""
        import psycopg2

        name = f"cutout_{uuid.uuid4().hex[:10]}"
        conn = psycopg2.connect(self.url, connect_timeout=3)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return self.database_url(name)

    def processes(self) -> list[int]:
        """The postmaster and its children (each backend calls setsid(), so the cluster
        is not one process group)."""
        assert self.proc is not None
        pids = [self.proc.pid]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                    pids.append(int(stat.parent.name))
        return pids

    def freeze(self) -> None:
        """SIGSTOP every process of the cluster, the postmaster first (no new backends):
        connections stay open and nothing answers."""
        assert self.proc is not None and self.proc.poll() is None
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            for pid in reversed(self.processes()):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    def stop(self) -> None:
        """A "fast" shutdown (SIGINT): ends the sessions, then exits."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.thaw()
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _postgres_bin() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[ThrowawayPostgres]:
    """A throwaway PostgreSQL for the module's tests to stop, freeze and restart."""
    bin_dir = _postgres_bin()
    require("PostgreSQL binaries", None if bin_dir else "no initdb under /usr/lib/postgresql/*/bin or on PATH")
    assert bin_dir is not None
    pg: ThrowawayPostgres | None = None
    try:
        pg = ThrowawayPostgres(bin_dir)  # as root, this needs the postgres user
        pg.init()
        pg.start()
    except Exception as exc:  # noqa: BLE001
        detail = getattr(exc, "stderr", None) or exc
        if pg is not None:
            pg.remove()
        require("a throwaway PostgreSQL", f"could not start one: {detail!s}"[:500])
    assert pg is not None
    yield pg
    pg.remove()


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThrowawayRedis]:
    """A throwaway Redis for the module's tests to stop and restart."""
    binary = shutil.which("redis-server")
    require("redis-server", None if binary else "not on PATH")
    assert binary is not None
    server = ThrowawayRedis(binary, tmp_path_factory.mktemp("redis") / "redis.log")
    try:
        server.start()
    except Exception as exc:  # noqa: BLE001
        server.stop()
        require("a throwaway Redis", f"could not start one: {exc}"[:500])
    yield server
    server.stop()


# --- notification receivers (NOTIFY) ------------------------------------------------------------

class WebhookReceiver:
    """An HTTP server on a free loopback port that records every POST and answers the
    statuses it is given in turn (then 200)."""

    def __init__(self, statuses: tuple[int, ...] = (), tls: tuple[Path, Path] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        """``tls``: (certificate, key) files to answer https; ``headers``: sent with every answer."""
        import http.server
        import ssl
        import threading

        self.statuses = list(statuses)
        self.received: list[tuple[str, dict[str, str], bytes, int]] = []  # path, headers, body, answer
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.received.append((self.path, dict(self.headers.items()), body, status))
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.url = f"https://localhost:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SmtpSink:
    """A real SMTP server (aiosmtpd) on a free loopback port: it answers the first
    ``refuse`` messages with 451 (try again later) and keeps the others."""

    def __init__(self, refuse: int = 0) -> None:
        from aiosmtpd.controller import Controller

        self.refuse = refuse
        self.attempts = 0
        self.messages: list[tuple[str, list[str], bytes]] = []  # envelope from, to, content
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]  # noqa: N802
                sink.attempts += 1
                if sink.attempts <= sink.refuse:
                    return "451 4.3.0 try again later"
                sink.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()
