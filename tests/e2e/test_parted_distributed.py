"""A parted job in the distributed shape for real: PostgreSQL, Redis, a web process and two
`cutout worker` processes sharing the parts of one self-test job; one worker is SIGKILLed
mid-part and only the parts it was running are run again; an abort stops the parts
running in both workers and those not yet started."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import httpx
import pytest

from conftest import Proc, assert_uws, base_env, eventually, start_server, start_worker, uws_text
from uws.xml import PROGRESS_NS

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]

NS = {"uws": "http://www.ivoa.net/xml/UWS/v1.0", "p": PROGRESS_NS,
      "xlink": "http://www.w3.org/1999/xlink"}
RUN = re.compile(r"^part-(\d+)-run-(\d+)\.txt$")


def results(url: str) -> dict[str, str]:
    """The job's results listed now: id → href."""
    doc = assert_uws(httpx.get(url, timeout=10).content)
    return {r.get("id"): r.get(f"{{{NS['xlink']}}}href") for r in doc.findall("uws:results/uws:result", NS)}


def runs(url: str) -> dict[tuple[int, int], int]:
    """(part, attempt) → the process id of the worker that started that run."""
    found = {}
    for name, href in results(url).items():
        if match := RUN.match(name):
            found[int(match[1]), int(match[2])] = int(httpx.get(href, timeout=10).text)
    return found


class Cluster:
    """A web process and two single-threaded workers, on the session's PostgreSQL and Redis."""

    def __init__(self, tmp: Path, postgres_url: str, redis_url: str, demo: Path) -> None:
        env = base_env(tmp / "data", demo, CUTOUT_DATABASE_URL=postgres_url, CUTOUT_BROKER_URL=redis_url,
                       CUTOUT_REDIS_NAMESPACE=f"cutout-test-{uuid.uuid4().hex[:8]}")
        self.server, self.base = start_server(env, tmp / "server.log")
        self.workers: list[Proc] = []
        try:
            self.workers = [start_worker(env, tmp / f"worker-{n}.log", threads=1) for n in (1, 2)]
        except BaseException:
            self.stop()
            raise

    def create(self, **params: str) -> str:
        r = httpx.post(self.base + "/selftest", data={**params, "PHASE": "RUN"}, timeout=10)
        assert r.status_code == 303, r.text
        return r.headers["location"]

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.server.stop()


@pytest.fixture
def cluster(tmp_path, postgres_url, redis_url, demo_root):
    c = Cluster(tmp_path, postgres_url, redis_url, demo_root)
    yield c
    c.stop()


def test_two_workers_share_a_job_and_a_killed_one_costs_only_its_part(cluster):
    victim, survivor = cluster.workers
    url = cluster.create(PARTS="6", UNITS="10", PART_DURATION="3")

    def victim_mid_part() -> set[int]:
        ended = {int(n[5:-4]) for n in results(url) if re.match(r"^part-\d+\.txt$", n)}
        return {part for (part, _), pid in runs(url).items() if pid == victim.pid and part not in ended}

    interrupted = eventually(victim_mid_part, timeout=30)
    victim.kill()
    started_by_victim = {part for (part, _), pid in runs(url).items() if pid == victim.pid}

    seen = []
    end = time.monotonic() + 90
    while time.monotonic() < end:
        doc = assert_uws(httpx.get(url, timeout=10).content)
        progress = doc.find("uws:jobInfo/p:progress", NS)
        if progress is not None:
            seen.append((int(progress.get("done")), int(progress.get("partsDone"))))
        if uws_text(doc, "uws:phase") != "EXECUTING":
            break
        time.sleep(0.2)
    assert uws_text(doc, "uws:phase") == "COMPLETED", uws_text(doc, "uws:errorSummary/uws:message")
    assert seen[-1] == (60, 6) and seen == sorted(seen)

    done = runs(url)
    count = {part: sum(1 for (p, _) in done if p == part) for part in range(6)}
    twice = {part for part, n in count.items() if n == 2}
    # Only what the killed worker was running is run again (a part it had just ended
    # but not yet recorded may be too), every other part once: no part is lost.
    assert interrupted <= twice <= started_by_victim, (count, interrupted, started_by_victim)
    assert all(n in (1, 2) for n in count.values()), count
    assert all(done[part, 2] == survivor.popen.pid for part in twice)
    assert {pid for pid in done.values()} == {victim.pid, survivor.pid}  # both took parts
    manifest = httpx.get(results(url)["manifest.txt"], timeout=10).text
    assert manifest == "".join(f"part {n}: done 10 failed 0\n" for n in range(6))
    assert "lost its worker; re-queued" in survivor.output()


def test_abort_stops_the_parts_in_every_worker(cluster):
    url = cluster.create(PARTS="6", PART_DURATION="60")
    eventually(lambda: {pid for pid in runs(url).values()} == {w.pid for w in cluster.workers}, timeout=30)
    t0 = time.monotonic()
    assert httpx.post(url + "/phase", data={"PHASE": "ABORT"}, timeout=10).status_code == 303
    job_id = url.rsplit("/", 1)[1]
    for worker in cluster.workers:
        eventually(lambda: f"of job {job_id} interrupted" in worker.output(), timeout=5)
    assert time.monotonic() - t0 < 5
    time.sleep(1)  # the freed threads take the queued parts' messages, and drop them
    started = runs(url)
    assert len(started) == 2 and {attempt for _, attempt in started} == {1}  # no other part started
    assert uws_text(assert_uws(httpx.get(url, timeout=10).content), "uws:phase") == "ABORTED"


def test_the_two_parts_of_a_job_run_in_two_workers_at_once(cluster):
    """Each worker takes one part per thread: neither holds both parts of a two-part job
    while the other is idle (Dramatiq's own prefetch is two messages per thread)."""
    for _ in range(3):
        url = cluster.create(PARTS="2", UNITS="1", PART_DURATION="2")
        eventually(lambda: httpx.get(url + "/phase", timeout=10).text == "COMPLETED", timeout=30)
        started = runs(url)
        assert set(started) == {(0, 1), (1, 1)}, started
        assert set(started.values()) == {w.pid for w in cluster.workers}, started
