"""What a caller may do with jobs, from the ``limits`` settings: the one policy that both
the web process (``soda.web.access``, before a job is created or queued) and the workers
(``uws.service``, the result space while a job runs) apply."""

from __future__ import annotations

from conf.settings import LimitsSettings
from uws.ports import Caller
from uws.quota import Allowance


def job_allowance(limits: LimitsSettings, caller: Caller) -> Allowance:
    if caller.anonymous and limits.anonymous_async == "open":
        return Allowance()
    if caller.anonymous:
        return Allowance(may_create=limits.anonymous_async == "limited", list_jobs=False,
                         max_active_jobs=limits.anonymous_max_active_jobs,
                         max_unfinished_jobs=limits.anonymous_max_unfinished_jobs,
                         max_result_bytes=limits.anonymous_quota_bytes,
                         max_destruction_seconds=limits.anonymous_destruction_seconds)
    return Allowance(max_active_jobs=limits.user_max_active_jobs,
                     max_unfinished_jobs=limits.user_max_unfinished_jobs,
                     max_result_bytes=limits.user_quota_bytes)
