"""Results written one by one and recorded in batches (uws.kinds.JobContext.result_batch):
each file is on disk at once, listed when its batch is recorded (every ``most`` results,
at the end, and when the block raises), with its size and CRC; the owner's result space
is still checked before each file is written. A real SQLite job store and result store."""

from __future__ import annotations

import zlib

import pytest

from dali.errors import UsageError
from soda.ops.database import migrate, open_database
from storage import LocalStore
from uws.kinds import JobContext
from uws.notify import LocalNotifier
from uws.quota import Allowance
from uws.store import JobStore
from uws.tables import MIGRATIONS


@pytest.fixture
def parts(tmp_path):
    db = open_database(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    migrate(db, [("uws", MIGRATIONS)])
    store = JobStore(db, LocalNotifier())
    storage = LocalStore(tmp_path / "results")
    yield store, storage
    db.close()


def context(store: JobStore, storage: LocalStore, allowance: Allowance = Allowance()) -> JobContext[None]:
    job = store.create(kind="selftest", owner="ann", parameters=[], run_id=None, execution_duration=60,
                       destruction=None)
    return JobContext(job, None, store, storage, allowance)


def listed(store: JobStore, ctx: JobContext[None]) -> list[str]:
    return [r.id for r in store.get(ctx.job_id).results]


def test_results_are_written_at_once_and_listed_a_batch_at_a_time(parts):
    store, storage = parts
    ctx = context(store, storage)
    with ctx.result_batch(most=3, seconds=3600) as batch:
        for n in range(5):
            batch.put(f"r{n}.fits", bytes([n]) * (n + 1), "application/fits")
            assert storage.local_path(f"jobs/{ctx.job_id}/r{n}.fits").read_bytes() == bytes([n]) * (n + 1)
            assert listed(store, ctx) == ([] if n < 2 else ["r0.fits", "r1.fits", "r2.fits"])
    results = store.get(ctx.job_id).results
    assert [r.id for r in results] == [f"r{n}.fits" for n in range(5)]
    assert [(r.size, r.crc32, r.mime_type) for r in results] == [
        (n + 1, zlib.crc32(bytes([n]) * (n + 1)), "application/fits") for n in range(5)]
    assert store.result_bytes("ann") == 15


def test_a_batch_is_recorded_after_its_seconds_and_when_the_block_raises(parts):
    store, storage = parts
    ctx = context(store, storage)
    with pytest.raises(RuntimeError), ctx.result_batch(most=100, seconds=0) as batch:
        batch.put("a.txt", b"a", "text/plain")
        assert listed(store, ctx) == ["a.txt"]  # seconds=0: each put records
        batch.put("b.txt", b"b", "text/plain")
        raise RuntimeError("the part failed")
    assert listed(store, ctx) == ["a.txt", "b.txt"]
    with pytest.raises(RuntimeError), ctx.result_batch(most=100, seconds=3600) as batch:
        batch.put("c.txt", b"c", "text/plain")
        assert listed(store, ctx) == ["a.txt", "b.txt"]
        raise RuntimeError("the part failed")
    assert listed(store, ctx) == ["a.txt", "b.txt", "c.txt"]


def test_a_result_past_the_owners_result_space_is_refused_before_it_is_written(parts):
    store, storage = parts
    ctx = context(store, storage, Allowance(max_result_bytes=25))
    other = context(store, storage)  # ann's other job: its results count too
    other.put_result("old.txt", b"x" * 5, "text/plain")
    with pytest.raises(UsageError, match="result space quota reached"), \
            ctx.result_batch(most=100, seconds=3600) as batch:
        for n in range(10):
            batch.put(f"r{n}.txt", b"y" * 6, "text/plain")
    assert listed(store, ctx) == ["r0.txt", "r1.txt", "r2.txt"]  # 5 + 3 x 6 = 23; a fourth: 29
    assert storage.local_path(f"jobs/{ctx.job_id}/r3.txt") is None
    assert store.result_bytes("ann") == 23


def test_a_result_rewritten_in_place_replaces_the_partial_one_and_others_can_read_it(parts) -> None:  # type: ignore[no-untyped-def]
    """A part run again (its worker lost mid-file) writes its files over what the lost run
    left; the files are readable by other users (nginx sends them), whatever the umask."""
    import os
    import stat

    store, storage = parts
    ctx = context(store, storage)
    old = os.umask(0o077)
    try:
        storage.put_in_place(f"jobs/{ctx.job_id}/r.fits", b"x" * 1000)  # the lost run's partial file
        with ctx.result_batch() as batch:
            batch.put("r.fits", b"done", "application/fits")
    finally:
        os.umask(old)
    path = storage.local_path(f"jobs/{ctx.job_id}/r.fits")
    assert path is not None and path.read_bytes() == b"done"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert listed(store, ctx) == ["r.fits"]
    assert [p.name for p in path.parent.iterdir()] == ["r.fits"]  # no temporary files left
    # A result written again once listed is replaced whole and recorded again at once.
    with ctx.result_batch(most=100, seconds=3600) as batch:
        batch.put("r.fits", b"again", "application/fits")
        [result] = store.get(ctx.job_id).results
        assert (result.size, result.crc32) == (5, zlib.crc32(b"again"))
    assert path.read_bytes() == b"again" and stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_batch_in_a_folder_stores_its_files_there_under_their_own_names(parts):
    store, storage = parts
    ctx = context(store, storage)
    with ctx.result_batch(folder="part-00003") as batch:
        batch.put("r0.fits", b"zero", "application/fits")
    with ctx.result_batch() as batch:
        batch.put("r1.fits", b"one", "application/fits")
    [first, second] = store.get(ctx.job_id).results
    assert (first.id, first.key) == ("r0.fits", f"jobs/{ctx.job_id}/part-00003/r0.fits")
    assert storage.local_path(first.key).read_bytes() == b"zero"
    assert (second.id, second.key) == ("r1.fits", f"jobs/{ctx.job_id}/r1.fits")
    for bad in ("../elsewhere", "a/b", ".hidden"):
        with pytest.raises(Exception, match="invalid result folder"), ctx.result_batch(folder=bad):
            pass
