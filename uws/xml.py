"""UWS 1.1 XML documents (Appendix B schema), built with lxml.

Element order and the required-but-nillable elements follow the schema exactly, so
a job validates in every phase, PENDING included.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

from lxml import etree

from dali.timestamps import isoformat, utcnow
from uws.store import JobView

UWS_NS = "http://www.ivoa.net/xml/UWS/v1.0"
XLINK_NS = "http://www.w3.org/1999/xlink"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
NSMAP = {"uws": UWS_NS, "xlink": XLINK_NS, "xsi": XSI_NS}
# Our own elements inside uws:jobInfo (UWS 1.1 §2.2.3: any XML the service chooses).
PROGRESS_NS = "urn:x-uws:progress:v1"
UWS_VERSION = "1.1"

JobUrl = Callable[[str], str]


def _el(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, f"{{{UWS_NS}}}{name}")
    if text is not None:
        element.text = text
    return element


def _nillable(parent: etree._Element, name: str, text: str | None) -> None:
    element = _el(parent, name, text)
    if text is None:
        element.set(f"{{{XSI_NS}}}nil", "true")


def _time(value: dt.datetime | None) -> str | None:
    return isoformat(value) if value is not None else None


def _root(name: str) -> etree._Element:
    return etree.Element(f"{{{UWS_NS}}}{name}", nsmap=NSMAP)


def serialize(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def parameters_element(job: JobView, parent: etree._Element | None = None) -> etree._Element:
    element = _root("parameters") if parent is None else _el(parent, "parameters")
    for name, value in job.parameters:
        _el(element, "parameter", value).set("id", name)
    return element


def results_element(job: JobView, job_url: JobUrl,
                    parent: etree._Element | None = None) -> etree._Element:
    element = _root("results") if parent is None else _el(parent, "results")
    base = job_url(job.id)
    for result in job.results:
        ref = _el(element, "result")
        ref.set("id", result.id)
        ref.set(f"{{{XLINK_NS}}}type", "simple")
        ref.set(f"{{{XLINK_NS}}}href", f"{base}/results/{result.id}")
        if result.size is not None:
            ref.set("size", str(result.size))
        if result.mime_type:
            ref.set("mime-type", result.mime_type)
    return element


def job_document(job: JobView, job_url: JobUrl) -> bytes:
    root = _root("job")
    root.set("version", UWS_VERSION)
    _el(root, "jobId", job.id)
    if job.run_id is not None:
        _el(root, "runId", job.run_id)
    _nillable(root, "ownerId", job.owner)
    _el(root, "phase", job.phase.value)
    _nillable(root, "quote", _time(job.quote))
    _el(root, "creationTime", isoformat(job.creation_time))
    _nillable(root, "startTime", _time(job.start_time))
    _nillable(root, "endTime", _time(job.end_time))
    _el(root, "executionDuration", str(job.execution_duration))
    _nillable(root, "destruction", _time(job.destruction))
    parameters_element(job, root)
    results_element(job, job_url, root)
    if job.error_message:
        summary = _el(root, "errorSummary")
        summary.set("type", job.error_type or "fatal")
        summary.set("hasDetail", "true")
        _el(summary, "message", job.error_message)
    if job.progress is not None:
        progress_element(job, _el(root, "jobInfo"))
    return serialize(root)


def progress_element(job: JobView, parent: etree._Element, now: dt.datetime | None = None) -> etree._Element:
    """A parted job's progress: units in all parts (``total``), done and failed in the
    parts ended so far, parts planned and ended; while it runs, its rate (units per
    second since it started) and, once the rate is known, when it should end."""
    progress = job.progress
    assert progress is not None
    element = etree.SubElement(parent, f"{{{PROGRESS_NS}}}progress", nsmap={None: PROGRESS_NS})
    ended = progress.done + progress.failed
    element.set("total", str(progress.total))
    element.set("done", str(progress.done))
    element.set("failed", str(progress.failed))
    element.set("parts", str(progress.parts))
    element.set("partsDone", str(progress.parts_ended))
    if job.start_time is not None:
        until = job.end_time or now or utcnow()
        seconds = (until - job.start_time).total_seconds()
        if seconds > 0:
            rate = ended / seconds
            element.set("rate", f"{rate:.6g}")
            if job.end_time is None and rate > 0 and ended < progress.total:
                eta = until + dt.timedelta(seconds=(progress.total - ended) / rate)
                element.set("eta", isoformat(eta))
    return element


def job_list_document(jobs: Iterable[JobView], job_url: JobUrl) -> bytes:
    root = _root("jobs")
    root.set("version", UWS_VERSION)
    for job in jobs:
        ref = _el(root, "jobref")
        ref.set("id", job.id)
        ref.set(f"{{{XLINK_NS}}}type", "simple")
        ref.set(f"{{{XLINK_NS}}}href", job_url(job.id))
        _el(ref, "phase", job.phase.value)
        if job.run_id is not None:
            _el(ref, "runId", job.run_id)
        _nillable(ref, "ownerId", job.owner)
        _el(ref, "creationTime", isoformat(job.creation_time))
    return serialize(root)


def results_document(job: JobView, job_url: JobUrl) -> bytes:
    return serialize(results_element(job, job_url))


def parameters_document(job: JobView) -> bytes:
    return serialize(parameters_element(job))
