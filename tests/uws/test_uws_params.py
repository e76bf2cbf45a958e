"""UWS job-control values (uws/params.py, uws/phases.py) and the per-caller allowance
(uws/quota.py), without HTTP."""

from __future__ import annotations

import pytest

from dali.errors import AuthenticationError, ServiceUnavailable, UsageError
from uws.params import (
    LAST_MAX,
    RUNID_MAX,
    parse_duration,
    parse_last,
    parse_phase_filter,
    parse_run_id,
    parse_wait,
)
from uws.phases import ABORTABLE, ACTIVE, FINAL, RUNNABLE, Phase, forbidden_in_phase, parse_phase
from uws.quota import UNLIMITED, Allowance, Usage, check_run, refuse_creation, unlimited


def refused(parse, value: str) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError) as caught:
        parse(value)
    assert caught.value.status == 400
    return caught.value.message


# --- WAIT, EXECUTIONDURATION, LAST, RUNID, PHASE ------------------------------------------------

@pytest.mark.parametrize(("value", "seconds"), [("-1", -1), ("0", 0), ("30", 30), (" 7 ", 7), ("+5", 5)])
def test_wait(value, seconds):
    assert parse_wait(value) == seconds


def test_wait_refusals():
    assert refused(parse_wait, "-2") == "WAIT must be -1 or a number of seconds >= 0, not '-2'"
    assert refused(parse_wait, "1.5") == "WAIT must be an integer, not '1.5'"
    assert refused(parse_wait, "soon") == "WAIT must be an integer, not 'soon'"
    assert refused(parse_wait, "") == "WAIT must be an integer, not ''"


def test_execution_duration():
    assert parse_duration("0") == 0  # unlimited, as UWS §2.1.4 has it
    assert parse_duration("3600") == 3600
    assert refused(parse_duration, "-1") == ("EXECUTIONDURATION must be 0 (unlimited) or a positive number "
                                            "of seconds, not '-1'")
    assert refused(parse_duration, "1h") == "EXECUTIONDURATION must be an integer, not '1h'"


def test_last():
    assert parse_last("1") == 1
    assert parse_last(str(LAST_MAX)) == LAST_MAX
    assert parse_last("9" * 40) == LAST_MAX == 2**31 - 1  # more than any list: capped, not refused
    assert refused(parse_last, "0") == "LAST must be an integer greater than 0, not '0'"
    assert refused(parse_last, "-3") == "LAST must be an integer greater than 0, not '-3'"


def test_run_id_length():
    assert RUNID_MAX == 64
    assert parse_run_id("r" * 64) == "r" * 64
    assert parse_run_id("") == ""
    assert refused(parse_run_id, "r" * 65) == "RUNID may have at most 64 characters"


def test_phase_filter_is_case_sensitive():
    assert parse_phase_filter("EXECUTING") is Phase.EXECUTING
    assert parse_phase_filter("ARCHIVED") is Phase.ARCHIVED
    message = refused(parse_phase_filter, "executing")
    assert message.startswith("PHASE must be one of PENDING, QUEUED, EXECUTING, COMPLETED, ERROR, ABORTED, ")
    assert message.endswith("not 'executing'")
    assert parse_phase("RUN") is None and parse_phase("pending") is None


def test_phase_sets():
    assert RUNNABLE == {Phase.PENDING, Phase.HELD}
    assert ACTIVE == {Phase.PENDING, Phase.QUEUED, Phase.EXECUTING}
    assert not FINAL & ABORTABLE
    assert not FINAL & RUNNABLE
    assert Phase.UNKNOWN not in FINAL | ABORTABLE
    error = forbidden_in_phase("the job is COMPLETED")
    assert (error.status, error.text) == (403, "UsageError: the job is COMPLETED")


# --- the allowance -------------------------------------------------------------------------------

LIMITED = Allowance(max_active_jobs=2, max_result_bytes=1000, retry_after_seconds=45)


def test_check_run_just_under_the_limits():
    check_run(LIMITED, Usage(active_jobs=1, result_bytes=999), "alice")
    check_run(UNLIMITED, Usage(active_jobs=10**6, result_bytes=10**15), "alice")  # 0: no limit


def test_result_space_at_the_quota_is_refused_403():
    with pytest.raises(UsageError) as caught:
        check_run(LIMITED, Usage(active_jobs=0, result_bytes=1000), "alice")
    assert caught.value.status == 403
    assert caught.value.message == ("result space quota reached: alice keeps 1000 bytes of results and "
                                    "the quota is 1000; delete jobs to free space")


def test_active_jobs_at_the_limit_are_refused_429_with_retry_after():
    with pytest.raises(ServiceUnavailable) as caught:
        check_run(LIMITED, Usage(active_jobs=2, result_bytes=0), "anonymous callers")
    assert caught.value.status == 429
    assert caught.value.headers == {"Retry-After": "45"}
    assert caught.value.text.startswith("ServiceUnavailable: active job limit reached: anonymous callers has 2 jobs")
    assert "the limit is 2" in caught.value.message


def test_space_is_checked_before_the_active_jobs():
    with pytest.raises(UsageError, match="result space quota reached"):
        check_run(LIMITED, Usage(active_jobs=5, result_bytes=5000), "alice")


def test_each_limit_alone():
    only_jobs = Allowance(max_active_jobs=1)
    check_run(only_jobs, Usage(active_jobs=0, result_bytes=10**12), "bob")
    with pytest.raises(ServiceUnavailable):
        check_run(only_jobs, Usage(active_jobs=1, result_bytes=0), "bob")
    only_space = Allowance(max_result_bytes=1)
    check_run(only_space, Usage(active_jobs=10**6, result_bytes=0), "bob")
    with pytest.raises(UsageError):
        check_run(only_space, Usage(active_jobs=0, result_bytes=1), "bob")


def test_defaults_and_refusal():
    assert unlimited(object()) is UNLIMITED  # type: ignore[arg-type]
    assert (UNLIMITED.may_create, UNLIMITED.list_jobs, UNLIMITED.max_active_jobs,
            UNLIMITED.max_result_bytes, UNLIMITED.max_destruction_seconds) == (True, True, 0, 0, 0)
    error = refuse_creation(object())  # type: ignore[arg-type]
    assert isinstance(error, AuthenticationError)
    assert error.status == 401
    assert error.text.startswith("AuthenticationError: log in to create jobs here")
