"""The UWS 1.1 REST binding (§2.2) for one job kind, mounted at ``/{jobs}``.

Job-control parameters accepted in the creation POST (UWS §2.1.11 asks us to say so):
PHASE=RUN, RUNID, EXECUTIONDURATION and DESTRUCTION. They are not job parameters.
NOTIFY (``uws.notices``), also accepted at creation only, is listed with the job's
parameters but never reaches its kind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from dali.errors import AuthenticationError, AuthorizationError, ServiceUnavailable, UsageError, not_found
from dali.limits import UploadLimits
from dali.http import Endpoint, client_address, path_param, public_base, read_params, text_response, xml_response
from dali.params import Params, RequestParams
from dali.timestamps import isoformat, parse_timestamp
from dali.votable import VOTABLE_TYPE, error_document
from uws import xml
from uws.archive import Archive, FilePart, Member, crc32_of, tar_archive, zip_archive
from uws.downloads import archive_response
from uws.kinds import JobKind, Uploads
from uws.notices import NAME as NOTIFY
from uws.params import parse_duration, parse_last, parse_phase_filter, parse_run_id, parse_wait
from uws.phases import ABORTABLE, ACTIVE, RUNNABLE, Phase, forbidden_in_phase
from uws.ports import Caller, CallerResolver
from uws.quota import Allowance, AllowanceFor, check_run, owner_name, refuse_creation, unlimited
from uws.service import Parsed, UWSService
from uws.store import JobView
from uws.waits import WaitSlots

CONTROL = frozenset({"PHASE", "RUNID", "EXECUTIONDURATION", "DESTRUCTION", "REQUEST"})

def see_other(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


def _by_method(handlers: dict[str, Endpoint]) -> Endpoint:
    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)
    return dispatch



class JobRoutes:
    def __init__(self, service: UWSService, kind: JobKind, path: str,
                 identify: CallerResolver, allowance: AllowanceFor = unlimited) -> None:
        self.service = service
        self.allowance = allowance
        self.store = service.store
        self.kind = kind
        self.path = path.rstrip("/")
        self.identify = identify
        self.waits = WaitSlots(service.config.wait_max_per_caller, service.config.wait_max_total)
        self.upload_limits = UploadLimits(kind.uploads, service.config.max_upload_bytes)
        # Files are held in memory while they are read and checked: a few requests at a time.
        self._uploading = asyncio.Semaphore(service.config.max_uploads_at_once)

    def routes(self) -> list[BaseRoute]:
        p = self.path
        by_path: dict[str, dict[str, Endpoint]] = {
            p: {"GET": self.list_jobs, "POST": self.create_job},
            p + "/{job_id}": {"GET": self.get_job, "POST": self.post_job, "DELETE": self.delete_job},
            p + "/{job_id}/phase": {"GET": self.get_phase, "POST": self.post_phase},
            p + "/{job_id}/executionduration": {"GET": self.get_duration, "POST": self.post_duration},
            p + "/{job_id}/destruction": {"GET": self.get_destruction, "POST": self.post_destruction},
            p + "/{job_id}/quote": {"GET": self.get_quote},
            p + "/{job_id}/error": {"GET": self.get_error},
            p + "/{job_id}/results": {"GET": self.get_results},
            p + "/{job_id}/results/{result_id}": {"GET": self.get_result},
            p + "/{job_id}/results.zip": {"GET": self.get_zip},
            p + "/{job_id}/results.tar": {"GET": self.get_tar},
            p + "/{job_id}/parameters": {"GET": self.get_parameters, "POST": self.post_parameters},
            p + "/{job_id}/owner": {"GET": self.get_owner},
        }
        # One route per resource, so a 405 lists every method the resource has (Allow).
        return [Route(path, _by_method(handlers), methods=list(handlers)) for path, handlers in by_path.items()]

    # --- URLs and lookups ------------------------------------------------------------

    def list_url(self, request: Request) -> str:
        return public_base(request, self.service.config.trust_forwarded_headers) + self.path

    def job_url_builder(self, request: Request) -> Callable[[str], str]:
        base = self.list_url(request)
        return lambda job_id: f"{base}/{job_id}"

    def job_url(self, request: Request, job_id: str) -> str:
        return self.job_url_builder(request)(job_id)

    async def _job(self, request: Request) -> tuple[JobView, Caller]:
        identity = await self.identify(request)
        job_id = path_param(request, "job_id")
        job = await run_in_threadpool(self.store.get, job_id)
        if job is None or job.kind != self.kind.name:
            raise not_found(f"no job {job_id!r} at {self.list_url(request)}")
        # UWS §3: another caller's job is forbidden (we do not hide that it exists).
        # An anonymous job's unguessable URL is its only key, so any anonymous caller
        # holding it may use it; a logged-in caller is not its owner.
        if job.owner != identity.user_id:
            if identity.anonymous:  # 401: logging in may give access
                raise AuthenticationError(f"job {job_id!r} belongs to a user; log in as its owner")
            whose = "another user" if job.owner else "an anonymous caller (log out to use it)"
            raise AuthorizationError(f"job {job_id!r} belongs to {whose}")
        return job, identity

    async def _reload(self, job_id: str) -> JobView:
        job = await run_in_threadpool(self.store.get, job_id)
        if job is None:
            raise not_found(f"job {job_id!r} no longer exists")
        return job

    async def _parse(self, parameters: Params, owner: str | None, files: Uploads | None = None) -> Parsed[Any]:
        return await run_in_threadpool(self.service.parse, self.kind, parameters, owner, files)

    async def _uploads_from_own_results(self, request: Request, identity: Caller, pairs: Params,
                                        files: Uploads) -> tuple[Params, Uploads]:
        """DALI 1.1 §3.4.5 ``UPLOAD=name,URL`` where the URL is a result of one of the caller's
        own jobs on this service (e.g. another job's table): read from the store, as if sent
        inline. Any other URL is left for the kind to refuse: the service fetches nothing."""
        base = public_base(request, self.service.config.trust_forwarded_headers)
        taken, out = dict(files), []
        for name, value in pairs:
            table, _, source = value.partition(",")
            if name.upper() != "UPLOAD" or not source.startswith(base + "/"):
                out.append((name, value))
                continue
            job_id, result_id = _result_path(source[len(base):])
            data = await self._own_result(identity, job_id, result_id, source)
            field = f"url-{len(taken) + 1}"
            if len(taken) >= self.kind.uploads:
                raise UsageError(f"a job here takes at most {self.kind.uploads} files ({source[:200]} is one too many)")
            if len(data) > self.service.config.max_upload_bytes:
                raise UsageError(f"{source[:200]} is larger than {self.service.config.max_upload_bytes} bytes",
                                 status=413)
            taken[field] = data
            out.append((name, f"{table},param:{field}"))
        return out, taken

    async def _own_result(self, identity: Caller, job_id: str, result_id: str, url: str) -> bytes:
        job = await run_in_threadpool(self.store.get, job_id)
        result = job.result(result_id) if job is not None and job.owner == identity.user_id else None
        path = await run_in_threadpool(self.service.storage.local_path, result.key) if result else None
        if path is None or not path.is_file():
            raise UsageError(f"UPLOAD names {url[:200]}, which is no result of a job of yours on this service")
        return await run_in_threadpool(path.read_bytes)

    async def _check_run_quotas(self, identity: Caller, allowance: Allowance) -> None:
        """Quotas are checked before a job is queued, so nothing runs over them: the active
        jobs and the result space. (The jobs not yet finished are counted by the creation
        itself, ``UWSService.create``.)"""
        if not (allowance.max_active_jobs or allowance.max_result_bytes):
            return
        usage = await run_in_threadpool(self.store.usage, identity.user_id)
        check_run(allowance, usage, owner_name(identity.user_id))

    # --- the job list ------------------------------------------------------------------

    async def list_jobs(self, request: Request) -> Response:
        identity = await self.identify(request)
        params = await read_params(request)
        phases = [parse_phase_filter(v) for v in params.all("PHASE")]
        if not self.allowance(identity).list_jobs:
            return xml_response(xml.job_list_document([], self.job_url_builder(request)))
        after_text = params.single("AFTER")
        last_text = params.single("LAST")
        after = parse_timestamp("AFTER", after_text) if after_text else None
        last = parse_last(last_text) if last_text else None
        jobs = await run_in_threadpool(
            lambda: self.store.list(owner=identity.user_id, kind=self.kind.name,
                                    phases=phases, after=after, last=last))
        return xml_response(xml.job_list_document(jobs, self.job_url_builder(request)))

    async def create_job(self, request: Request) -> Response:
        if not self.kind.uploads:
            return await self._create_job(request)
        if self._uploading.locked():
            raise ServiceUnavailable(f"{self.service.config.max_uploads_at_once} jobs with files are being "
                                     f"read here now; try again in a moment", headers={"Retry-After": "5"})
        async with self._uploading:
            return await self._create_job(request)

    async def _create_job(self, request: Request) -> Response:
        identity = await self.identify(request)
        allowance = self.allowance(identity)
        if not allowance.may_create:
            raise refuse_creation(identity)
        params = await read_params(request, self.upload_limits if self.kind.uploads else None)
        phase = params.single("PHASE")
        if phase is not None and phase != "RUN":
            raise UsageError(f"PHASE in a job creation request may only be RUN, not {phase!r}")
        run_id = params.single("RUNID")
        duration = params.single("EXECUTIONDURATION")
        destruction = params.single("DESTRUCTION")
        notices = await run_in_threadpool(self.service.parse_notices, params.all(NOTIFY), identity.anonymous)
        pairs, files = params.without(CONTROL | {NOTIFY}), params.files
        if self.kind.uploads:
            pairs, files = await self._uploads_from_own_results(request, identity, pairs, files)
        job_parameters = await self._parse(pairs, identity.user_id, files)
        # Refused before the job exists: nothing half-made is left behind.
        if phase == "RUN":
            await self._check_run_quotas(identity, allowance)
        job = await run_in_threadpool(
            lambda: self.service.create(
                self.kind, owner=identity.user_id, parameters=job_parameters,
                run_id=parse_run_id(run_id) if run_id else None,
                execution_duration=parse_duration(duration) if duration else None,
                destruction=parse_timestamp("DESTRUCTION", destruction) if destruction else None,
                allowance=allowance, notices=notices,
                link=self.service.notice_link(self.list_url(request), self.path),
                client=None if identity.user_id is not None else
                client_address(request, self.service.config.trust_forwarded_headers)))
        if phase == "RUN":
            try:
                await run_in_threadpool(self.service.run, job)
            except ServiceUnavailable as exc:
                # The client was not told the job's URL: a job left PENDING would be lost to
                # it (an anonymous caller cannot list its jobs), so none is left.
                await run_in_threadpool(self.service.destroy, job.id)
                raise ServiceUnavailable("the job queue is not reachable; no job was created, "
                                         "send the request again later",
                                         headers=exc.headers or {"Retry-After": "10"}) from None
        return see_other(self.job_url(request, job.id))

    # --- one job -----------------------------------------------------------------------

    async def get_job(self, request: Request) -> Response:
        job, identity = await self._job(request)
        params = await read_params(request)
        wait = params.single("WAIT")
        phase = params.single("PHASE")
        if wait is not None:
            job = await self._bounded_wait(request, identity, job, parse_wait(wait),
                                           parse_phase_filter(phase) if phase else None)
        return xml_response(xml.job_document(job, self.job_url_builder(request)))

    async def _bounded_wait(self, request: Request, identity: Caller, job: JobView, seconds: int,
                            phase: Phase | None) -> JobView:
        """A WAIT within the bounds per caller and in total (``uws.waits``); beyond them the
        job as it is now, at once (UWS §2.2.1.2 allows returning early)."""
        with self.waits.slot(_wait_key(request, identity, self.service.config.trust_forwarded_headers)) as granted:
            if granted:
                return await self._wait(job, seconds, phase)
        return job

    async def _wait(self, job: JobView, seconds: int, phase: Phase | None) -> JobView:
        """UWS §2.2.1.2: block until the phase changes, at most ``seconds`` (capped).

        A server shutting down ends every wait at once (the notifier's shutdown), so its
        waiters get the job document instead of a connection cut at the graceful timeout.
        """
        notifier = self.service.notifier
        if job.phase not in ACTIVE or (phase is not None and job.phase != phase) or notifier.closing:
            return job
        cap = self.service.config.wait_max_seconds
        timeout = cap if seconds < 0 else min(seconds, cap)
        if timeout <= 0:
            return job
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        recheck = self.service.config.wait_recheck_seconds
        async with notifier.watch(job.id) as changed:
            # Read again now that we listen: a change in between is not missed.
            current = await self._reload(job.id)
            while current.phase == job.phase and not notifier.closing:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(changed.wait(), min(remaining, recheck))
                except TimeoutError:
                    pass
                changed.clear()
                if notifier.closing:
                    break  # answer what we have; the database may be closing too
                current = await self._reload(job.id)
        return current

    async def post_job(self, request: Request) -> Response:
        job, _ = await self._job(request)
        params = await read_params(request)
        action = params.single("ACTION")
        if action == "DELETE":
            return await self._delete(request, job)
        # DALI §2.1: job parameters are never accepted at the job URL itself.
        raise UsageError("a POST to the job URL takes only ACTION=DELETE; send parameters to "
                         f"{self.job_url(request, job.id)}/parameters and phases to .../phase")

    async def delete_job(self, request: Request) -> Response:
        job, _ = await self._job(request)
        return await self._delete(request, job)

    async def _delete(self, request: Request, job: JobView) -> Response:
        await run_in_threadpool(self.service.destroy, job.id)
        return see_other(self.list_url(request))

    # --- atomic children ---------------------------------------------------------------

    async def get_phase(self, request: Request) -> Response:
        job, _ = await self._job(request)
        return text_response(job.phase.value)

    async def post_phase(self, request: Request) -> Response:
        job, identity = await self._job(request)
        params = await read_params(request)
        value = params.single("PHASE")
        if value == "RUN":
            if job.phase in RUNNABLE:
                await self._check_run_quotas(identity, self.allowance(identity))
                await run_in_threadpool(self.service.run, job)
            elif job.phase not in (Phase.QUEUED, Phase.EXECUTING):
                raise forbidden_in_phase(f"job {job.id} is {job.phase.value} and cannot be run again")
        elif value == "ABORT":
            if job.phase in ABORTABLE:
                await run_in_threadpool(self.store.abort, job.id)
            elif job.phase != Phase.ABORTED:
                raise forbidden_in_phase(f"job {job.id} is {job.phase.value}; only an active job can be aborted")
        else:
            raise UsageError(f"PHASE must be RUN or ABORT, not {value!r}" if value
                             else "PHASE=RUN or PHASE=ABORT is required")
        return see_other(self.job_url(request, job.id))

    async def get_duration(self, request: Request) -> Response:
        job, _ = await self._job(request)
        return text_response(str(job.execution_duration))

    async def post_duration(self, request: Request) -> Response:
        job, _ = await self._job(request)
        value = (await read_params(request)).single("EXECUTIONDURATION")
        if value is None:
            raise UsageError("EXECUTIONDURATION is required")
        seconds = self.service.clamp_duration(parse_duration(value))
        if not await run_in_threadpool(self.store.set_execution_duration, job.id, seconds):
            raise forbidden_in_phase(f"executionDuration can change only while the job is PENDING "
                                     f"(job {job.id} is {job.phase.value})")
        return see_other(self.job_url(request, job.id))

    async def get_destruction(self, request: Request) -> Response:
        job, _ = await self._job(request)
        return text_response(isoformat(job.destruction) if job.destruction else "")

    async def post_destruction(self, request: Request) -> Response:
        job, identity = await self._job(request)
        value = (await read_params(request)).single("DESTRUCTION")
        if value is None:
            raise UsageError("DESTRUCTION is required")
        when = self.service.clamp_destruction(job.creation_time, parse_timestamp("DESTRUCTION", value),
                                              self.allowance(identity).max_destruction_seconds)
        if not await run_in_threadpool(self.store.set_destruction, job.id, when):
            raise not_found(f"job {job.id!r} no longer exists")
        return see_other(self.job_url(request, job.id))

    async def get_quote(self, request: Request) -> Response:
        job, _ = await self._job(request)
        return text_response(isoformat(job.quote) if job.quote else "")

    async def get_owner(self, request: Request) -> Response:
        job, _ = await self._job(request)
        return text_response(job.owner or "")

    async def get_error(self, request: Request) -> Response:
        """DALI §4.2: the error document of a failed job, served with 200; else 404."""
        job, _ = await self._job(request)
        if job.phase not in (Phase.ERROR, Phase.ABORTED) or not job.error_message:
            raise not_found(f"job {job.id} has no error (it is {job.phase.value})")
        return Response(error_document(job.error_message), media_type=VOTABLE_TYPE)

    # --- containers ---------------------------------------------------------------------

    async def get_results(self, request: Request) -> Response:
        job, _ = await self._job(request)
        response = xml_response(xml.results_document(job, self.job_url_builder(request)))
        base = self.job_url(request, job.id) + "/results"
        response.headers["Link"] = (f'<{base}.zip>; rel="alternate"; type="application/zip", '
                                    f'<{base}.tar>; rel="alternate"; type="application/x-tar"')
        return response

    async def get_zip(self, request: Request) -> Response:
        return await self._archive(request, "zip")

    async def get_tar(self, request: Request) -> Response:
        return await self._archive(request, "tar")

    async def _archive(self, request: Request, form: str) -> Response:
        """Every result listed now as one archive (``uws.archive``), sent by this process
        (nginx has no archive to send), resumable with Range (``uws.downloads``). A job
        still EXECUTING gives the results so far: its ETag changes as results arrive."""
        job, _ = await self._job(request)
        archive = await run_in_threadpool(self._lay_out, job, form)
        return archive_response(request, archive, f"{job.id}.{form}")

    def _lay_out(self, job: JobView, form: str) -> Archive:
        members = []
        for result in job.results:
            path = self.service.storage.local_path(result.key)
            try:
                if path is None:
                    raise FileNotFoundError(result.key)
                stored = FilePart.of(path)
                crc = 0
                if form == "zip":  # kept with the result since it was written; else read now
                    known = result.crc32 is not None and result.size == stored.size
                    crc = result.crc32 if known else crc32_of(path)  # type: ignore[assignment]
            except FileNotFoundError:
                raise not_found(f"result {result.id!r} of job {job.id} is no longer stored") from None
            except OSError as exc:  # the store unmounted or unreadable: may not last
                raise ServiceUnavailable(f"the results store failed ({exc.strerror or exc})",
                                         headers={"Retry-After": "10"}) from None
            members.append(Member(result.id, stored, crc))
        # One time for every entry, fixed for the job's life: the same results give the same bytes.
        if form == "zip":
            return zip_archive(members, job.creation_time)
        return tar_archive(members, job.creation_time)

    async def get_result(self, request: Request) -> Response:
        job, _ = await self._job(request)
        result_id = path_param(request, "result_id")
        result = job.result(result_id)
        if result is None:
            raise not_found(f"job {job.id} has no result {result_id!r}")
        path = await run_in_threadpool(self.service.storage.local_path, result.key)
        if path is None:
            raise not_found(f"result {result.id!r} of job {job.id} is no longer stored")
        media_type = result.mime_type or "application/octet-stream"
        accel = self.service.config.accel_redirect_prefix
        if accel:
            # Behind nginx: it sends the file itself (an internal location over the store).
            return Response(media_type=media_type, headers={
                "X-Accel-Redirect": accel.rstrip("/") + "/" + quote(result.key),
                "Content-Disposition": f'inline; filename="{result.id}"'})
        return FileResponse(path, media_type=media_type, filename=result.id, content_disposition_type="inline")

    async def get_parameters(self, request: Request) -> Response:
        job, _ = await self._job(request)
        return xml_response(xml.parameters_document(job))

    async def post_parameters(self, request: Request) -> Response:
        """UWS §2.1.11: names POSTed replace every earlier value of that name."""
        job, identity = await self._job(request)
        if job.phase != Phase.PENDING:
            raise forbidden_in_phase(f"parameters can change only while the job is PENDING "
                                     f"(job {job.id} is {job.phase.value})")
        posted = RequestParams((await read_params(request)).without(CONTROL))
        if posted.all(NOTIFY):
            raise UsageError(f"{NOTIFY} is accepted only when the job is created")
        replaced = {name.upper() for name, _ in posted.pairs}
        kept = [(n, v) for n, v in job.parameters if n.upper() not in replaced]
        notify = [(n, v) for n, v in kept if n.upper() == NOTIFY]
        parsed = await self._parse([(n, v) for n, v in kept if n.upper() != NOTIFY] + posted.pairs,
                                   identity.user_id)
        parsed = Parsed(list(parsed.shown) + notify, parsed.value)
        if not await run_in_threadpool(self.service.set_parameters, self.kind, job.id, parsed):
            raise forbidden_in_phase(f"job {job.id} left PENDING; parameters were not changed")
        return see_other(self.job_url(request, job.id))


def _wait_key(request: Request, identity: Caller, trust_forwarded: bool) -> str:
    """Whose WAITs count together: a user's, or an anonymous client address's (behind a
    trusted proxy, the client's, not the proxy's)."""
    if identity.user_id is not None:
        return "user:" + identity.user_id
    return "anonymous:" + client_address(request, trust_forwarded)


def _result_path(path: str) -> tuple[str, str]:
    """(job id, result id) of ``/<job list>/<job id>/results/<result id>``; ("", "") otherwise."""
    parts = path.split("?")[0].strip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "results":
        return unquote(parts[-3]), unquote(parts[-1])
    return "", ""
