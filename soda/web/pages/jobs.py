"""My jobs: the logged-in user's jobs of every kind, filtered by phase and kind, a page
at a time; each job's results to download one by one or as one archive; cancel (UWS
§2.2.3.1 PHASE=ABORT) and delete (§2.2.3.2), asked for by the page's script at the job's
own URL with the session's CSRF token."""

from __future__ import annotations

import re

from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from dali.errors import UsageError
from dali.http import Endpoint
from soda.web.pages.site import Caller, Site
from uws.phases import ACTIVE, Phase
from uws.store import JobView

PAGE_SIZE = 20
MAX_PAGE = 500              # 10,000 jobs deep: enough, and every page's query bounded
RESULTS_LISTED = 25         # results of a job listed one by one; more: the archive and the list
PHASES = [p.value for p in Phase if p not in (Phase.UNKNOWN,)]


@dataclass(frozen=True)
class JobRow:
    job: JobView
    url: str
    results: int
    bytes: int
    listed: tuple[Any, ...]   # (result id, url, size) when few enough
    done: int | None          # a parted job's units ended, of
    total: int | None

    @property
    def active(self) -> bool:
        return self.job.phase in ACTIVE


def _filters(site: Site, query: Any) -> tuple[str, str, int]:
    phase = (query.get("phase") or "").strip().upper()
    if phase and phase not in PHASES:
        raise UsageError(f"phase must be one of {', '.join(PHASES)}, not {phase[:40]!r}")
    kinds = {kind.name for kind in site.runtime.mounts.values()}
    kind = (query.get("kind") or "").strip()
    if kind and kind not in kinds:
        raise UsageError(f"kind must be one of {', '.join(sorted(kinds))}, not {kind[:40]!r}")
    text = query.get("page") or "1"
    if not re.fullmatch(r"[0-9]{1,6}", text) or not 1 <= int(text) <= MAX_PAGE:  # int() of 4301 digits raises
        raise UsageError(f"page must be a whole number from 1 to {MAX_PAGE}, not {text[:40]!r}")
    return phase, kind, int(text)


def _rows(site: Site, base: str, owner: str, phase: str, kind: str, number: int) -> tuple[list[JobRow], bool]:
    """The page's jobs, newest first, and whether a next page exists."""
    store = site.runtime.store
    paths = {k.name: path.rstrip("/") for path, k in site.runtime.mounts.items()}
    jobs = store.list(owner=owner, kind=kind or None, phases=[Phase(phase)] if phase else None,
                      last=PAGE_SIZE + 1, skip=(number - 1) * PAGE_SIZE)
    more = len(jobs) > PAGE_SIZE
    jobs = jobs[:PAGE_SIZE]
    totals = store.result_totals(j.id for j in jobs)
    rows = []
    for job in jobs:
        url = f"{base}{paths.get(job.kind, '/' + job.kind)}/{job.id}"
        count, size = totals.get(job.id, (0, 0))
        full = store.get(job.id, results=count <= RESULTS_LISTED) if count <= RESULTS_LISTED or job.parts else job
        listed = tuple((r.id, f"{url}/results/{r.id}", r.size) for r in (full.results if full else ()))
        progress = full.progress if full else None
        rows.append(JobRow(full or job, url, count, size, listed,
                           progress.done + progress.failed if progress else None,
                           progress.total if progress else None))
    return rows, more


def page(site: Site) -> Endpoint:
    async def jobs(request: Request) -> Response:
        outcome = await site.logged_in(request)
        if not isinstance(outcome, Caller):
            return outcome
        caller = outcome
        try:
            phase, kind, number = _filters(site, request.query_params)
        except UsageError as exc:
            return site.error(request, caller, exc)
        base = site.base(request)
        rows, more = await run_in_threadpool(_rows, site, base, caller.name or "", phase, kind, number)
        kinds = sorted({k.name for k in site.runtime.mounts.values()})

        def link(to: int) -> str:
            parts = [f"phase={phase}"] * bool(phase) + [f"kind={kind}"] * bool(kind) + [f"page={to}"]
            return f"{base}/ui/jobs?" + "&".join(parts)
        return site.render(request, "jobs.html", caller, rows=rows, phases=PHASES, kinds=kinds,
                           phase=phase, kind=kind, number=number,
                           previous=link(number - 1) if number > 1 else None,
                           next=link(number + 1) if more else None)
    return jobs
