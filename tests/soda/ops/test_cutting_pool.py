"""The cutting processes of a web process (soda.ops.pool, soda.ops.cutting): the same
answers as the threads, bounded, and whole again after a process dies."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import time
from pathlib import Path

import pytest
from astropy.io import fits

from conftest import app_client, eventually
from dali.errors import ServiceUnavailable
from soda.ops.pool import CutoutPool, CutoutsBusy

CUT = {"ID": "ivo://demo.cutout/des?DES0139-4457_r", "CIRCLE": "24.9655 -44.9583 0.01"}


def _hdus(body: bytes) -> list[tuple[str, bytes, dict[str, object]]]:
    with fits.open(io.BytesIO(body)) as hdul:
        return [(h.name, h.data.tobytes() if h.data is not None else b"",
                 {k: v for k, v in h.header.items() if k != "DATE"}) for h in hdul]


def test_processes_answer_what_threads_answer(tmp_path: Path, demo_root: Path) -> None:
    bodies = {}
    for mode in ("true", "false"):
        with app_client(tmp_path / mode, demo_root, CUTOUT_CUTOUT_IN_PROCESSES=mode,
                        CUTOUT_ANONYMOUS_MAX_CUTOUT_PIXELS="25000000") as client:
            r = client.get("/sync", params=CUT)
            assert r.status_code == 200, r.text
            assert r.headers["content-type"] == "application/fits"
            pool = client.app_state.runtime.pool
            assert (pool._processes is not None) == (mode == "true")
            bodies[mode] = _hdus(r.content)
    assert bodies["true"] == bodies["false"]
    assert len(bodies["true"]) == 4  # primary, SCI, MSK, WGT


def test_labelled_errors_cross_the_process_boundary(tmp_path: Path, demo_root: Path) -> None:
    with app_client(tmp_path / "d", demo_root, CUTOUT_MAX_CUTOUT_PIXELS="100",
                    CUTOUT_ANONYMOUS_MAX_CUTOUT_PIXELS="100") as client:
        r = client.get("/sync", params=CUT)
        assert r.status_code == 400
        assert r.text.startswith("UsageError: ") and "more than" in r.text


def _sleep_then(seconds: float) -> tuple[None, float]:
    time.sleep(seconds)
    return None, seconds


def test_a_full_queue_refuses_at_once_and_frees_its_places(tmp_path: Path) -> None:
    from conf import load_settings

    pool = CutoutPool(1, 1, settings=load_settings(environ={"CUTOUT_DATA_DIR": str(tmp_path)}),
                      queue=1, tasks_per_process=None)
    try:
        started = [pool._submit(_sleep_then, 1.0)[1], pool._submit(_sleep_then, 1.0)[1]]
        with pytest.raises(CutoutsBusy) as refused:
            pool._submit(_sleep_then, 0.0)
        assert refused.value.status == 503 and refused.value.headers["Retry-After"]
        assert refused.value.text.startswith("ServiceUnavailable: ")
        for future in started:
            assert future.result(timeout=30) == (None, 1.0)
        eventually(lambda: pool._in_flight == 0, timeout=5)
        assert pool._submit(_sleep_then, 0.0)[1].result(timeout=30) == (None, 0.0)
    finally:
        pool.close()


def test_a_killed_process_fails_one_request_and_the_pool_recovers(tmp_path: Path, demo_root: Path) -> None:
    with app_client(tmp_path / "d", demo_root, CUTOUT_CUTOUT_PROCESSES="1") as client:
        assert client.get("/sync", params=CUT).status_code == 200
        pool = client.app_state.runtime.pool
        [pid] = list(pool._processes._processes)
        os.kill(pid, signal.SIGKILL)
        statuses = []
        for _ in range(3):
            r = client.get("/sync", params=CUT)
            statuses.append(r.status_code)
            if r.status_code == 503:
                assert r.text.startswith("ServiceUnavailable: ") and r.headers["Retry-After"]
        assert statuses.count(503) <= 1 and statuses[-1] == 200, statuses
        assert pid not in pool._processes._processes


def test_closing_the_pool_ends_its_processes(tmp_path: Path, demo_root: Path) -> None:
    with app_client(tmp_path / "d", demo_root, CUTOUT_CUTOUT_PROCESSES="2") as client:
        assert client.get("/sync", params=CUT).status_code == 200
        procs = list(client.app_state.runtime.pool._processes._processes.values())
        assert procs
    for proc in procs:
        proc.join(timeout=10)
        assert not proc.is_alive()


def test_make_observes_in_the_parent(tmp_path: Path, demo_root: Path) -> None:
    seen: list[tuple[str, float]] = []
    with app_client(tmp_path / "d", demo_root) as client:
        runtime = client.app_state.runtime
        cutouts = runtime.cutouts
        cutouts.observe = lambda ext, seconds: seen.append((ext, seconds))
        request = cutouts.parse(list(CUT.items()))
        targets = cutouts.plan(request)
        body = asyncio.run(runtime.pool.make(cutouts, targets, request, cutouts.limits("someone")))
    assert body is not None and body[:6] == b"SIMPLE"
    assert [ext for ext, _ in seen] == ["fits"] and seen[0][1] > 0


def test_idle_processes_end_and_start_again_on_the_next_cut(tmp_path: Path, demo_root: Path) -> None:
    with app_client(tmp_path / "d", demo_root, CUTOUT_CUTOUT_PROCESSES="1", CUTOUT_CUTOUT_IDLE_SECONDS="1") as client:
        pool = client.app_state.runtime.pool
        assert pool.running_processes == 0
        assert client.get("/sync", params=CUT).status_code == 200
        assert pool.running_processes == 1
        [process] = list(pool._processes._processes.values())
        eventually(lambda: pool.running_processes == 0, timeout=15)
        process.join(timeout=10)
        assert not process.is_alive()
        assert client.get("/sync", params=CUT).status_code == 200
        assert pool.running_processes == 1


def _pid(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def test_processes_are_replaced_after_their_cuts_and_nothing_waits_for_ever(tmp_path: Path) -> None:
    from conf import load_settings

    pool = CutoutPool(1, 2, settings=load_settings(environ={"CUTOUT_DATA_DIR": str(tmp_path)}),
                      queue=64, tasks_per_process=3)
    try:
        # Many cuts at once across several replacements (with max_tasks_per_child, Python
        # 3.11 could leave some waiting for a process that never started).
        futures = [pool._submit(_pid, 0.01)[1] for _ in range(40)]
        pids = [f.result(timeout=60) for f in futures]
        assert len(set(pids)) >= 40 // (3 * 2)  # a new pair of processes every 6 cuts
        eventually(lambda: pool._in_flight == 0, timeout=5)
    finally:
        pool.close()


def test_a_broken_pool_is_replaced_only_once_and_a_closed_pool_takes_no_cut(tmp_path: Path) -> None:
    from conf import load_settings

    pool = CutoutPool(1, 1, settings=load_settings(environ={"CUTOUT_DATA_DIR": str(tmp_path)}), queue=4)
    try:
        broken, future = pool._submit(os._exit, 1)  # the process dies: its pool breaks
        with pytest.raises(Exception):
            future.result(timeout=30)
        healthy, second = pool._submit(_pid, 0.0)   # a new pool, made since
        assert healthy is not broken
        pool._replace_broken(broken)                 # a late report of the old one
        assert pool._processes is healthy and second.result(timeout=30) > 0
    finally:
        pool.close()
    with pytest.raises(ServiceUnavailable):
        pool._submit(_pid, 0.0)
