"""Job kinds: what the generic UWS machinery runs.

A kind is a parameter validator (run in the web process when a job is created or its
parameters change; it gets the owner too, since limits may depend on who asks) and a run function (run by a Dramatiq actor in a worker). The run
function gets a ``JobContext`` to read its parameters and write its results; it
signals failure by raising from the ``dali.errors`` family:

- ``UsageError`` / ``MultiValuedParamNotSupported``: the request can never succeed →
  phase ERROR, errorSummary type ``fatal``, no retry;
- ``ServiceUnavailable``: transient → retried with backoff, then ERROR ``transient``;
- anything else: a fault of ours → ERROR ``fatal`` with a generic message (logged).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from dali.errors import ServiceError
from dali.params import Params
from storage.protocol import ResultStore

if TYPE_CHECKING:
    from uws.store import JobStore, JobView

RESULT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


class JobInterrupted(BaseException):
    """Raised inside a running job's thread when it was aborted, timed out or destroyed.

    A BaseException so that a kind's own ``except Exception`` cannot swallow it.
    """


@dataclass(frozen=True)
class JobKind:
    name: str
    validate: Callable[[Params, str | None], Params]
    run: Callable[["JobContext"], None]
    description: str = ""

    @property
    def queue(self) -> str:
        return f"uws-{self.name}"

    @property
    def actor_name(self) -> str:
        return f"uws_run_{self.name}"


class JobContext:
    """What a running job may see and do."""

    def __init__(self, job: "JobView", store: "JobStore", storage: ResultStore) -> None:
        self.job = job
        self._store = store
        self._storage = storage

    @property
    def job_id(self) -> str:
        return self.job.id

    @property
    def parameters(self) -> Params:
        return list(self.job.parameters)

    def values(self, name: str) -> list[str]:
        """All values of a parameter, matching names case-insensitively (DALI §3.1)."""
        upper = name.upper()
        return [v for n, v in self.job.parameters if n.upper() == upper]

    @contextmanager
    def result_writer(self, result_id: str, mime_type: str) -> Iterator[BinaryIO]:
        """Write one result; it is listed only once written completely."""
        if not RESULT_ID.match(result_id):
            raise ServiceError(f"invalid result id {result_id!r}")
        key = f"jobs/{self.job.id}/{result_id}"
        with self._storage.writer(key) as fh:
            yield fh
        self._store.add_result(self.job.id, result_id, key, mime_type, self._storage.size(key))

    def put_result(self, result_id: str, data: bytes, mime_type: str) -> None:
        with self.result_writer(result_id, mime_type) as fh:
            fh.write(data)
