"""The attack run of issue 13, re-runnable: fuzzing, the eleven defects of the first run,
worker kills, load, cross-user access, broker and database outages.

It starts its own services in the distributed shape, on the shipped defaults for every
limit: a throwaway PostgreSQL cluster (initdb in a temporary directory, so stopping and
freezing it touches nothing shared), a throwaway redis-server on a free port, one
`cutout serve` and two `cutout worker` processes; users get API tokens from
`cutout token create`. Only the job-recovery timings are shortened (heartbeat 0.5 s,
stale job 2 s, sweeps every 0.5 s, retry backoff 100 ms) so twenty worker kills fit in
minutes; they are not limits, and the table says so.

Phases, one or more rows each in the final table:

  a  fuzz        seeded random requests over every endpoint (8 client threads)
  b  defects     the exact reproductions of defects 1-11 of the first run
  c  kills       SIGKILL a worker while cutout jobs run; every job must complete
  d  load        20 clients of small /sync cutouts with a token
  e  cross-user  user A's jobs tried by user B and by anonymous callers
  f  outages     Redis stopped 10 s, PostgreSQL frozen (SIGSTOP) 10 s, during traffic

Usage (from the repository root):

    .venv/bin/python bench/attack.py [--quick] [--seed N] [--keep]

--quick: 3,000 fuzzed requests, 5 kill trials, 15 s of load. The exit status is 1 when
an invariant fails (an unexpected 5xx, an unlabelled refusal, a cross-user access, a lost
job, a defect reproduced); the table names which.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import glob
import hashlib
import json
import os
import random
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import httpx
from lxml import etree

from soda.surveys.des import tile_centre

ROOT = Path(__file__).resolve().parent.parent
TILES = ("DES0139-4457", "DES0000+0209")
BANDS = ("g", "r", "i")
IDS = [f"ivo://demo.cutout/des?{t}_{b}" for t in TILES for b in BANDS]
CENTRES = [tile_centre(t) for t in TILES]
RA0, DEC0 = CENTRES[0]
DID = IDS[1]
CIRCLE = f"{RA0} {DEC0} 0.002"
DEMO_SIZE = 1024

# The labels of dali/errors.py and the DataLink faults of soda/web/datalink.py.
LABELS = ("Error:", "UsageError:", "MultiValuedParamNotSupported:", "AuthenticationError:",
          "AuthorizationError:", "ServiceUnavailable:")
FAULTS = ("UsageFault:", "NotFoundFault:", "TransientFault:", "FatalFault:", "DefaultFault:")
UWS_NS = "{http://www.ivoa.net/xml/UWS/v1.0}"

# Timings only (not limits): fast recovery of killed workers, so the trials fit in minutes.
TIMINGS = {
    "CUTOUT_HEARTBEAT_SECONDS": "0.5",
    "CUTOUT_STALE_JOB_SECONDS": "2",
    "CUTOUT_SWEEP_INTERVAL_SECONDS": "0.5",
    "CUTOUT_RETRY_BACKOFF_MS": "100",
}

# The limits printed with the table (flat setting names of conf/settings.py).
LIMIT_NAMES = (
    "anonymous_access", "anonymous_async", "anonymous_rate_limit", "anonymous_rate_window_seconds",
    "anonymous_max_unfinished_jobs", "anonymous_max_active_jobs", "anonymous_max_job_cutouts",
    "anonymous_max_sync_cutouts", "anonymous_max_cutout_pixels", "anonymous_quota_bytes",
    "user_max_unfinished_jobs", "user_max_active_jobs", "user_max_job_cutouts", "user_quota_bytes",
    "max_job_parameters", "max_job_parameter_bytes", "max_request_body_bytes", "max_form_fields",
    "max_form_field_bytes", "max_connections", "max_request_head_bytes",
    "request_header_timeout_seconds", "request_body_timeout_seconds", "keep_alive_timeout_seconds",
    "wait_max_seconds", "wait_max_per_caller", "wait_max_total", "max_sync_cutouts",
    "max_cutout_pixels", "database_connect_timeout_seconds", "database_statement_timeout_seconds",
    "redis_socket_timeout_seconds", "trust_forwarded_headers", "trusted_proxies", "operator_clients",
)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- results ---------------------------------------------------------------------------------

class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []
        self.failures: list[str] = []

    def add(self, phase: str, figure: str, ok: bool | None) -> None:
        result = "info" if ok is None else ("holds" if ok else "FAILS")
        self.rows.append((phase, figure, result))
        if ok is False:
            self.failures.append(f"{phase}: {figure}")
        log(f"{result:5}  {phase}: {figure}")

    def print(self) -> None:
        order = {"a": 0, "b": 1, "c": 2, "d": 3, "e": 4, "f": 5}
        rows = sorted(self.rows, key=lambda r: order.get(r[0][0], 9))
        w0 = max(len(r[0]) for r in rows)
        w1 = min(110, max(len(r[1]) for r in rows))
        line = f"+-{'-' * w0}-+-{'-' * w1}-+-------+"
        print(line)
        print(f"| {'phase':{w0}} | {'figure':{w1}} | result|")
        print(line)
        for phase, figure, result in rows:
            chunks = [figure[i:i + w1] for i in range(0, len(figure), w1)] or [""]
            for i, chunk in enumerate(chunks):
                print(f"| {phase if i == 0 else '':{w0}} | {chunk:{w1}} | {result if i == 0 else '':5} |")
        print(line)


# --- answers ---------------------------------------------------------------------------------

def query_status(body: bytes) -> str | None:
    try:
        doc = etree.fromstring(body)
    except etree.XMLSyntaxError:
        return None
    if doc.tag.startswith(UWS_NS):
        return "UWS"
    for info in doc.iter("{*}INFO", "INFO"):
        if info.get("name") == "QUERY_STATUS":
            return (info.text or info.get("value") or "").strip() or info.get("value")
    return None


def labelled(r: httpx.Response) -> bool:
    """A DALI error document: text/plain starting with a label, a VOTable with QUERY_STATUS
    (label or ERROR), or a UWS document."""
    ctype = r.headers.get("content-type", "")
    if ctype.startswith("text/plain"):
        return r.text.startswith(LABELS + FAULTS)
    if "xml" in ctype:
        status = query_status(r.content)
        return status is not None and (status == "UWS" or status == "ERROR"
                                       or status.startswith(LABELS + FAULTS))
    return False


def kind(r: httpx.Response, method: str = "GET") -> str:
    """ok, redirect, refusal (labelled 4xx), unlabelled (4xx), busy (labelled 503), 5xx."""
    s = r.status_code
    if s < 300:
        return "ok"
    if s < 400:
        return "redirect"
    if method == "HEAD":
        return "refusal" if s < 500 else ("busy" if s == 503 else "5xx")
    if s < 500:
        if s == 405 and r.headers.get("allow"):
            return "refusal"
        return "refusal" if labelled(r) else "unlabelled"
    if s == 503 and labelled(r):
        return "busy"
    return "5xx"


def client(addr: str | None = None, timeout: float = 60, **kw) -> httpx.Client:  # type: ignore[no-untyped-def]
    transport = httpx.HTTPTransport(local_address=addr) if addr else None
    return httpx.Client(transport=transport, timeout=timeout, follow_redirects=False, **kw)


# --- services --------------------------------------------------------------------------------

class Postgres:
    """A PostgreSQL cluster in a temporary directory (as root it runs as user postgres)."""

    def __init__(self, tmp: Path) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
        found = [Path(b) for b in bins if (Path(b) / "initdb").exists()]
        if not found and shutil.which("initdb"):
            found = [Path(shutil.which("initdb")).parent]  # type: ignore[arg-type]
        if not found:
            raise SystemExit("attack: no PostgreSQL binaries (initdb) found")
        self.bin = found[0]
        self.port = free_port()
        self.dir = tmp / "pg"
        self.dir.mkdir()
        self.log = self.dir / "postgres.log"
        self.proc: subprocess.Popen | None = None  # type: ignore[type-arg]
        self.as_user = ({"user": "postgres", "group": "postgres", "extra_groups": []}
                        if os.geteuid() == 0 else {})
        if self.as_user:
            shutil.chown(tmp, "postgres", "postgres")
            shutil.chown(self.dir, "postgres", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        if not (self.dir / "data").exists():
            subprocess.run([str(self.bin / "initdb"), "-D", str(self.dir / "data"), "-U", "postgres",
                            "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"],
                           check=True, capture_output=True, timeout=120, **self.as_user)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(self.bin / "postgres"), "-D", str(self.dir / "data"), "-p", str(self.port),
                 "-k", str(self.dir), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                 "-c", "full_page_writes=off", "-c", "max_connections=200"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **self.as_user)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise SystemExit(f"attack: postgres exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(Exception):
                self.query("SELECT 1")
                return
            time.sleep(0.1)
        raise SystemExit("attack: postgres did not start")

    def query(self, sql: str, *args: object) -> list[tuple]:  # type: ignore[type-arg]
        import psycopg2

        conn = psycopg2.connect(self.url, connect_timeout=3)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def children(self) -> list[int]:
        """The postmaster's processes (each backend calls setsid: no common process group)."""
        assert self.proc is not None
        found = []
        for stat in glob.glob("/proc/[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = Path(stat).read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.proc.pid:
                    found.append(int(stat.split("/")[2]))
        return found

    def freeze(self) -> None:
        """SIGSTOP the postmaster first (it forks no more), then every process it started."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)
        for pid in self.children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        for pid in self.children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.thaw()
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


class Redis:
    def __init__(self, tmp: Path) -> None:
        self.binary = shutil.which("redis-server")
        if not self.binary:
            raise SystemExit("attack: redis-server is not on PATH")
        self.port = free_port()
        self.log = tmp / "redis.log"
        self.proc: subprocess.Popen | None = None  # type: ignore[type-arg]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--maxclients", "10000"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        end = time.monotonic() + 15
        while time.monotonic() < end:
            with contextlib.suppress(Exception):
                if redis.Redis.from_url(self.url, socket_connect_timeout=1).ping():
                    return
            time.sleep(0.05)
        raise SystemExit("attack: redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class Proc:
    """A `cutout` subprocess in its own process group, its output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.log = log_path
        self._fh = log_path.open("ab")
        self.popen = subprocess.Popen([sys.executable, "-m", "soda.ops.cli", *args], env=env,
                                      cwd=ROOT, stdout=self._fh, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.popen.wait(timeout=15)
        self._fh.close()

    def stop(self) -> None:
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait(timeout=10)
        self._fh.close()

    def rss_kb(self) -> int:
        """Resident memory of the process group, kB."""
        total = 0
        for status in glob.glob("/proc/[0-9]*/status"):
            with contextlib.suppress(OSError, ValueError):
                pid = int(status.split("/")[2])
                if os.getpgid(pid) != self.popen.pid:
                    continue
                for line in Path(status).read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        return total


class Cluster:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.pg = Postgres(tmp)
        self.redis = Redis(tmp)
        self.data = tmp / "data"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.session_secret = secrets.token_urlsafe(32)
        self.server: Proc | None = None
        self.workers: list[Proc] = []
        self.logs = Counter()  # type: Counter[str]
        self.env: dict[str, str] = {}

    def start(self) -> None:
        self.pg.start()
        self.redis.start()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CUTOUT_")}
        env.update(TIMINGS)
        env.update({
            "CUTOUT_DATA_DIR": str(self.data),
            "CUTOUT_DATABASE_URL": self.pg.url,
            "CUTOUT_BROKER_URL": self.redis.url,
            "CUTOUT_REDIS_NAMESPACE": f"cutout-attack-{uuid.uuid4().hex[:8]}",
            "CUTOUT_SESSION_SECRET": self.session_secret,
            "CUTOUT_LOG_FORMAT": "text",
        })
        self.env = env
        log(f"building the demo survey ({DEMO_SIZE} px tiles)")
        subprocess.run([sys.executable, "-m", "soda.ops.cli", "demo-data", "--size", str(DEMO_SIZE),
                        "--out", str(self.data / "demo" / "des")], env=env, cwd=ROOT, check=True,
                       capture_output=True, timeout=600)
        self.start_server()
        for _ in range(2):
            self.start_worker()

    def _proc(self, args: list[str], name: str) -> Proc:
        self.logs[name] += 1
        return Proc(args, self.env, self.tmp / f"{name}-{self.logs[name]}.log")

    def start_server(self) -> None:
        self.server = self._proc(["serve", "--port", str(self.port)], "server")
        end = time.monotonic() + 60
        while time.monotonic() < end:
            if not self.server.alive():
                raise SystemExit(f"attack: server exited:\n{self.server.output()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise SystemExit(f"attack: server did not start:\n{self.server.output()[-3000:]}")

    def start_worker(self) -> Proc:
        worker = self._proc(["worker"], "worker")
        end = time.monotonic() + 60
        while "worker started" not in worker.output():
            if not worker.alive() or time.monotonic() > end:
                raise SystemExit(f"attack: worker did not start:\n{worker.output()[-3000:]}")
            time.sleep(0.05)
        self.workers.append(worker)
        return worker

    def token(self, user: str) -> str:
        out = subprocess.run([sys.executable, "-m", "soda.ops.cli", "token", "create", "--user", user],
                             env=self.env, cwd=ROOT, check=True, capture_output=True, text=True, timeout=60)
        return out.stdout.strip().splitlines()[0]

    def limits(self) -> dict[str, str]:
        out = subprocess.run([sys.executable, "-m", "soda.ops.cli", "check-config"], env=self.env,
                             cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
        found = {}
        for line in out.splitlines():
            m = re.match(r"\s*([a-z_]+)\s*[=:]\s*(.*)$", line)
            if m and m.group(1) in LIMIT_NAMES:
                found[m.group(1)] = m.group(2).strip()
        return found

    def stop(self) -> None:
        for w in self.workers:
            with contextlib.suppress(Exception):
                w.stop()
        if self.server is not None:
            with contextlib.suppress(Exception):
                self.server.stop()
        self.redis.stop()
        self.pg.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def job_phase(c: httpx.Client, url: str, headers: dict[str, str]) -> str:
    try:
        r = c.get(url + "/phase", headers=headers, timeout=20)
    except httpx.HTTPError:
        return "?"
    return r.text.strip() if r.status_code == 200 else f"HTTP{r.status_code}"


def wait_jobs(c: httpx.Client, urls: list[str], headers: dict[str, str], timeout: float) -> dict[str, str]:
    """Poll until every job is final; their phases."""
    phases: dict[str, str] = {}
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        phases = {u: job_phase(c, u, headers) for u in urls}
        if all(p in ("COMPLETED", "ERROR", "ABORTED", "HTTP404") for p in phases.values()):
            break
        time.sleep(0.3)
    return phases


def results_ok(c: httpx.Client, url: str, headers: dict[str, str]) -> bool:
    r = c.get(url + "/results", headers=headers)
    if r.status_code != 200:
        return False
    refs = [e.get("{http://www.w3.org/1999/xlink}href") for e in etree.fromstring(r.content).iter(UWS_NS + "result")]
    if not refs:
        return False
    for href in refs:
        got = c.get(href, headers=headers)
        if got.status_code != 200 or not got.content.startswith(b"SIMPLE"):
            return False
    return True


def circles(n: int, rng: random.Random, radius: float) -> list[str]:
    return [f"{RA0 + rng.uniform(-0.02, 0.02):.6f} {DEC0 + rng.uniform(-0.02, 0.02):.6f} {radius}"
            for _ in range(n)]


# --- a: fuzz ---------------------------------------------------------------------------------

NUMBERS = ["NaN", "nan", "+Inf", "-Inf", "inf", "1e309", "-1e309", "1e-320", "0", "-0", "0x1p3",
           "1_000", "١٢٣", "²", "¹⁰", "１２", "½", "Ⅻ", "𝟗", "1e", ".", "-", "+", "--1", "1,5", " 1 ",
           "9" * 5000, "0." + "0" * 4000 + "1", "1" + "0" * 5000, "-" + "9" * 5000, "1e300", "-1",
           "2147483648", "9223372036854775808", "64", "512", "4096", "4097", "0.5", "3"]
UGLY = ["\x00", "a\x00b", "<", ">", "&", "&amp;", "'", '"', "]]>", "<![CDATA[x]]>", "<?xml version='1.0'?>",
        "&#0;", "\ufffe", "\u2028", "%00", "%", "../../etc/passwd", "*", "", " ", "\t", "\r\n",
        "x" * 3000, "é" * 2000, "🙂", "ivo://", "ivo://demo.cutout/des?", "DES0139-4457_r", "\\", "%s%n"]
PARAMS = ["ID", "POS", "CIRCLE", "RANGE", "POLYGON", "BAND", "TIME", "POL", "RESPONSEFORMAT", "SIZE",
          "RGB", "Q", "STRETCH", "stretch", "PHASE", "WAIT", "EXECUTIONDURATION", "DESTRUCTION",
          "ACTION", "REQUEST", "MAXREC", "RUNID", "csrf_token", "everywhere", "name", "days", "next",
          "LAST", "AFTER", "id", "pos", "JUNK", "", "\x00", "ÏD", "FILTER", "SAMLResponse", "RelayState",
          "code", "state"]
FORMATS = ["application/fits", "fits", "image/png", "image/jpeg", "png", "jpeg", "text/plain",
           "application/x-votable+xml", "votable", "", "image/gif", "image/png;x=1"]
ACCEPTS = ["*/*", "application/x-votable+xml", "text/xml", "text/html", "application/json", "image/png",
           "text/plain", "", "application/x-votable+xml;content=datalink", "\u00e9/\u00e9", "*/*;q=NaN",
           "text/html, application/xhtml+xml", "x" * 3000]
CTYPES = ["application/x-www-form-urlencoded", "multipart/form-data", "multipart/form-data; boundary=",
          "application/json", "text/plain", "application/xml", "application/x-www-form-urlencoded; charset=latin1",
          "multipart/form-data; boundary=zz", "", "image/png", "application/octet-stream"]
SUBS = ["", "/phase", "/executionduration", "/destruction", "/quote", "/error", "/results",
        "/results/0", "/results/r0", "/results/../../x", "/parameters", "/owner", "/results/%00"]
OTHER = ["/", "/links", "/files", "/capabilities", "/availability", "/tables", "/healthz", "/readyz",
         "/metrics", "/whoami", "/usage", "/tokens", "/tokens/abc", "/tokens/" + "x" * 40, "/tokens/x%00",
         "/login",
         "/login/oidc", "/login/saml", "/auth/oidc/callback", "/auth/saml/acs", "/auth/saml/metadata",
         "/logout", "/x%00", "/nope", "/%ff%fe", "/async/", "/sync/", "/..%2f..%2fetc%2fpasswd",
         "/index.html", "/static/x", "/selftest", "/" + "a" * 4000]


def number(rng: random.Random) -> str:
    return rng.choice(NUMBERS) if rng.random() < 0.6 else repr(rng.uniform(-1e6, 1e6))


def region(rng: random.Random) -> tuple[str, str]:
    ra, dec = rng.choice(CENTRES)
    ra += rng.uniform(-0.03, 0.03)
    dec += rng.uniform(-0.03, 0.03)
    r = rng.uniform(0.0005, 0.004)
    kind_ = rng.choice(["CIRCLE", "RANGE", "POLYGON", "POS"])
    bodies = {"CIRCLE": f"{ra} {dec} {r}", "RANGE": f"{ra - r} {ra + r} {dec - r} {dec + r}",
              "POLYGON": f"{ra - r} {dec - r} {ra + r} {dec - r} {ra} {dec + r}"}
    if kind_ == "POS":
        shape = rng.choice(["CIRCLE", "RANGE", "POLYGON"])
        return "POS", f"{shape} {bodies[shape]}"
    return kind_, bodies[kind_]


def mutate(rng: random.Random, value: str) -> str:
    how = rng.choice(["keep", "keep", "keep", "insert", "delete", "replace", "swapcase", "number", "repeat", "append"])
    if how == "keep" or not value:
        return value
    i = rng.randrange(len(value))
    if how == "insert":
        return value[:i] + rng.choice(UGLY) + value[i:]
    if how == "delete":
        return value[:i] + value[i + rng.randint(1, 5):]
    if how == "replace":
        words = value.split(" ")
        words[rng.randrange(len(words))] = number(rng)
        return " ".join(words)
    if how == "swapcase":
        return value.swapcase()
    if how == "number":
        return number(rng)
    if how == "repeat":
        return " ".join([value] * rng.randint(2, 4))
    return value + rng.choice([" ", ",", " 1", " NaN", "\x00", "&x=1", " CIRCLE 1 2 3"])


def value_for(rng: random.Random, name: str) -> str:
    up = name.upper()
    if up == "ID":
        return rng.choice(IDS + ["ivo://demo.cutout/des?DES9999+9999_r", "ivo://other/x?y", "x"])
    if up in ("CIRCLE", "RANGE", "POLYGON", "POS"):
        k, v = region(rng)
        return v if up == k else (f"{k} {v}" if up == "POS" else v)
    if up == "BAND":
        return rng.choice(["g", "r", "i", "z", "Y", "400e-9 500e-9", "-Inf +Inf", "5e-7"])
    if up == "RESPONSEFORMAT":
        return rng.choice(FORMATS)
    if up == "SIZE":
        return rng.choice(["64", "128", "1", "0", "4097", "²", "9" * 4301, "64 64", "-1"])
    if up == "RGB":
        return rng.choice(["default", "i r g", "i,r,g", "x y z", ""])
    if up == "PHASE":
        return rng.choice(["RUN", "ABORT", "SUSPEND", "ARCHIVED", "run", ""])
    if up == "WAIT":  # never a long hold: the fuzz threads would stall
        return rng.choice(["0", "1", "x", "NaN", "-5", "", "1e-3", "\x00", "١"])
    if up in ("EXECUTIONDURATION", "DAYS", "MAXREC"):
        return number(rng)
    if up == "DESTRUCTION":
        return rng.choice(["2030-01-01T00:00:00Z", "2000-01-01", "9999-12-31T23:59:59Z", "now", number(rng)])
    if up == "TIME":
        return rng.choice(["55000 56000", "-Inf +Inf", "1 0", number(rng)])
    if up == "ACTION":
        return rng.choice(["DELETE", "delete", "x"])
    if up == "NEXT":
        return rng.choice(["/", "//evil.org", "https://evil.org/", "/async", "javascript:alert(1)"])
    return rng.choice(UGLY + [number(rng)])


def fuzz_request(i: int, seed: int, job_urls: list[str], token: str, other_token: str) -> dict:  # type: ignore[type-arg]
    rng = random.Random(seed * 1_000_003 + i)
    roll = rng.random()
    if roll < 0.22:
        path = "/sync"
    elif roll < 0.34:
        path = "/async"
    elif roll < 0.62:
        base = rng.choice(job_urls + ["/async/" + uuid.uuid4().hex, "/async/x%00", "/async/" + "9" * 300])
        path = base + rng.choice(SUBS)
    elif roll < 0.72:
        path = "/links"
    else:
        path = rng.choice(OTHER)
    method = rng.choices(["GET", "POST", "HEAD", "DELETE", "PUT", "PATCH", "OPTIONS"],
                         [50, 30, 5, 6, 3, 3, 3])[0]
    pairs: list[tuple[str, str]] = []
    for _ in range(rng.choice([0, 1, 2, 2, 3, 3, 4, 5, 8])):
        name = rng.choice(PARAMS)
        if rng.random() < 0.1:
            name = mutate(rng, name)
        pairs.append((name, mutate(rng, value_for(rng, name))))
    if path in ("/sync", "/async", "/links") and rng.random() < 0.8:
        pairs.append(("ID", rng.choice(IDS)))
        if path != "/links":
            pairs.append(region(rng))
    if path == "/async" and method == "POST" and rng.random() < 0.7:
        pairs = [(n, v) for n, v in pairs if n.upper() != "PHASE"]  # mostly PENDING jobs
    pairs = [(n, v) for n, v in pairs if not any(0xD800 <= ord(c) <= 0xDFFF for c in n + v)]
    headers: dict[str, str] = {}
    who = rng.random()
    if who < 0.45:
        headers["Authorization"] = f"Bearer {token}"
    elif who < 0.50:
        headers["Authorization"] = f"Bearer {other_token}"
    elif who < 0.58:
        headers["Authorization"] = rng.choice(["Bearer " + secrets.token_urlsafe(rng.randint(1, 60)), "Bearer",
                                               "Basic eDp5", "Bearer a.b.c", "Bearer " + "x" * 5000,
                                               "Negotiate abc", "bearer " + token[:-1]])
    if rng.random() < 0.5:
        headers["Accept"] = rng.choice(ACCEPTS)
    if rng.random() < 0.15:
        headers["X-Forwarded-For"] = rng.choice(["1.2.3.4", "evil", "::1, 10.0.0.1", "127.0.0.1", "x" * 300])
    if rng.random() < 0.1:
        headers["X-Forwarded-Host"] = rng.choice(["evil.org", "a@b", "x:99999", ""])
    if rng.random() < 0.1:
        headers["X-Forwarded-Prefix"] = rng.choice(["@evil.org", "//evil.org", "/p", "/../x", "%2f"])
    if rng.random() < 0.05:
        headers["X-Forwarded-Proto"] = rng.choice(["https", "gopher", ""])
    if rng.random() < 0.05:
        headers["Cookie"] = rng.choice(["cutout_session=" + secrets.token_urlsafe(30), "cutout_session=",
                                        "cutout_session=e30=.x.y", "a=b"])
    if rng.random() < 0.05:
        headers["Origin"] = rng.choice(["https://evil.org", "null"])
    body_mode = "query" if method in ("GET", "HEAD", "OPTIONS") else rng.choice(
        ["form", "form", "multipart", "query", "raw", "odd", "empty", "binary"])
    anonymous = "Authorization" not in headers
    # Anonymous calls come from many loopback addresses, as many clients would.
    addr = f"127.0.{rng.randint(1, 8)}.{rng.randint(2, 250)}" if anonymous and rng.random() < 0.8 else None
    return {"path": path, "method": method, "pairs": pairs, "headers": headers, "body": body_mode,
            "addr": addr, "ctype": rng.choice(CTYPES), "bytes": rng.randbytes(rng.randint(0, 2000))}


class Fuzzer:
    def __init__(self, base: str) -> None:
        self.base = base
        self.clients: dict[str | None, httpx.Client] = {}
        self.lock = threading.Lock()
        self.status = Counter()  # type: Counter[str]
        self.kinds = Counter()  # type: Counter[str]
        self.examples: dict[str, list[str]] = {"5xx": [], "unlabelled": [], "transport": []}
        self.where: dict[str, Counter[str]] = {"5xx": Counter(), "unlabelled": Counter()}

    def client_for(self, addr: str | None) -> httpx.Client:
        with self.lock:
            if addr not in self.clients:
                self.clients[addr] = client(addr, timeout=90, limits=httpx.Limits(max_keepalive_connections=8))
            return self.clients[addr]

    def send(self, spec: dict) -> None:  # type: ignore[type-arg]
        c = self.client_for(spec["addr"])
        url = self.base + spec["path"]
        pairs, method, headers = spec["pairs"], spec["method"], dict(spec["headers"])
        what = f"{method} {spec['path'][:80]} {spec['body']} {str(pairs)[:200]} {str(headers)[:160]}"
        try:
            body = spec["body"]
            if body == "query" or method in ("GET", "HEAD", "OPTIONS"):
                r = c.request(method, url, params=pairs, headers=headers)
            elif body == "form":
                r = c.request(method, url, content=str(httpx.QueryParams(pairs)).encode(),
                              headers={**headers, "Content-Type": "application/x-www-form-urlencoded"})
            elif body == "multipart":
                files = [(n, (None, v.encode())) for n, v in pairs] or [("x", (None, b""))]
                r = c.request(method, url, files=files, headers=headers)
            elif body == "raw":
                raw = "&".join(f"{quote(n)}={quote(v)}" for n, v in pairs).replace("%3D", "=", 1)
                r = c.request(method, url, content=raw.encode(), headers={**headers, "Content-Type": spec["ctype"]})
            elif body == "odd":
                r = c.request(method, url, content=str(httpx.QueryParams(pairs)).encode(),
                              headers={**headers, "Content-Type": spec["ctype"]})
            elif body == "binary":
                r = c.request(method, url, content=spec["bytes"], headers={**headers, "Content-Type": spec["ctype"]})
            else:
                r = c.request(method, url, headers=headers)
        except (httpx.LocalProtocolError, httpx.InvalidURL, UnicodeEncodeError, ValueError) as exc:
            with self.lock:
                self.kinds["not sent (client refused)"] += 1
            return
        except httpx.HTTPError as exc:
            with self.lock:
                self.kinds["transport"] += 1
                if len(self.examples["transport"]) < 5:
                    self.examples["transport"].append(f"{what} -> {type(exc).__name__}: {exc}")
            return
        k = kind(r, method)
        with self.lock:
            self.status[f"{r.status_code // 100}xx"] += 1
            self.kinds[k] += 1
            if k in ("5xx", "unlabelled"):
                self.where[k][f"{method} {self.template(spec['path'])}"] += 1
            if k in ("5xx", "unlabelled") and len(self.examples[k]) < 8:
                self.examples[k].append(f"{what} -> {r.status_code} {r.headers.get('content-type')}: {r.content[:200]!r}")

    @staticmethod
    def template(path: str) -> str:
        """The path with a well-formed job id replaced, so failures group by resource."""
        return re.sub(r"^/async/[A-Za-z0-9_-]{16}(?=/|$)", "/async/{job}", path)[:60]

    def close(self) -> None:
        for c in self.clients.values():
            c.close()


def phase_fuzz(cl: Cluster, t: Table, n: int, seed: int) -> None:
    log(f"a: fuzzing {n} requests")
    token, other = cl.token("fuzzer"), cl.token("fuzz-other")
    with client() as c:
        jobs = []
        for _ in range(3):
            r = c.post(cl.base + "/async", data={"ID": DID, "CIRCLE": CIRCLE}, headers=bearer(token))
            jobs.append(r.headers["location"].replace(cl.base, ""))
        r = c.post(cl.base + "/async", data={"ID": DID, "CIRCLE": CIRCLE, "PHASE": "RUN"}, headers=bearer(token))
        done = r.headers["location"]
        wait_jobs(c, [done], bearer(token), 60)
        jobs.append(done.replace(cl.base, ""))
        r = c.post(cl.base + "/async", data={"ID": DID, "CIRCLE": CIRCLE}, headers=bearer(other))
        jobs.append(r.headers["location"].replace(cl.base, ""))
    fz = Fuzzer(cl.base)
    t0 = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: fz.send(fuzz_request(i, seed, jobs, token, other)), range(n), chunksize=16))
    took = time.monotonic() - t0
    fz.close()
    alive = cl.server is not None and cl.server.alive() and all(w.alive() for w in cl.workers)
    sent = sum(fz.status.values())
    classes = " ".join(f"{k}={v}" for k, v in sorted(fz.status.items()))
    t.add("a fuzz", f"{n} requests in {took:.0f} s ({n / took:.0f}/s): {classes}; "
          f"labelled 503s={fz.kinds['busy']}, client-refused-to-send={fz.kinds['not sent (client refused)']}, "
          f"transport errors={fz.kinds['transport']}", None)
    def where(k: str) -> str:
        top = fz.where[k].most_common(6)
        if not top:
            return ""
        nul = sum(n for w, n in fz.where[k].items() if "%00" in w)
        resources = sorted({re.sub(r"/(results/)?[^/]*%00[^/]*", "/…%00", w.split(" ", 1)[1]) for w in fz.where[k]})
        return (f"; {nul} of them on a path with %00 (NUL); resources: {', '.join(resources)[:400]}; top: "
                + ", ".join(f"{w} x{n}" for w, n in top))
    t.add("a fuzz", f"unexpected 5xx: {fz.kinds['5xx']} of {sent}{where('5xx')}", fz.kinds["5xx"] == 0)
    t.add("a fuzz", f"unlabelled refusals: {fz.kinds['unlabelled']} of {sent}{where('unlabelled')}",
          fz.kinds["unlabelled"] == 0)
    t.add("a fuzz", f"server and workers still running: {alive}; transport errors {fz.kinds['transport']}",
          alive and fz.kinds["transport"] == 0)
    for k in ("5xx", "unlabelled", "transport"):
        for example in fz.examples[k]:
            log(f"   {k} example: {example}")


# --- b: the defects of the first run ---------------------------------------------------------

def db_size(cl: Cluster) -> int:
    return int(cl.pg.query("SELECT pg_database_size('postgres')")[0][0])


def phase_defects_early(cl: Cluster, t: Table) -> None:
    """Defects 1, 2, 4, 7, 9, 10 (those that need no restart nor outage)."""
    log("b: defects 1, 2, 4, 7, 9, 10")
    probe = cl.token("probe")
    auth = bearer(probe)
    # 1: anonymous disk filling: 100 creates with a 1 MB junk parameter, then a PENDING flood.
    before = db_size(cl)
    codes = Counter()  # type: Counter[int]
    junk = "j" * 1_000_000
    for i in range(100):
        with client(f"127.0.9.{i + 2}") as c:
            codes[c.post(cl.base + "/async", data={"ID": DID, "CIRCLE": CIRCLE, "JUNK": junk}).status_code] += 1
    grown = db_size(cl) - before
    t.add("b1 disk filling", f"100 anonymous creates with 1 MB JUNK: {dict(codes)}; database grew {grown} bytes",
          set(codes) <= {413, 429} and grown < 1_000_000)
    made, flood = [], Counter()  # type: list[str], Counter[int]
    before = db_size(cl)
    for i in range(40):
        with client(f"127.0.10.{i + 2}") as c:
            r = c.post(cl.base + "/async", data={"ID": DID, "CIRCLE": CIRCLE, "JUNK": "j" * 60_000})
            flood[r.status_code] += 1
            if r.status_code == 303:
                made.append(r.headers["location"])
    grown = db_size(cl) - before
    deleted = Counter()  # type: Counter[int]
    for i, url in enumerate(made):
        with client(f"127.0.11.{i + 2}") as c:
            deleted[c.delete(url).status_code] += 1
    t.add("b1 disk filling", f"40 anonymous PENDING creates with 60 kB JUNK: {dict(flood)} (limit "
          f"anonymous_max_unfinished_jobs); database grew {grown} bytes; deleted again: {dict(deleted)}",
          flood[303] <= 20 and grown < 2_000_000)
    # 2: 499 IDs x 499 CIRCLEs by a user, and 3 x 667 (2001) cutouts.
    with client() as c:
        r = c.post(cl.base + "/async", data={"ID": [DID] * 499,
                                             "CIRCLE": [f"{RA0} {DEC0} {0.001 + i * 1e-6:.6f}" for i in range(499)],
                                             "PHASE": "RUN"}, headers=auth)
        first = r.text.splitlines()[0][:120] if r.text else ""
        r2 = c.post(cl.base + "/async", data={"ID": [f"ivo://demo.cutout/des?{TILES[0]}_{b}" for b in BANDS],
                                              "CIRCLE": [f"{RA0} {DEC0 + i * 1e-5} 0.001" for i in range(667)],
                                              "PHASE": "RUN"}, headers=auth)
        listed = etree.fromstring(c.get(cl.base + "/async", headers=auth).content)
        n_jobs = len(listed.findall(UWS_NS + "jobref"))
    t.add("b2 result quota", f"499x499 create: {r.status_code} ({first!r}); 3x667 create: {r2.status_code}; "
          f"jobs made: {n_jobs} (running-quota stop not reproduced: user_quota_bytes is 10 GiB)",
          r.status_code == 400 and r2.status_code == 400 and n_jobs == 0)
    # 4: forwarded headers from an untrusted client.
    passed = Counter()  # type: Counter[int]
    with client("127.0.12.2") as c:
        for i in range(100):
            passed[c.get(cl.base + "/async", headers={"X-Forwarded-For": f"10.1.{i // 250}.{i % 250}"}).status_code] += 1
    ok_count = sum(v for k, v in passed.items() if k != 429)
    t.add("b4 forwarded", f"rotating X-Forwarded-For: {ok_count} of 100 passed ({dict(passed)}; "
          f"anonymous_rate_limit 60/window)", ok_count <= 60)
    with client() as c:
        r = c.post(cl.base + "/async", data={"ID": DID, "CIRCLE": CIRCLE},
                   headers={**auth, "X-Forwarded-Prefix": "@evil.org", "X-Forwarded-Host": "evil.org",
                            "X-Forwarded-Proto": "https"})
        loc = r.headers.get("location", "")
        if r.status_code == 303:
            c.delete(loc.replace("https://evil.org", cl.base) if loc.startswith("https://evil") else loc, headers=auth)
        o = c.get(cl.base + "/login/oidc", headers={"X-Forwarded-Host": "evil.org"})
    evil = "evil" in loc or "evil" in o.headers.get("location", "") or "evil" in o.text
    t.add("b4 forwarded", f"X-Forwarded-Prefix @evil.org + Host evil.org: {r.status_code} Location {loc[:70]!r}; "
          f"/login/oidc with X-Forwarded-Host: {o.status_code} (no OIDC configured), evil in it: {evil}", not evil)
    # 7: the inputs that gave 500s.
    png = {"ID": DID, "CIRCLE": f"{RA0} {DEC0} 0.01", "RESPONSEFORMAT": "image/png"}
    with client() as c:
        cases = [("SIZE=²", c.get(cl.base + "/sync", params={**png, "SIZE": "²"}, headers=auth)),
                 ("SIZE=4301 nines", c.get(cl.base + "/sync", params={**png, "SIZE": "9" * 4301}, headers=auth)),
                 ("RGB=default&Q=1e300", c.get(cl.base + "/sync", params={**png, "RGB": "default", "Q": "1e300"},
                                               headers=auth)),
                 ("GET /x%00 VOTable", c.get(cl.base + "/x%00", headers={"Accept": "application/x-votable+xml"}))]
    bad = [f"{n}->{r.status_code}" for n, r in cases if kind(r) != "refusal"]
    t.add("b7 500 inputs", ", ".join(f"{n}: {r.status_code} {'labelled' if labelled(r) else 'UNLABELLED'}"
                                     for n, r in cases), not bad)
    # 9: session replay after logout (a session row and its signed cookie, as a login makes them).
    from itsdangerous import TimestampSigner

    sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    cl.pg.query("INSERT INTO auth_session (id, user_id, method, id_token, csrf, created, expires, last_seen) "
                "VALUES (%s, %s, 'saml', NULL, %s, %s, %s, %s)",
                hashlib.sha256(sid.encode()).hexdigest(), "sessionuser", csrf, now, now + dt.timedelta(hours=1), now)
    signed = TimestampSigner(cl.session_secret).sign(base64.b64encode(json.dumps({"sid": sid}).encode()))
    cookie = {"Cookie": f"cutout_session={signed.decode()}"}
    with client() as c:
        before_ = c.get(cl.base + "/whoami", headers=cookie).json()
        out = c.post(cl.base + "/logout", data={"csrf_token": csrf}, headers=cookie)
        after = c.get(cl.base + "/whoami", headers=cookie).json()
        tok = c.post(cl.base + "/tokens", data={"csrf_token": csrf, "name": "x"}, headers=cookie)
    t.add("b9 session replay", f"before logout authenticated={before_.get('authenticated')}; logout {out.status_code}; "
          f"replayed cookie authenticated={after.get('authenticated')}; POST /tokens with it {tok.status_code}",
          bool(before_.get("authenticated")) and not after.get("authenticated") and tok.status_code in (401, 403))
    # 10: security headers, /metrics and /readyz for a client that is not an operator.
    with client("127.0.13.2") as c:
        home = c.get(cl.base + "/", headers={"Accept": "text/html"})
        err = c.get(cl.base + "/nope")
        metrics = c.get(cl.base + "/metrics")
        ready = c.get(cl.base + "/readyz")
    nosniff = all(r.headers.get("x-content-type-options") == "nosniff" for r in (home, err, metrics, ready))
    framing = bool(home.headers.get("x-frame-options")) or "frame-ancestors" in home.headers.get("content-security-policy", "")
    t.add("b10 headers", f"nosniff on /, 404, /metrics, /readyz: {nosniff}; / refuses framing: {framing}; "
          f"/metrics from a non-operator: {metrics.status_code}", nosniff and framing and metrics.status_code in (401, 403, 404))


def phase_defect_prefetch(cl: Cluster, t: Table) -> None:
    """3: jobs prefetched by a killed worker are sent again."""
    log("b: defect 3 (prefetched jobs of a killed worker)")
    auth = bearer(cl.token("prefetch"))
    rng = random.Random(3)
    with client() as c:
        urls = [c.post(cl.base + "/async", data={"ID": [IDS[0], IDS[1], IDS[2]], "CIRCLE": circles(3, rng, 0.006),
                                                 "PHASE": "RUN"}, headers=auth).headers["location"] for _ in range(12)]
        end = time.monotonic() + 30
        while time.monotonic() < end and "EXECUTING" not in [job_phase(c, u, auth) for u in urls]:
            time.sleep(0.1)
        at_kill = Counter(job_phase(c, u, auth) for u in urls)
        for w in cl.workers:
            w.kill()
        cl.workers.clear()
        t0 = time.monotonic()
        for _ in range(2):
            cl.start_worker()
        phases = wait_jobs(c, urls, auth, 120)
        took = time.monotonic() - t0
        done = sum(p == "COMPLETED" and results_ok(c, u, auth) for u, p in phases.items())
        for u in urls:
            c.delete(u, headers=auth)
    t.add("b3 prefetched", f"12 jobs, both workers SIGKILLed at {dict(at_kill)}: {done}/12 COMPLETED with results "
          f"{took:.1f} s after 2 new workers started", done == 12)


def phase_defect_connections(cl: Cluster, t: Table, quick: bool) -> None:
    """5: slow clients, huge bodies, WAIT floods."""
    log("b: defect 5 (idle sockets, 400 x 1 MB body, concurrent WAITs)")
    assert cl.server is not None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    n = min(2000, soft - 300)
    sockets = []
    try:
        for i in range(n):
            try:
                sockets.append(socket.create_connection(("127.0.0.1", cl.port), timeout=5))
            except OSError:
                break
        time.sleep(0.5)
        t0 = time.monotonic()
        try:
            r = httpx.get(cl.base + "/healthz", timeout=10)
            answer = f"{r.status_code} {r.text.strip()[:60]!r}"
            answered = r.status_code == 200 or kind(r) == "busy"
        except httpx.HTTPError as exc:
            answer, answered = f"{type(exc).__name__}", False
        took = time.monotonic() - t0
        # They are closed by the header timeout (request_header_timeout_seconds, 10 s).
        deadline = time.monotonic() + 16
        closed = 0
        for s in sockets[:: max(1, len(sockets) // 50)]:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            with contextlib.suppress(OSError):
                if s.recv(16) == b"":
                    closed += 1
        sample = len(sockets[:: max(1, len(sockets) // 50)])
    finally:
        for s in sockets:
            s.close()
    time.sleep(0.5)
    after = httpx.get(cl.base + "/healthz", timeout=10).status_code
    t.add("b5 idle sockets", f"{len(sockets)} idle sockets: /healthz answered {answer} in {took:.2f} s; "
          f"{closed}/{sample} sampled sockets closed by the server within 16 s; /healthz after: {after}",
          answered and took < 2 and closed == sample and after == 200)
    # 400 fields of 1 MB in one multipart body, streamed.
    rss0 = cl.server.rss_kb()
    boundary = "attackboundary"
    part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"JUNK\"\r\n\r\n").encode() + b"j" * 1_000_000 + b"\r\n"
    total = 400 * len(part) + len(f"--{boundary}--\r\n")
    sent, reply, peak = 0, b"", rss0
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", cl.port), timeout=30) as s:
        s.sendall((f"POST /async HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
                   f"Content-Length: {total}\r\n\r\n").encode())
        try:
            for i in range(400):
                s.sendall(part)
                sent += len(part)
                if i % 20 == 0:
                    peak = max(peak, cl.server.rss_kb())
            s.sendall(f"--{boundary}--\r\n".encode())
        except OSError:
            pass
        s.settimeout(30)
        with contextlib.suppress(OSError):
            while chunk := s.recv(65536):
                reply += chunk
                if b"\r\n\r\n" in reply:
                    break
    peak = max(peak, cl.server.rss_kb())
    status = reply.split(b" ", 2)[1].decode() if reply.startswith(b"HTTP/") else "no answer"
    t.add("b5 huge body", f"400 x 1 MB multipart body: {status} after {sent / 1e6:.0f} MB sent in "
          f"{time.monotonic() - t0:.1f} s; server RSS {rss0 // 1024} -> peak {peak // 1024} MB",
          status == "413" and peak - rss0 < 200_000)
    # Concurrent WAITs on a PENDING job of one user.
    auth = bearer(cl.token("waiter"))
    with client() as c:
        job = c.post(cl.base + "/async", data={"ID": DID, "CIRCLE": CIRCLE}, headers=auth).headers["location"]
    count = 1000 if quick else 4000

    async def flood() -> tuple[list[tuple[int | str, float, bool]], int, list[float], float]:
        """Every WAIT=60 at once; once the answers stop coming, the ones still open are
        the WAITs the server holds: they are counted, then released by aborting the job."""
        limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=90, limits=limits) as ac, \
                httpx.AsyncClient(timeout=30) as probe:
            async def one() -> tuple[int | str, float, bool]:
                t1 = time.monotonic()
                try:
                    r = await ac.get(job, params={"WAIT": "60"}, headers=auth)
                    return r.status_code, time.monotonic() - t1, kind(r) in ("ok", "busy", "refusal")
                except httpx.HTTPError as exc:
                    return type(exc).__name__, time.monotonic() - t1, False
            tasks = [asyncio.create_task(one()) for _ in range(count)]
            health: list[float] = []
            last, stable_since = -1, time.monotonic()
            while True:
                await asyncio.sleep(0.5)
                h0 = time.monotonic()
                with contextlib.suppress(httpx.HTTPError):
                    await probe.get(cl.base + "/healthz")
                health.append(time.monotonic() - h0)
                open_ = sum(not t.done() for t in tasks)
                if open_ != last:
                    last, stable_since = open_, time.monotonic()
                elif time.monotonic() - stable_since > 4 or open_ == 0:
                    break
            held = open_
            released_at = time.monotonic()
            await probe.post(job + "/phase", data={"PHASE": "ABORT"}, headers=auth)
            got = await asyncio.gather(*tasks)
            return got, held, health, time.monotonic() - released_at

    t0 = time.monotonic()
    got, held, health, release = asyncio.run(flood())
    took = time.monotonic() - t0
    statuses = Counter(s for s, _, _ in got)
    fives = sum(1 for s, _, ok in got if isinstance(s, int) and s >= 500 and not ok)
    errors = sum(1 for s, _, _ in got if isinstance(s, str))
    with client() as c:
        c.delete(job, headers=auth)
        h = c.get(cl.base + "/healthz", timeout=5).status_code
    t.add("b5 WAIT flood", f"{count} concurrent WAIT=60 by one user on a PENDING job: {dict(statuses)}; "
          f"held by the server: {held} (wait_max_per_caller 8), answered {release:.1f} s after an ABORT; "
          f"unlabelled 5xx {fives}; transport errors {errors}; all done in {took:.1f} s; /healthz after {h}",
          fives == 0 and errors == 0 and held <= 8 and h == 200)
    t.add("b5 WAIT flood", f"/healthz while those {count} requests were queued: median "
          f"{statistics.median(health):.2f} s, max {max(health):.2f} s (load average {loadavg()})", None)


def phase_defect_broker_outage_create(cl: Cluster, t: Table) -> None:
    """6: a create during a broker outage leaves no job; 10: /readyz leaks no address."""
    log("b: defect 6 (create during a broker outage) and 10 (/readyz)")
    auth = bearer(cl.token("outage-create"))
    cl.redis.stop()
    try:
        time.sleep(1)
        codes, located = Counter(), 0  # type: Counter[int], int
        with client() as c:
            for _ in range(5):
                r = c.post(cl.base + "/async", data={"ID": DID, "CIRCLE": CIRCLE, "PHASE": "RUN"}, headers=auth)
                codes[f"{r.status_code}{'' if labelled(r) else ' unlabelled'}"] += 1  # type: ignore[index]
                located += "location" in r.headers
        with client("127.0.14.2") as c:
            ready = c.get(cl.base + "/readyz")
            avail = c.get(cl.base + "/availability")
        leaks = [w for w in (f":{cl.redis.port}", "redis://", "127.0.0.1", "Connection refused", "Errno")
                 if w in ready.text + avail.text]
    finally:
        cl.redis.start()
    time.sleep(1)
    with client() as c:
        listed = etree.fromstring(c.get(cl.base + "/async", headers=auth).content)
    n = len(listed.findall(UWS_NS + "jobref"))
    t.add("b6 broker outage", f"5 create+RUN with Redis stopped: {dict(codes)}, {located} with Location; "
          f"jobs left: {n}", n == 0 and located == 0 and all(k.startswith("503") and "unlabelled" not in k for k in codes))
    t.add("b10 readyz", f"with Redis down, a non-operator sees /readyz {ready.status_code} "
          f"{ready.text.strip()[:60]!r}; address words leaked: {leaks or 'none'}", not leaks)
    for w in list(cl.workers):
        if not w.alive():
            log("   a worker exited during the Redis outage; replaced")
            cl.workers.remove(w)
            cl.start_worker()


def phase_defect_sigterm(cl: Cluster, t: Table) -> None:
    """8: SIGTERM during a WAIT answers the job document, not a 500."""
    log("b: defect 8 (SIGTERM during WAIT)")
    assert cl.server is not None
    auth = bearer(cl.token("sigterm"))
    with client() as c:
        job = c.post(cl.base + "/async", data={"ID": DID, "CIRCLE": CIRCLE}, headers=auth).headers["location"]
    with ThreadPoolExecutor(1) as pool:
        fut = pool.submit(lambda: httpx.get(job, params={"WAIT": "60"}, headers=auth, timeout=60))
        time.sleep(1.5)
        t0 = time.monotonic()
        cl.server.signal(signal.SIGTERM)
        try:
            r = fut.result(timeout=60)
            answer = f"{r.status_code} {'UWS job' if query_status(r.content) == 'UWS' else r.text[:60]!r}"
            ok = r.status_code == 200 and query_status(r.content) == "UWS"
        except Exception as exc:  # noqa: BLE001
            answer, ok = type(exc).__name__, False
        took = time.monotonic() - t0
    cl.server.popen.wait(timeout=30)
    cl.server.stop()
    cl.start_server()
    t.add("b8 SIGTERM+WAIT", f"WAIT=60 answered {answer} {took:.2f} s after SIGTERM; server restarted", ok and took < 5)


# --- c: worker kills -------------------------------------------------------------------------

def phase_kills(cl: Cluster, t: Table, trials: int, seed: int) -> None:
    log(f"c: {trials} worker-kill trials")
    auth = bearer(cl.token("killer"))
    rng = random.Random(seed + 7)
    survived, lost, total, recoveries = 0, 0, 0, []
    with client() as c:
        for trial in range(trials):
            urls = []
            for _ in range(rng.randint(2, 4)):
                r = c.post(cl.base + "/async", data={"ID": [IDS[0], IDS[1], IDS[2]],
                                                     "CIRCLE": circles(rng.randint(2, 5), rng, 0.006),
                                                     "PHASE": "RUN"}, headers=auth)
                urls.append(r.headers["location"])
            total += len(urls)
            end = time.monotonic() + 30
            while time.monotonic() < end and "EXECUTING" not in [job_phase(c, u, auth) for u in urls]:
                time.sleep(0.05)
            time.sleep(rng.uniform(0, 0.8))
            victim = rng.choice(cl.workers)
            at_kill = Counter(job_phase(c, u, auth) for u in urls)
            victim.kill()
            cl.workers.remove(victim)
            t0 = time.monotonic()
            cl.start_worker()
            phases = wait_jobs(c, urls, auth, 90)
            recoveries.append(time.monotonic() - t0)
            good = [u for u, p in phases.items() if p == "COMPLETED" and results_ok(c, u, auth)]
            lost += len(urls) - len(good)
            survived += len(good) == len(urls)
            if len(good) != len(urls):
                log(f"   trial {trial + 1}: killed at {dict(at_kill)}, phases {Counter(phases.values())}")
            for u in urls:
                c.delete(u, headers=auth)
    t.add("c worker kills", f"trials survived {survived}/{trials}; jobs {total}, lost {lost}; all done "
          f"{min(recoveries):.1f}-{max(recoveries):.1f} s (median {statistics.median(recoveries):.1f}) after the kill",
          survived == trials and lost == 0)


# --- d: load ---------------------------------------------------------------------------------

def phase_load(cl: Cluster, t: Table, seconds: float, seed: int) -> None:
    log(f"d: 20 clients for {seconds:.0f} s")
    auth = bearer(cl.token("loader"))
    stats: list[tuple[int | str, float, str]] = []
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def worker(k: int) -> None:
        rng = random.Random(seed * 100 + k)
        with client(timeout=60) as c:
            while time.monotonic() < end:
                t0 = time.monotonic()
                try:
                    r = c.get(cl.base + "/sync", params={"ID": rng.choice(IDS), "CIRCLE": region_circle(rng)},
                              headers=auth)
                    item = (r.status_code, time.monotonic() - t0, kind(r))
                except httpx.HTTPError as exc:
                    item = (type(exc).__name__, time.monotonic() - t0, "transport")
                with lock:
                    stats.append(item)

    with ThreadPoolExecutor(20) as pool:
        list(pool.map(worker, range(20)))
    lat = sorted(d for _, d, _ in stats)
    codes = Counter(s for s, _, _ in stats)
    bad = sum(1 for _, _, k in stats if k in ("5xx", "transport", "unlabelled"))
    p95 = lat[int(0.95 * (len(lat) - 1))]
    t.add("d load", f"{len(stats)} /sync in {seconds:.0f} s ({len(stats) / seconds:.0f}/s): {dict(codes)}; "
          f"latency min {lat[0] * 1000:.0f} / median {statistics.median(lat) * 1000:.0f} / p95 {p95 * 1000:.0f} / "
          f"max {lat[-1] * 1000:.0f} ms; 5xx/unlabelled/transport {bad}", bad == 0)


def region_circle(rng: random.Random) -> str:
    ra, dec = CENTRES[0]
    return f"{ra + rng.uniform(-0.02, 0.02):.6f} {dec + rng.uniform(-0.02, 0.02):.6f} 0.002"


# --- e: cross-user ---------------------------------------------------------------------------

def phase_cross_user(cl: Cluster, t: Table) -> None:
    log("e: cross-user attempts")
    alice, bob = bearer(cl.token("alice")), bearer(cl.token("bob"))
    with client() as c:
        done = c.post(cl.base + "/async", data={"ID": DID, "CIRCLE": [CIRCLE, f"{RA0} {DEC0} 0.003"], "PHASE": "RUN"},
                      headers=alice).headers["location"]
        pending = c.post(cl.base + "/async", data={"ID": DID, "CIRCLE": CIRCLE}, headers=alice).headers["location"]
        wait_jobs(c, [done], alice, 60)
        refs = [e.get("{http://www.w3.org/1999/xlink}href")
                for e in etree.fromstring(c.get(done + "/results", headers=alice).content).iter(UWS_NS + "result")]
        before = {u: (job_phase(c, u, alice), c.get(u + "/parameters", headers=alice).text,
                      c.get(u + "/destruction", headers=alice).text) for u in (done, pending)}
    attempts: list[tuple[str, str, dict[str, str], dict[str, str] | None]] = []
    for job in (done, pending):
        for sub, methods in [("", ["GET", "HEAD", "POST", "DELETE", "PUT"]), ("/phase", ["GET", "POST"]),
                             ("/executionduration", ["GET", "POST"]), ("/destruction", ["GET", "POST"]),
                             ("/quote", ["GET"]), ("/error", ["GET"]), ("/results", ["GET"]),
                             ("/parameters", ["GET", "POST"]), ("/owner", ["GET"])]:
            for m in methods:
                forms = [None] if m != "POST" else [{"PHASE": "RUN"}, {"PHASE": "ABORT"}, {"ACTION": "DELETE"},
                                                    {"EXECUTIONDURATION": "1"},
                                                    {"DESTRUCTION": "2000-01-01T00:00:00Z"}, {"CIRCLE": "0 0 1"}]
                for form in forms:
                    attempts.append((m, job + sub, {}, form))
        for m in ("GET", "HEAD"):
            for ref in refs + [f"{job}/results/0", f"{job}/results/x"]:
                attempts.append((m, ref, {}, None))
    succeeded, codes, n = [], Counter(), 0  # type: list[str], Counter[str], int
    for who, headers in [("bob", bob), ("anonymous", None)]:
        for i, (m, url, _, form) in enumerate(attempts):
            addr = f"127.0.15.{(i // 40) + 2}" if headers is None else None  # under the rate limit
            with client(addr) as c:
                r = c.request(m, url, headers=headers or {}, data=form)
            n += 1
            codes[f"{who}:{r.status_code}"] += 1
            if r.status_code < 400:
                succeeded.append(f"{who} {m} {url.replace(cl.base, '')} {form} -> {r.status_code}")
    with client() as c:
        listed = c.get(cl.base + "/async", headers=bob).text
        seen = [u for u in (done, pending) if u.rsplit("/", 1)[1] in listed]
        after = {u: (job_phase(c, u, alice), c.get(u + "/parameters", headers=alice).text,
                     c.get(u + "/destruction", headers=alice).text) for u in (done, pending)}
        results_kept = all(c.get(ref, headers=alice).status_code == 200 for ref in refs)
    changed = [u for u in after if after[u] != before[u]]
    t.add("e cross-user", f"{n} attempts by bob and anonymous callers on alice's 2 jobs and {len(refs)} results: "
          f"{len(succeeded)} succeeded; codes {dict(sorted(codes.items()))}; alice's jobs in bob's list: {len(seen)}; "
          f"alice's jobs changed: {len(changed)}; her results still served: {results_kept}",
          not succeeded and not seen and not changed and results_kept and n >= 150)
    for s in succeeded[:10]:
        log(f"   access: {s}")


# --- f: broker and database outages ----------------------------------------------------------

class Traffic:
    """Job creates, job reads, /sync and /availability from a few threads; every answer timed."""

    def __init__(self, cl: Cluster, token: str) -> None:
        self.cl, self.auth = cl, bearer(token)
        self.stop_at = 0.0
        self.records: list[tuple[float, float, str, int | str, str]] = []  # start, took, what, status, kind
        self.created: list[str] = []
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def run(self) -> None:
        self.running = True
        for k in range(4):
            th = threading.Thread(target=self._loop, args=(k,), daemon=True)
            th.start()
            self.threads.append(th)
        th = threading.Thread(target=self._ticker, daemon=True)
        th.start()
        self.threads.append(th)

    def _ticker(self) -> None:
        """A new caller every second (GET /whoami with a token: one database read), each in
        its own thread, so a hung request never holds back the next one."""
        while self.running:
            th = threading.Thread(target=self._probe, daemon=True)
            th.start()
            self.threads.append(th)
            time.sleep(1)

    def _probe(self) -> None:
        t0 = time.monotonic()
        try:
            with client(timeout=90) as c:
                r = c.get(self.cl.base + "/whoami", headers=self.auth)
            item = (t0, time.monotonic() - t0, "probe", r.status_code, kind(r))
        except httpx.HTTPError as exc:
            item = (t0, time.monotonic() - t0, "probe", type(exc).__name__, "transport")
        with self.lock:
            self.records.append(item)

    def _loop(self, k: int) -> None:
        rng = random.Random(k)
        with client(timeout=90) as c:
            while self.running:
                what = ["create", "sync", "read", "availability"][k] if rng.random() < 0.7 else rng.choice(
                    ["sync", "read", "availability"])
                t0 = time.monotonic()
                try:
                    if what == "create":
                        r = c.post(self.cl.base + "/async", data={"ID": DID, "CIRCLE": region_circle(rng), "PHASE": "RUN"},
                                   headers=self.auth)
                        if r.status_code == 303:
                            with self.lock:
                                self.created.append(r.headers["location"])
                    elif what == "sync":
                        r = c.get(self.cl.base + "/sync", params={"ID": DID, "CIRCLE": region_circle(rng)}, headers=self.auth)
                    elif what == "read":
                        with self.lock:
                            some = rng.choice(self.created) if self.created else self.cl.base + "/async"
                        r = c.get(some, headers=self.auth)
                    else:
                        r = c.get(self.cl.base + "/availability")
                    item = (t0, time.monotonic() - t0, what, r.status_code, kind(r))
                except httpx.HTTPError as exc:
                    item = (t0, time.monotonic() - t0, what, type(exc).__name__, "transport")
                with self.lock:
                    self.records.append(item)
                time.sleep(0.4 if what == "create" else 0.05)

    def stop(self) -> None:
        self.running = False
        for th in self.threads:
            th.join(timeout=120)


def outage(cl: Cluster, t: Table, name: str, user: str, action, restore) -> float:  # type: ignore[no-untyped-def]
    traffic = Traffic(cl, cl.token(user))
    traffic.run()
    time.sleep(3)
    t_out = time.monotonic()
    action()
    time.sleep(10)
    restore()
    t_back = time.monotonic()
    time.sleep(6)
    traffic.stop()
    for w in list(cl.workers):
        if not w.alive():
            log(f"   a worker exited during the {name}; replaced")
            cl.workers.remove(w)
            cl.start_worker()
    during = [r for r in traffic.records if t_out <= r[0] < t_back]
    kinds = Counter(r[4] for r in traffic.records)
    codes = Counter(str(r[3]) for r in during)
    longest = max((r[1] for r in during), default=0.0)
    probes = [r for r in during if r[2] == "probe"]
    probe_text = (f"; new callers every 1 s: {len(probes)}, answered {dict(Counter(str(r[3]) for r in probes))}, "
                  f"median {statistics.median([r[1] for r in probes]):.1f} s, max {max(r[1] for r in probes):.1f} s"
                  if probes else "")
    slowest = max(during, key=lambda r: r[1], default=None)
    with client(timeout=60) as c:
        phases = wait_jobs(c, traffic.created, traffic.auth, 120)
        lost = [u for u, p in phases.items() if p != "COMPLETED"]
        listed = etree.fromstring(c.get(cl.base + "/async", headers=traffic.auth).content)
        stored = len(listed.findall(UWS_NS + "jobref"))
        for u in traffic.created:
            c.delete(u, headers=traffic.auth)
    bad = kinds["5xx"] + kinds["unlabelled"]
    t.add(f"f {name}", f"{len(traffic.records)} requests ({len(during)} during the outage: {dict(codes)}); "
          f"labelled 503 {kinds['busy']}, unlabelled 5xx/4xx {bad}, transport errors {kinds['transport']}",
          bad == 0)
    t.add(f"f {name}", f"longest request during it {longest:.1f} s"
          + (f" ({slowest[2]} -> {slowest[3]})" if slowest else "") + probe_text, None)
    t.add(f"f {name}", f"jobs created {len(traffic.created)}, listed {stored}, lost after recovery {len(lost)} "
          f"({dict(Counter(phases[u] for u in lost))})", not lost and stored == len(traffic.created))
    return longest


def phase_outages(cl: Cluster, t: Table) -> float:
    log("f: Redis stopped 10 s during traffic")
    outage(cl, t, "Redis stopped", "outage-redis", cl.redis.stop, cl.redis.start)
    log("f: PostgreSQL frozen (SIGSTOP) 10 s during traffic")
    return outage(cl, t, "PG frozen", "outage-pg", cl.pg.freeze, cl.pg.thaw)


# --- main ------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3,000 fuzzed requests, 5 kill trials, 15 s of load")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    ap.add_argument("--phases", default="abcdef", help="run only these phases (letters; default: all)")
    args = ap.parse_args()
    run = set(args.phases)
    n_fuzz, trials, load_s = (3000, 5, 15.0) if args.quick else (24000, 20, 60.0)
    started = time.monotonic()
    load_before = loadavg()
    log(f"load average before: {load_before} ({os.cpu_count()} cores)")
    tmp = Path(tempfile.mkdtemp(prefix="cutout-attack-"))
    cl = Cluster(tmp)
    table = Table()
    try:
        cl.start()
        limits = cl.limits()
        log(f"services up: server {cl.base}, 2 workers, redis :{cl.redis.port}, postgres :{cl.pg.port}")
        if "b" in run:  # before the fuzz: it fills the anonymous job allowance
            phase_defects_early(cl, table)
        if "a" in run:
            phase_fuzz(cl, table, n_fuzz, args.seed)
        if "b" in run:
            phase_defect_prefetch(cl, table)
            phase_defect_connections(cl, table, args.quick)
            phase_defect_broker_outage_create(cl, table)
            phase_defect_sigterm(cl, table)
        if "c" in run:
            phase_kills(cl, table, trials, args.seed)
        if "d" in run:
            phase_load(cl, table, load_s, args.seed)
        if "e" in run:
            phase_cross_user(cl, table)
        if "f" in run:
            longest = phase_outages(cl, table)
            table.add("b11 frozen PG", f"longest request while PostgreSQL was frozen 10 s: {longest:.1f} s "
                      f"(must be < connect timeout + 2 s; see f; "
                      f"database_connect_timeout_seconds {limits.get('database_connect_timeout_seconds')}, "
                      f"database_statement_timeout_seconds {limits.get('database_statement_timeout_seconds')})",
                      longest < int(limits.get("database_connect_timeout_seconds", "5")) + 2)
        alive = cl.server is not None and cl.server.alive()
        table.add("end", f"server process alive at the end: {alive}", alive)
    except BaseException as exc:
        table.add("abort", f"the run stopped: {type(exc).__name__}: {exc}", False)
        if not isinstance(exc, Exception):
            raise
    finally:
        cl.stop()
        if args.keep:
            log(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(f"attack.py {'--quick ' if args.quick else ''}--seed {args.seed}: {time.monotonic() - started:.0f} s; "
          f"shipped defaults for every limit; timings shortened: {TIMINGS}")
    table.print()
    print("limits in force:")
    for name in LIMIT_NAMES:
        if name in limits:
            print(f"  {name} = {limits[name]}")
    print(f"load average before: {load_before}; after: {loadavg()} ({os.cpu_count()} cores)")
    if table.failures:
        print(f"{len(table.failures)} invariant(s) failed:")
        for f in table.failures:
            print(f"  - {f}")
        return 1
    print("every invariant holds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
