"""Job kinds: what the generic UWS machinery runs, with typed parameters from the API
to the worker.

A kind declares the type of its parameters and two functions:

- ``parse`` runs in the web process when a job is created or its parameters change: it
  turns the client's name/value pairs (and the owner, since limits may depend on who
  asks) into one value of ``params_type``, or raises. The value is stored with the job
  as JSON (pydantic), so a worker gets exactly what the API accepted, typed, and never
  parses the client's text again.
- ``run`` runs in a worker (a Dramatiq actor); it gets a ``JobContext`` holding those
  parameters and writes the results. It signals failure by raising from the
  ``dali.errors`` family:

  - ``UsageError`` / ``MultiValuedParamNotSupported``: the request can never succeed ->
    phase ERROR, errorSummary type ``fatal``, no retry;
  - ``ServiceUnavailable``: transient -> retried with backoff, then ERROR ``transient``;
  - anything else: a fault of ours -> ERROR ``fatal`` with a generic message (logged).

``shown`` says which name/value pairs the job's UWS parameters document lists (UWS
§2.2.3.1) and the job stores; by default the client's own. A kind that ignores unknown
parameters (DALI §3.1, SODA §3.5) should keep only those it reads, so what a client sends
but the service never uses is not stored. Either way the service bounds their number and
bytes (``UWSConfig.max_job_parameters``, ``max_job_parameter_bytes``).

A kind may also split a job into **parts** that any worker runs on its own (``Part``):
``parts`` plans them once, in the worker that claimed the job (returning None runs the
job with ``run`` as usual); ``run_part`` runs one part, in whichever worker takes its
message, and says how many of its units were done or failed (``PartReport``); once every
part has ended, ``finish`` runs once, in one worker, with each part and its report (None:
the part failed for good), and the job is COMPLETED. A part raising ``UsageError`` fails
for good and the job goes on; a transient failure is retried; a lost worker's part is run
again, not the whole job. Results written by parts are listed while the job is EXECUTING.
In ``run_part`` the context's ``job`` is read without its results (``job.results`` is
empty: a job of many parts may have very many); ``finish`` gets them all.

Results count against the owner's result space (``uws.quota.Allowance.max_result_bytes``)
as they are written: a result that would pass it is refused (before it is written when
its size is known, ``put_result``; else deleted once written) and the job stops with a
``UsageError`` (phase ERROR); the results written before it are kept, and still count.
"""

from __future__ import annotations

import logging
import re
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, BinaryIO, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, create_model

from dali.errors import ServiceError
from dali.params import Params
from storage.protocol import ResultStore
from uws.archive import crc32_of
from uws.quota import UNLIMITED, Allowance, owner_name, quota_reached
from uws.store import NewResult

if TYPE_CHECKING:
    from uws.store import JobStore, JobView

log = logging.getLogger(__name__)

P = TypeVar("P")

RESULT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


def upload_key(job_id: str, name: str) -> str:
    """Where a job's uploaded file is kept: beside its results, gone with the job."""
    return f"jobs/{job_id}/uploads/{name}"


class JobInterrupted(BaseException):
    """Raised inside a running job's thread when it was aborted, timed out or destroyed.

    A BaseException so that a kind's own ``except Exception`` cannot swallow it.
    """


def as_given(parsed: object, pairs: Params) -> Params:
    """The parameters document lists what the client sent."""
    return pairs


# The files a job was created with, by field name (DALI 1.1 §3.4.5 UPLOAD, inline).
Uploads = Mapping[str, bytes]
MAX_PART_KEY = 64 * 1024  # characters of a part's key


@dataclass(frozen=True)
class Part:
    """One part of a parted job, as the kind planned it."""

    key: str        # the kind's own description of the part (text, e.g. JSON), stored
    units: int = 1  # units of work in it (e.g. rows), for progress
    # Filled by the service when it hands the part to ``run_part``:
    index: int = -1   # its place in the plan (0, 1, ...)
    attempt: int = 0  # 1 on its first run, 2 when run again (lost worker, transient failure)
    # For ``finish``: why a part failed for good (its error text: a UsageError's, a lost
    # worker's), None when it ran.
    error: str | None = None


@dataclass(frozen=True)
class PartReport:
    done: int    # units done
    failed: int  # units failed (the kind records why in its own results)


@dataclass(frozen=True)
class KindLimit:
    """How many jobs of one kind a caller may have not yet finished (PENDING, QUEUED,
    EXECUTING, HELD, SUSPENDED): a user by their id, an anonymous caller by their client
    address. Counted with the job's insert, as one unit (``JobStore.create``), so that
    creations at once cannot all pass it."""

    most: int                                  # 0: no limit
    refusal: Callable[[int], ServiceError]     # the error for one more, given how many there are


@dataclass(frozen=True)
class JobKind(Generic[P]):
    name: str
    params_type: type[P]
    parse: Callable[[Params, str | None], P]
    run: Callable[["JobContext[P]"], None]
    description: str = ""
    shown: Callable[[P, Params], Params] = field(default=as_given)
    # A kind that takes files: at most ``uploads`` of them, checked and typed by
    # ``parse_uploads`` (pairs, files, owner) instead of ``parse``. The files are kept with
    # the job (``JobContext.upload``), not in its parameters.
    uploads: int = 0
    parse_uploads: Callable[[Params, Uploads, str | None], P] | None = None
    # Parted jobs (see the module's text); a kind without them runs as one piece.
    parts: Callable[["JobContext[P]"], Sequence[Part] | None] | None = None
    run_part: Callable[["JobContext[P]", Part], PartReport] | None = None
    finish: Callable[["JobContext[P]", Sequence[tuple[Part, PartReport | None]]], None] | None = None
    # The kind's own limit on a caller's unfinished jobs of it (None: only the allowance's).
    unfinished_limit: Callable[[str | None], KindLimit] | None = None

    @property
    def queue(self) -> str:
        return f"uws-{self.name}"

    @property
    def actor_name(self) -> str:
        return f"uws_run_{self.name}"

    @property
    def parted(self) -> bool:
        return self.parts is not None and self.run_part is not None

    @property
    def parts_queue(self) -> str:
        return f"uws-{self.name}-parts"

    @property
    def parts_actor_name(self) -> str:
        return f"uws_parts_{self.name}"

    @cached_property
    def _stored(self) -> type[BaseModel]:
        # Infinite bounds (DALI open intervals) travel as JSON's Infinity constants.
        return create_model(f"{self.name}_parameters", value=(self.params_type, ...),
                            __config__=ConfigDict(ser_json_inf_nan="constants"))

    def dump(self, parsed: P) -> str:
        """The parsed parameters as stored with the job."""
        return self._stored(value=parsed).model_dump_json()

    def load(self, stored: str) -> P:
        value: Any = self._stored.model_validate_json(stored).value
        return value  # type: ignore[no-any-return]


class JobContext(Generic[P]):
    """What a running job may see and do."""

    def __init__(self, job: "JobView", params: P, store: "JobStore", storage: ResultStore,
                 allowance: Allowance = UNLIMITED) -> None:
        self.job = job
        self.params = params
        self._store = store
        self._storage = storage
        self._allowance = allowance  # the owner's, for the result space
        self.bytes_written = 0  # bytes of the results written through this context

    @property
    def job_id(self) -> str:
        return self.job.id

    @contextmanager
    def result_writer(self, result_id: str, mime_type: str) -> Iterator[BinaryIO]:
        """Write one result; it is listed only once written completely."""
        if not RESULT_ID.match(result_id):
            raise ServiceError(f"invalid result id {result_id!r}")
        key = f"jobs/{self.job.id}/{result_id}"
        with self._storage.writer(key) as fh:
            yield fh
        size = self._storage.size(key)
        try:
            self._check_result_space(size)  # again: the owner's other jobs may have written
        except ServiceError:
            self._storage.delete_prefix(key)
            raise
        # Read back once while it is fresh in the page cache: archives of the job's results
        # need every file's checksum before their first byte (uws.archive).
        path = self._storage.local_path(key)
        crc = crc32_of(path) if path is not None else None
        self._store.add_result(self.job.id, result_id, key, mime_type, size, crc)
        self.bytes_written += size

    def _check_result_space(self, size: int) -> None:
        """Every result of the owner's counts, those of their other jobs running now too."""
        limit = self._allowance.max_result_bytes
        if not limit:
            return
        used = self._store.result_bytes(self.job.owner)
        if used + size > limit:
            raise quota_reached(self._allowance, used, size, owner_name(self.job.owner))

    def read_result(self, result_id: str) -> bytes | None:
        """A result this job wrote (e.g. by one of its parts, for ``finish``); None if absent."""
        if not RESULT_ID.match(result_id):
            return None
        path = self._storage.local_path(f"jobs/{self.job.id}/{result_id}")
        return path.read_bytes() if path is not None and path.is_file() else None

    def upload(self, name: str) -> bytes:
        """A file the job was created with (its field name in the creating request)."""
        path = self._storage.local_path(upload_key(self.job.id, name))
        if path is None or not path.is_file():
            raise ServiceError(f"the uploaded file {name!r} of job {self.job.id} is missing")
        return path.read_bytes()

    def put_result(self, result_id: str, data: bytes, mime_type: str) -> None:
        """Write one result of known size: refused before a byte is written when it would
        not fit in the owner's result space."""
        self._check_result_space(len(data))
        with self.result_writer(result_id, mime_type) as fh:
            fh.write(data)

    @contextmanager
    def result_batch(self, most: int = 200, seconds: float = 1.0, folder: str = "") -> Iterator["ResultBatch"]:
        """Many results of known size written one by one, recorded together: at most
        ``most`` results or ``seconds`` after the first not yet recorded, and at the end
        (also when the block raises). For a kind that makes very many small results, where
        one database statement per result would cost more than writing it.

        ``folder``: the files are stored in a folder of that name within the job's (their
        result names are their own): parts of one job writing at once on one host then do
        not wait for each other's file creations in one directory (two writers of small
        files in one ext4 directory took twice as long as in two)."""
        if folder and not RESULT_ID.match(folder):
            raise ServiceError(f"invalid result folder {folder!r}")
        batch = ResultBatch(self, most, seconds, folder)
        try:
            yield batch
        except BaseException:
            try:
                batch.flush()  # what was written is listed, as put_result would have
            except Exception:  # noqa: BLE001 - the first failure is the one to report
                log.exception("job %s: results written could not be recorded", self.job.id)
            raise
        batch.flush()


class ResultBatch:
    """Results written at once and recorded in batches (``JobContext.result_batch``).

    The owner's result space is checked as ``put_result`` does, before each file is
    written: against the space used when the batch last recorded, plus what it wrote
    since. Another job of the owner's writing at the same time is seen at the next record
    (so the two may pass the limit by one batch between them)."""

    def __init__(self, ctx: JobContext[Any], most: int, seconds: float, folder: str = "") -> None:
        self._ctx = ctx
        self._prefix = f"jobs/{ctx.job.id}/{folder}/" if folder else f"jobs/{ctx.job.id}/"
        self._most = max(most, 1)
        self._seconds = seconds
        self._pending: list[NewResult] = []
        self._since = 0.0
        self._limit = ctx._allowance.max_result_bytes
        self._used = ctx._store.result_bytes(ctx.job.owner) if self._limit else 0

    def put(self, result_id: str, data: bytes, mime_type: str) -> None:
        """Write one result now; it is listed once the batch records it."""
        if not RESULT_ID.match(result_id):
            raise ServiceError(f"invalid result id {result_id!r}")
        size = len(data)
        if self._limit and self._used + sum(r.size or 0 for r in self._pending) + size > self._limit:
            self.flush()  # what is written stays listed; then the limit with every other job's
            self._ctx._check_result_space(size)
        key = self._prefix + result_id
        new = self._ctx._storage.put_in_place(key, data)  # listed only once recorded (flush)
        if not self._pending:
            self._since = time.monotonic()
        self._pending.append(NewResult(result_id, key, mime_type, size, zlib.crc32(data)))
        if not new or len(self._pending) >= self._most or time.monotonic() - self._since >= self._seconds:
            self.flush()  # a result written again (its part run again) is recorded with its new bytes at once

    def flush(self) -> None:
        """Record the results written since the last record."""
        if not self._pending:
            return
        self._ctx._store.add_results(self._ctx.job.id, self._pending)
        self._ctx.bytes_written += sum(r.size or 0 for r in self._pending)
        self._pending = []
        if self._limit:
            self._used = self._ctx._store.result_bytes(self._ctx.job.owner)
