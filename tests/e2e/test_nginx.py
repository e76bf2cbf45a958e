"""Acceptance of the production shape: real nginx (nginx/cutout.conf) in front of two
`cutout serve` processes and `cutout worker` processes, with PostgreSQL and Redis.

- a sync cutout, an async job (create → RUN → WAIT → download), /links and /capabilities
  through nginx, every absolute URL pointing at nginx's address;
- result files sent by nginx (X-Accel-Redirect), not streamed by Python;
- /metrics refused outside the internal networks; request limits; gzip never on FITS;
- a worker killed with SIGKILL mid-job: the job completes on a new worker;
- Redis restarted (a throwaway redis-server) while jobs are queued and executing: every
  job completes with all its results, and a job submitted afterwards too, no restart;
- the scheduled sweep destroys a job with a short destruction time, with its files;
- docker-compose.yml parses and matches the template's placeholders.

nginx's worker processes run as an unprivileged user other than the service's (as in
the compose file, where nginx and the service are different containers and users), so
the shared data directory lives in a world-traversable temporary directory.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import grp
import io
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from lxml import etree

from conftest import (
    ROOT,
    Proc,
    ThrowawayRedis,
    assert_uws,
    assert_votable,
    base_env,
    eventually,
    free_port,
    fresh_database,
    require,
    start_server,
    start_worker,
    uws_text,
)

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.postgres]

TEMPLATE = ROOT / "nginx" / "cutout.conf"
COMPOSE = ROOT / "docker-compose.yml"
PLACEHOLDER = re.compile(r"\$\{(CUTOUT_[A-Z0-9_]+)\}")
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
UWS_NS = {"uws": "http://www.ivoa.net/xml/UWS/v1.0"}
FINAL = {"COMPLETED", "ERROR", "ABORTED"}

TILE = "DES0139-4457"
DID = f"ivo://demo.cutout/des?{TILE}_r"


# --- the template ------------------------------------------------------------------------

def render(values: dict[str, str]) -> str:
    """Fill in the ${CUTOUT_*} placeholders as envsubst does; nginx's $variables stay."""
    text = TEMPLATE.read_text()
    missing = set(PLACEHOLDER.findall(text)) - set(values)
    assert not missing, f"no value for the placeholders {sorted(missing)} of {TEMPLATE}"
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)
    require("nginx", None if found else "not on PATH nor in /usr/sbin (apt-get install -y nginx)")
    assert found is not None
    return found


def mime_types(binary: str) -> str:
    """The mime.types file next to this nginx's own nginx.conf (nginx -V: --conf-path)."""
    built = subprocess.run([binary, "-V"], capture_output=True, text=True, timeout=10).stderr
    conf_path = re.search(r"--conf-path=(\S+)", built)
    candidate = Path(conf_path.group(1)).parent / "mime.types" if conf_path else None
    return str(candidate) if candidate and candidate.exists() else "/etc/nginx/mime.types"


def _worker_user() -> str:
    """nginx's `user` line: as root, an unprivileged user other than the service's."""
    if os.geteuid() != 0:
        return ""  # nginx's workers run as we do
    nobody = pwd.getpwnam("nobody")
    return f"user nobody {grp.getgrgid(nobody.pw_gid).gr_name};"


class Nginx:
    """nginx in the foreground with its own prefix, pid, logs and temp dirs."""

    def __init__(self, binary: str, prefix: Path, upstreams: list[str], results_dir: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.prefix = prefix
        prefix.mkdir(parents=True)
        (prefix / "logs").mkdir()
        self.error_log = prefix / "logs" / "error.log"
        self.access_log = prefix / "logs" / "access.log"
        (prefix / "cutout.conf").write_text(render({
            "CUTOUT_LISTEN": f"127.0.0.1:{self.port}",
            "CUTOUT_SERVER_NAME": "_",
            "CUTOUT_UPSTREAMS": " ".join(f"server {urlsplit(u).netloc};" for u in upstreams),
            "CUTOUT_RESULTS_DIR": str(results_dir),
        }))
        # The http{} around the template, as /etc/nginx/nginx.conf of the official image is.
        self.conf = prefix / "nginx.conf"
        self.conf.write_text(f"""
{_worker_user()}
worker_processes 2;
pid {prefix}/nginx.pid;
error_log {self.error_log} info;
events {{ worker_connections 512; }}
http {{
    include {mime_types(binary)};
    default_type application/octet-stream;
    sendfile on;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    log_format probe '$remote_addr|$request_method|$request_uri|$status|$body_bytes_sent|'
                     '$upstream_addr|$upstream_response_length';
    access_log {self.access_log} probe;
    include {prefix}/cutout.conf;
}}
""")
        command = [binary, "-p", str(prefix), "-e", str(self.error_log), "-c", str(self.conf)]
        check = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, f"nginx -t failed:\n{check.stderr}\n{self.rendered()}"
        self.log = prefix / "nginx.out"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([*command, "-g", "daemon off;"], stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        end = time.monotonic() + 15
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + "/", timeout=2).status_code == 200:
                    return
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"nginx did not start:\n{self.log.read_text()}\n{self.errors()}")

    def rendered(self) -> str:
        return (self.prefix / "cutout.conf").read_text()

    def errors(self) -> str:
        return self.error_log.read_text(errors="replace")[-4000:] if self.error_log.exists() else ""

    def access(self) -> list[dict[str, str]]:
        names = ("client", "method", "uri", "status", "bytes", "upstream", "upstream_length")
        lines = self.access_log.read_text().splitlines() if self.access_log.exists() else []
        return [dict(zip(names, line.split("|"), strict=True)) for line in lines]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: finish the requests in flight
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


# --- the cluster ----------------------------------------------------------------------------

@contextlib.contextmanager
def shared_root() -> Iterator[Path]:
    """A directory nginx's unprivileged workers can traverse (pytest's tmp is 0700)."""
    root = Path(tempfile.mkdtemp(prefix="cutout-nginx-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


class Cluster:
    """nginx → web processes (one data dir, one database) ← Redis → worker processes."""

    def __init__(self, root: Path, demo: Path, database_url: str, broker_url: str,
                 webs: int = 2, workers: int = 1, keep_logs: Path | None = None) -> None:
        self.root = root
        self.keep_logs = keep_logs
        self.data = root / "data"
        self.results = self.data / "results"
        self.env = base_env(
            self.data, demo,
            CUTOUT_DATABASE_URL=database_url,
            CUTOUT_BROKER_URL=broker_url,
            CUTOUT_REDIS_NAMESPACE=f"cutout-nginx-{uuid.uuid4().hex[:8]}",
            CUTOUT_ACCEL_REDIRECT_PREFIX="/_results",
            CUTOUT_TRUSTED_PROXIES="127.0.0.1",  # nginx: its forwarded headers count, no one else's
            # requeue_after_seconds keeps its 600 s default: lost messages must be found by
            # comparing what Redis holds with the active jobs, not by waiting that long.
        )
        self.webs: list[tuple[Proc, str]] = []
        self.workers: list[Proc] = []
        self.nginx: Nginx | None = None
        self.logs = 0
        try:
            for i in range(webs):
                self.webs.append(start_server(self.env, root / f"web-{i + 1}.log"))
            for _ in range(workers):
                self.add_worker()
            self.nginx = Nginx(nginx_binary(), root / "nginx", [b for _, b in self.webs], self.results)
        except BaseException:
            self.stop()
            raise
        self.base = self.nginx.base

    @property
    def web_bases(self) -> list[str]:
        return [b for _, b in self.webs]

    def add_worker(self) -> Proc:
        self.logs += 1
        worker = start_worker(self.env, self.root / f"worker-{self.logs}.log")
        self.workers.append(worker)
        return worker

    def kill_workers(self) -> None:
        for worker in self.workers:
            worker.kill()
            worker.stop()  # closes its log
        self.workers.clear()

    def output(self) -> str:
        logs = [*sorted(self.root.glob("*.log")), *sorted((self.root / "nginx" / "logs").glob("error.log"))]
        return "".join(f"\n===== {p.name}\n" + p.read_text(errors="replace")[-6000:] for p in logs)

    def assert_all_running(self) -> None:
        for proc in [p for p, _ in self.webs] + self.workers:
            assert proc.popen.poll() is None, f"{proc.args} exited:\n{proc.output()[-3000:]}"
        assert self.nginx is not None and self.nginx.proc.poll() is None, self.nginx.errors()

    def stop(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        for worker in self.workers:
            worker.stop()
        for proc, _ in self.webs:
            proc.stop()
        if self.keep_logs is not None:  # the shared root is removed; the logs stay for a post-mortem
            self.keep_logs.mkdir(parents=True, exist_ok=True)
            for log in [*self.root.glob("*.log"), *(self.root / "nginx" / "logs").glob("*.log")]:
                shutil.copy(log, self.keep_logs / log.name)


@pytest.fixture(scope="module")
def cluster(postgres_url: str, redis_url: str, demo_root: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    nginx_binary()  # fail (CI) or skip before starting anything
    with shared_root() as root, fresh_database("cutout_nginx") as database:
        c = Cluster(root, demo_root, database, redis_url, webs=2, workers=1,
                    keep_logs=tmp_path_factory.mktemp("nginx-cluster-logs"))
        try:
            yield c
        finally:
            c.stop()


# --- HTTP helpers ---------------------------------------------------------------------------

def client() -> httpx.Client:
    return httpx.Client(timeout=30, follow_redirects=False)


def assert_at(base: str, urls: list[str], what: str) -> None:
    assert urls, f"no URLs in {what}"
    wrong = [u for u in urls if not u.startswith(base + "/")]
    assert not wrong, f"{what}: URLs not at nginx ({base}): {wrong}"


def assert_no_upstream_address(cluster: Cluster, response: httpx.Response) -> None:
    """Neither the headers nor the body name a web process (its port)."""
    text = response.text if "fits" not in response.headers.get("content-type", "") else ""
    blob = text + "\n" + "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    for web in cluster.web_bases:
        netloc = urlsplit(web).netloc
        assert netloc not in blob, f"{response.request.url} names the web process {netloc}:\n{blob[:2000]}"


def create_job(cluster: Cluster, path: str, data: dict[str, str] | list[tuple[str, str]]) -> str:
    with client() as c:
        r = c.post(cluster.base + path, data=data)
    assert r.status_code == 303, f"{r.status_code} {r.text}\n{cluster.output()}"
    location = r.headers["location"]
    assert_at(cluster.base, [location], f"Location of POST {path}")
    return location


def job_doc(url: str, **query: str) -> etree._Element:
    with client() as c:
        r = c.get(url, params=query, timeout=90)
    assert r.status_code == 200, r.text
    return assert_uws(r.content)


def hrefs(doc: etree._Element) -> list[str]:
    return [e.get(XLINK_HREF) for e in doc.iter() if e.get(XLINK_HREF) is not None]


def wait_final(url: str, timeout: float, cluster: Cluster) -> etree._Element:
    """WAIT (through nginx) until the job is COMPLETED, ERROR or ABORTED."""
    end = time.monotonic() + timeout
    doc = job_doc(url)
    while uws_text(doc, "uws:phase") not in FINAL:
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{url} still {uws_text(doc, 'uws:phase')} after {timeout} s\n"
                                 f"{cluster.output()}")
        doc = job_doc(url, WAIT=str(max(1, min(10, int(left)))))
    return doc


def results(doc: etree._Element) -> list[tuple[str, str]]:
    return [(r.get("id"), r.get(XLINK_HREF)) for r in doc.findall("uws:results/uws:result", UWS_NS)]


def result_file(cluster: Cluster, job_url: str, result_id: str) -> Path:
    return cluster.results / "jobs" / job_url.rsplit("/", 1)[1] / result_id


def assert_readable_by_others(path: Path) -> None:
    """nginx runs as another user than the service (another container): it must read results."""
    mode = path.stat().st_mode & 0o777
    assert mode & 0o004, (f"{path} has mode {mode:o}: nginx, running as another user, cannot read "
                          f"it and answers 403 (storage.LocalStore writes results 0600)")


def download(cluster: Cluster, href: str) -> httpx.Response:
    with client() as c:
        r = c.get(href)
    assert r.status_code == 200, (f"GET {href} through nginx: {r.status_code} {r.text[:300]}\n"
                                  f"nginx error log:\n{cluster.nginx.errors() if cluster.nginx else ''}")
    return r


def access_entry(cluster: Cluster, uri: str) -> dict[str, str]:
    assert cluster.nginx is not None
    return eventually(lambda: next((e for e in reversed(cluster.nginx.access()) if e["uri"] == uri), None),
                      timeout=5)


# --- through nginx: every service, every URL at nginx ----------------------------------------

def test_sync_cutout_through_nginx(cluster: Cluster) -> None:
    from astropy.io import fits

    from soda.surveys.des import tile_centre

    ra, dec = tile_centre(TILE)
    with client() as c:
        r = c.get(cluster.base + "/sync", params={"ID": DID, "CIRCLE": f"{ra} {dec} 0.01"},
                  headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/fits"
    assert "content-encoding" not in r.headers, "nginx must not gzip FITS"
    with fits.open(io.BytesIO(r.content)) as hdul:
        assert hdul["SCI"].header["DATASET"] == DID
    assert_no_upstream_address(cluster, r)
    # Parameters only: a body beyond client_max_body_size is refused by nginx itself.
    with client() as c:
        big = c.post(cluster.base + "/sync", data={"ID": DID, "CIRCLE": "x" * 300_000})
    assert big.status_code == 413
    # POST works through nginx too (form body).
    with client() as c:
        posted = c.post(cluster.base + "/sync", data={"ID": DID, "CIRCLE": f"{ra} {dec} 0.005"})
    assert posted.status_code == 200 and posted.content.startswith(b"SIMPLE")


def test_async_job_through_nginx_and_results_sent_by_nginx(cluster: Cluster) -> None:
    from soda.surveys.des import tile_centre

    ra, dec = tile_centre(TILE)
    url = create_job(cluster, "/async", {"POS": f"CIRCLE {ra} {dec} 0.01", "FILTER": "g,r"})
    pending = job_doc(url)
    assert uws_text(pending, "uws:phase") == "PENDING"
    with client() as c:
        r = c.post(url + "/phase", data={"PHASE": "RUN"})
    assert r.status_code == 303 and r.headers["location"] == url
    doc = wait_final(url, 30, cluster)
    assert uws_text(doc, "uws:phase") == "COMPLETED", etree.tostring(doc).decode()
    assert_at(cluster.base, hrefs(doc), "the job document")
    with client() as c:
        listing = c.get(cluster.base + "/async")
        results_doc = c.get(url + "/results")
    assert_at(cluster.base, hrefs(assert_uws(listing.content)), "the job list")
    assert_at(cluster.base, hrefs(assert_uws(results_doc.content)), "the results list")
    for response in (listing, results_doc):
        assert_no_upstream_address(cluster, response)

    found = results(doc)
    assert [rid for rid, _ in found] == [f"01_{TILE}_g.fits", f"01_{TILE}_r.fits"]
    for result_id, href in found:
        assert_readable_by_others(result_file(cluster, url, result_id))
        on_disk = result_file(cluster, url, result_id).read_bytes()
        r = download(cluster, href)
        assert r.content == on_disk, f"{href}: nginx sent other bytes than the stored result"
        assert r.headers["content-type"] == "application/fits"
        assert "content-encoding" not in r.headers, "nginx must not gzip FITS"
        assert f'filename="{result_id}"' in r.headers["content-disposition"]
        assert "x-accel-redirect" not in r.headers  # nginx consumed it
        # nginx sent the file; the web process answered with headers and no body at all.
        entry = access_entry(cluster, urlsplit(href).path)
        assert entry["status"] == "200" and int(entry["bytes"]) == len(on_disk), entry
        assert entry["upstream_length"] == "0", f"the web process sent a body: {entry}"
        assert entry["upstream"] in {urlsplit(b).netloc for b in cluster.web_bases}, entry
        # Asked directly, each web process hands the file over to nginx, sending nothing.
        for web in cluster.web_bases:
            with client() as c:
                direct = c.get(web + urlsplit(href).path)
            assert direct.status_code == 200 and direct.content == b"", direct.text[:200]
            key = f"jobs/{url.rsplit('/', 1)[1]}/{result_id}"
            assert direct.headers["x-accel-redirect"] == f"/_results/{key}"
    # The internal location cannot be asked for from outside.
    with client() as c:
        hidden = c.get(f"{cluster.base}/_results/jobs/{url.rsplit('/', 1)[1]}/{found[0][0]}")
    assert hidden.status_code == 404


def test_selftest_wait_through_nginx_and_cors_on_results(cluster: Cluster) -> None:
    url = create_job(cluster, "/selftest", {"DURATION": "1.5", "RESULTS": "2", "SIZE": "5000",
                                             "PHASE": "RUN"})
    eventually(lambda: uws_text(job_doc(url), "uws:phase") == "EXECUTING", timeout=15)
    t0 = time.monotonic()
    doc = job_doc(url, WAIT="30", PHASE="EXECUTING")  # held by nginx and the web process
    waited = time.monotonic() - t0
    assert uws_text(doc, "uws:phase") == "COMPLETED" and waited < 10, (waited, cluster.output())
    assert_at(cluster.base, hrefs(doc), "the selftest job")
    (result_id, href), _ = results(doc)
    with client() as c:
        r = c.get(href, headers={"Origin": "https://aladin.example.org", "Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.content == result_file(cluster, url, result_id).read_bytes()
    assert r.headers["content-type"].startswith("text/plain")
    # CORS headers survive the hand-over to nginx (browser clients download results too).
    assert r.headers.get("access-control-allow-origin") in ("*", "https://aladin.example.org"), r.headers
    # The WAIT timeout of nginx is above the service's cap (60 s by default).
    from conf import load_settings

    cap = load_settings(environ={}).uws.wait_max_seconds
    for location in ("/async", "/selftest"):
        block = re.search(r"location\s+" + re.escape(location) + r"\s*\{(.*?)\}", cluster.nginx.rendered(), re.S)
        assert block, f"no location {location} in the template"
        timeout = re.search(r"proxy_read_timeout\s+(\d+)s;", block.group(1))
        assert timeout and int(timeout.group(1)) >= cap + 15, f"{location}: {block.group(1)}"


def test_links_capabilities_and_vosi_through_nginx(cluster: Cluster) -> None:
    with client() as c:
        links = c.get(cluster.base + "/links", params={"ID": DID})
        caps = c.get(cluster.base + "/capabilities")
        # Client-sent forwarding headers are replaced by nginx, never trusted.
        spoofed = c.get(cluster.base + "/capabilities", headers={
            "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "gopher",
            "X-Forwarded-Prefix": "/evil"})
        availability = c.get(cluster.base + "/availability")
        index = c.get(cluster.base + "/")
        health = c.get(cluster.base + "/healthz")
        ready = c.get(cluster.base + "/readyz")
        unknown = c.get(cluster.base + "/api/sync")
    assert links.status_code == 200, links.text
    vot = assert_votable(links.content)
    fields = [f.get("name") for f in vot.xpath("//*[local-name()='TABLE']/*[local-name()='FIELD']")]
    column = fields.index("access_url")
    access_urls = [tr.xpath("*[local-name()='TD']")[column].text
                   for tr in vot.xpath("//*[local-name()='TR']")]
    access_urls = [u for u in access_urls if u]
    assert len(access_urls) >= 1
    descriptor_urls = vot.xpath("//*[local-name()='PARAM'][@name='accessURL']/@value")
    assert len(descriptor_urls) >= 2  # the sync and async SODA descriptors
    assert_at(cluster.base, access_urls, "DataLink access_url")
    assert_at(cluster.base, descriptor_urls, "DataLink service descriptor accessURL")
    # The #this link (the whole image, /files) works through nginx.
    this = next(u for u in access_urls if "/files?" in u)
    with client() as c:
        image = c.get(this)
    assert image.status_code == 200 and len(image.content) > 2880

    for response in (caps, spoofed):
        assert response.status_code == 200
        doc = etree.fromstring(response.content)
        assert_at(cluster.base, doc.xpath("//*[local-name()='accessURL']/text()"), "VOSI capabilities")
        assert_no_upstream_address(cluster, response)
    assert b"evil" not in spoofed.content and b"gopher" not in spoofed.content
    # XML is gzipped for clients that ask (FITS never is: see the cutout tests).
    assert caps.headers.get("content-encoding") == "gzip"
    assert_no_upstream_address(cluster, links)
    assert availability.status_code == 200 and b"<vosi:available>true" in availability.content
    assert index.status_code == 200 and "/sync" in index.text
    assert health.status_code == 200 and ready.status_code == 200, (health.text, ready.text)
    assert unknown.status_code == 404  # no /api prefix: the service is at the root
    # Both web processes took requests (round robin over keep-alive connections).
    assert cluster.nginx is not None
    used = {e["upstream"] for e in cluster.nginx.access() if e["upstream"] != "-"}
    assert {urlsplit(b).netloc for b in cluster.web_bases} <= used, used


def test_metrics_only_from_internal_networks(cluster: Cluster) -> None:
    # 127.0.0.2 is a loopback address outside the allow list (127.0.0.1, private ranges).
    outside = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=10)
    with outside, client() as inside:
        refused = outside.get(cluster.base + "/metrics")
        other = outside.get(cluster.base + "/capabilities")
        allowed = inside.get(cluster.base + "/metrics")
    assert refused.status_code == 403
    assert other.status_code == 200  # only /metrics is restricted
    # From inside, nginx passes it on (its access log skips /metrics; the web process logs it).
    assert allowed.status_code != 403, allowed.text
    eventually(lambda: "GET /metrics" in cluster.output(), timeout=5)
    assert allowed.status_code == 200, f"/metrics answered {allowed.status_code}: {allowed.text[:500]}"


def test_worker_killed_mid_job_recovers_behind_nginx(cluster: Cluster) -> None:
    url = create_job(cluster, "/selftest", {"DURATION": "3", "RESULTS": "2", "PHASE": "RUN"})
    eventually(lambda: uws_text(job_doc(url), "uws:phase") == "EXECUTING", timeout=15)
    cluster.kill_workers()  # SIGKILL: no goodbye, the job stays EXECUTING in the database
    assert uws_text(job_doc(url), "uws:phase") == "EXECUTING"
    cluster.add_worker()
    doc = wait_final(url, 30, cluster)
    assert uws_text(doc, "uws:phase") == "COMPLETED", etree.tostring(doc).decode()
    assert "lost its worker; re-queued" in cluster.output()
    for result_id, href in results(doc):
        assert download(cluster, href).content == result_file(cluster, url, result_id).read_bytes()
    cluster.assert_all_running()


def test_scheduled_sweep_destroys_expired_job_with_its_files(cluster: Cluster) -> None:
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=4)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    url = create_job(cluster, "/selftest", {"RESULTS": "2", "PHASE": "RUN", "DESTRUCTION": soon})
    doc = wait_final(url, 15, cluster)
    assert uws_text(doc, "uws:phase") == "COMPLETED"
    files = cluster.results / "jobs" / url.rsplit("/", 1)[1]
    assert sorted(p.name for p in files.iterdir()) == ["result-1.txt", "result-2.txt"]
    (_, href), _ = results(doc)
    download(cluster, href)
    # Nobody asks for anything: the workers' scheduled sweep destroys the job by itself.
    with client() as c:
        eventually(lambda: c.get(url).status_code == 404, timeout=15, interval=0.2)
        assert c.get(href).status_code == 404
    assert not files.exists()


def test_a_dead_web_process_is_skipped(cluster: Cluster) -> None:
    """Runs last in the module: one web process is killed; nginx keeps serving from the other."""
    proc, _ = cluster.webs[-1]
    proc.kill()
    with client() as c:
        for _ in range(6):
            assert c.get(cluster.base + "/capabilities").status_code == 200
    url = create_job(cluster, "/selftest", {"PHASE": "RUN"})  # a POST too
    assert uws_text(wait_final(url, 15, cluster), "uws:phase") == "COMPLETED"


# --- Redis restarted under load --------------------------------------------------------------

def queued_messages(url: str, namespace: str) -> int:
    """Messages waiting in the broker's queues (Redis lists under the namespace)."""
    import redis

    r = redis.Redis.from_url(url)
    return sum(r.llen(k) for k in r.scan_iter(f"{namespace}*") if r.type(k) == b"list")


def test_redis_restart_loses_no_job(postgres_url: str, demo_root: Path, tmp_path: Path) -> None:
    binary = shutil.which("redis-server")
    require("redis-server", None if binary else "not on PATH")
    assert binary is not None
    with shared_root() as root, fresh_database("cutout_nginx") as database:
        server = ThrowawayRedis(binary, root / "redis.log")
        server.start()
        c: Cluster | None = None
        try:
            c = Cluster(root, demo_root, database, server.url, webs=2, workers=1, keep_logs=tmp_path)
            # 2 worker threads hold at most 4 messages (dramatiq prefetch); the rest wait in Redis.
            jobs = [create_job(c, "/selftest", {"DURATION": "1", "RESULTS": "2", "PHASE": "RUN"})
                    for _ in range(8)]
            eventually(lambda: any(uws_text(job_doc(u), "uws:phase") == "EXECUTING" for u in jobs),
                       timeout=15)
            phases_at_kill = [uws_text(job_doc(u), "uws:phase") for u in jobs]
            waiting = queued_messages(server.url, c.env["CUTOUT_REDIS_NAMESPACE"])
            server.stop()  # every message in Redis is gone with it
            assert "QUEUED" in phases_at_kill and waiting >= 1, (phases_at_kill, waiting)
            time.sleep(1.5)
            # The job database still answers through nginx while the broker is down.
            assert all(uws_text(job_doc(u), "uws:phase") for u in jobs)
            restarted = time.monotonic()
            server.start()  # same port, empty
            done = [wait_final(u, 40, c) for u in jobs]
            recovered_in = time.monotonic() - restarted
            print(f"phases at the Redis kill: {phases_at_kill}, {waiting} messages lost; all jobs final "
                  f"{recovered_in:.1f} s after Redis came back")
            assert [uws_text(d, "uws:phase") for d in done] == ["COMPLETED"] * len(jobs), c.output()
            for u, d in zip(jobs, done, strict=True):
                found = results(d)
                assert [rid for rid, _ in found] == ["result-1.txt", "result-2.txt"]
                for result_id, href in found:
                    body = download(c, href).content
                    assert body == result_file(c, u, result_id).read_bytes()
                    assert u.rsplit("/", 1)[1].encode() in body
            # A job submitted after the restart runs too: nothing needed a restart.
            after = create_job(c, "/selftest", {"DURATION": "0.2", "PHASE": "RUN"})
            assert uws_text(wait_final(after, 20, c), "uws:phase") == "COMPLETED", c.output()
            c.assert_all_running()
        finally:
            if c is not None:
                c.stop()
            server.stop()
            shutil.copy(server.log, tmp_path / server.log.name)


# --- docker-compose.yml ----------------------------------------------------------------------

def test_bulk_search_pages_and_description_through_nginx(cluster: Cluster) -> None:
    from soda.surveys.des import tile_centre

    ra, dec = tile_centre(TILE)
    rows = "".join(f"{ra + i * 0.002},{dec},s{i}\n" for i in range(5))
    with client() as c:
        created = c.post(cluster.base + "/bulk", data={"UPLOAD": "positions,param:positions", "RADIUS": "0.002",
                                                      "FILTER": "r", "PHASE": "RUN"},
                         files={"positions": ("p.csv", f"ra,dec,id\n{rows}".encode(), "text/csv")})
        # A table beyond the 256k of parameter-only requests reaches the service (which reads
        # and judges it), not nginx's 413.
        big = c.post(cluster.base + "/bulk", data={"UPLOAD": "positions,param:positions"},
                     files={"positions": ("p.csv", b"ra,dec\n" + b"junk,junk\n" * 40_000, "text/csv")})
    assert created.status_code == 303, created.text
    url = created.headers["location"]
    assert_at(cluster.base, [url], "Location of POST /bulk")
    doc = wait_final(url, 60, cluster)
    assert uws_text(doc, "uws:phase") == "COMPLETED"
    archive = download(cluster, url + "/results.zip")
    import zipfile
    with zipfile.ZipFile(io.BytesIO(archive.content)) as z:
        assert sum(n.endswith(".fits") for n in z.namelist()) == 5
    assert big.status_code != 413 and 400 <= big.status_code < 500, (big.status_code, big.text[:200])
    assert "nginx" not in big.text

    with client() as c:
        query = c.get(cluster.base + "/query", params={"POS": f"CIRCLE {ra} {dec} 0.05"})
        described = c.get(cluster.base + "/openapi.json")
        page = c.get(cluster.base + "/ui/cutout")
        coverage = c.get(cluster.base + "/coverage/des.json")
    assert query.status_code == 200, query.text + cluster.output()[-6000:]
    assert_votable(query.content)
    assert described.status_code == 200 and described.json()["servers"] == [{"url": cluster.base}]
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    styles = re.findall(r'href="([^"]*/ui/static/[^"]+\.css[^"]*)"', page.text)
    assert styles, page.text[:500]
    with client() as c:
        sheet = c.get(styles[0] if styles[0].startswith("http") else cluster.base + styles[0])
    assert sheet.status_code == 200 and "css" in sheet.headers["content-type"]
    assert coverage.status_code == 200, coverage.text[:200]


def test_every_route_of_the_service_has_a_location(tmp_path: Path, demo_root: Path) -> None:
    """A route the template does not forward answers nginx's own 404 behind it."""
    from conftest import app_client

    text = TEMPLATE.read_text()
    exact = set(re.findall(r"^\s*location = (\S+) \{", text, re.M))
    prefixes = [p for p in re.findall(r"^\s*location (/\S*) \{", text, re.M) if p != "/"]
    with app_client(tmp_path / "data", demo_root, CUTOUT_SELFTEST_JOBS="true") as c:
        paths = [getattr(route, "path", "") for route in c.app.routes]  # type: ignore[attr-defined]
    assert "/bulk" in paths and "/sync" in paths
    missing = []
    for path in paths:
        literal = path.split("{", 1)[0]
        served = (path in exact if "{" not in path else False) or any(literal.startswith(p) for p in prefixes)
        if not served and not path.startswith("/_"):
            missing.append(path)
    assert missing == [], f"routes nginx/cutout.conf answers 404 for: {missing}"


def test_compose_file_matches_the_template() -> None:
    import yaml

    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert {"nginx", "web1", "web2", "worker", "redis", "postgres"} <= set(services)
    nginx = services["nginx"]
    env = nginx["environment"]
    placeholders = set(PLACEHOLDER.findall(TEMPLATE.read_text()))
    assert placeholders <= set(env), f"compose does not set {placeholders - set(env)}"
    assert any(v.endswith(":/etc/nginx/templates/default.conf.template:ro") and v.startswith("./nginx/cutout.conf")
               for v in nginx["volumes"])
    for name in ("web1", "web2"):
        web = services[name]
        assert web["command"][:2] == ["cutout", "serve"] and "0.0.0.0" in web["command"]
        assert f"server {name}:8000;" in env["CUTOUT_UPSTREAMS"]
    worker = services["worker"]
    assert worker["command"][:2] == ["cutout", "worker"]
    assert "container_name" not in worker and "ports" not in worker  # --scale worker=N works
    data_volume = next(v.split(":")[0] for v in services["web1"]["volumes"] if v.split(":")[1] == "/data")
    for name in ("web1", "web2", "worker"):
        service_env = services[name]["environment"]
        assert service_env["CUTOUT_ACCEL_REDIRECT_PREFIX"] == "/_results"
        assert service_env["CUTOUT_BROKER_URL"].startswith("redis://redis:")
        assert service_env["CUTOUT_DATABASE_URL"].startswith("postgresql://")
        assert "${POSTGRES_PASSWORD" in service_env["CUTOUT_DATABASE_URL"]  # from .env, not here
        assert service_env["CUTOUT_DATA_DIR"] == "/data"
        from conf import load_settings

        trusted = load_settings(environ={"CUTOUT_TRUSTED_PROXIES": service_env["CUTOUT_TRUSTED_PROXIES"]})
        assert trusted.ops.trusted_proxies, "the web processes must trust nginx's forwarded headers"
        operators = load_settings(environ={"CUTOUT_OPERATOR_CLIENTS": service_env["CUTOUT_OPERATOR_CLIENTS"]})
        assert "10.0.0.0/8" in operators.ops.operator_clients  # Prometheus on the internal network
        assert f"{data_volume}:/data" in services[name]["volumes"]
    # nginx reads the same results directory the services write, read-only.
    assert f"{data_volume}:/data:ro" in nginx["volumes"]
    assert env["CUTOUT_RESULTS_DIR"] == "/data/results"
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD")
    # No literal secret anywhere in the file.
    text = COMPOSE.read_text()
    assert not re.search(r"postgresql://[^:]+:[^$@]+@", text)
    assert not re.search(r"PASSWORD\s*[:=]\s*[\"']?(?!\$\{)\w", text)
    assert set(compose["volumes"]) >= {data_volume}
