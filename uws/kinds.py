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

Results count against the owner's result space (``uws.quota.Allowance.max_result_bytes``)
as they are written: a result that would pass it is refused (before it is written when
its size is known, ``put_result``; else deleted once written) and the job stops with a
``UsageError`` (phase ERROR); the results written before it are kept, and still count.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
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

if TYPE_CHECKING:
    from uws.store import JobStore, JobView

P = TypeVar("P")

RESULT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


class JobInterrupted(BaseException):
    """Raised inside a running job's thread when it was aborted, timed out or destroyed.

    A BaseException so that a kind's own ``except Exception`` cannot swallow it.
    """


def as_given(parsed: object, pairs: Params) -> Params:
    """The parameters document lists what the client sent."""
    return pairs


@dataclass(frozen=True)
class JobKind(Generic[P]):
    name: str
    params_type: type[P]
    parse: Callable[[Params, str | None], P]
    run: Callable[["JobContext[P]"], None]
    description: str = ""
    shown: Callable[[P, Params], Params] = field(default=as_given)

    @property
    def queue(self) -> str:
        return f"uws-{self.name}"

    @property
    def actor_name(self) -> str:
        return f"uws_run_{self.name}"

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

    def _check_result_space(self, size: int) -> None:
        """Every result of the owner's counts, those of their other jobs running now too."""
        limit = self._allowance.max_result_bytes
        if not limit:
            return
        used = self._store.result_bytes(self.job.owner)
        if used + size > limit:
            raise quota_reached(self._allowance, used, size, owner_name(self.job.owner))

    def put_result(self, result_id: str, data: bytes, mime_type: str) -> None:
        """Write one result of known size: refused before a byte is written when it would
        not fit in the owner's result space."""
        self._check_result_space(len(data))
        with self.result_writer(result_id, mime_type) as fh:
            fh.write(data)
