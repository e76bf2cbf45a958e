"""Every UWSConfig field is built from its own setting, and every UWS setting is used."""

from __future__ import annotations

import dataclasses

from conf import Settings, load_settings
from conf.settings import UWSSettings
from soda.ops.runtime import uws_config
from uws import UWSConfig

# UWSConfig field -> (settings group, setting)
WIRING = {
    "wait_max_seconds": ("uws", "wait_max_seconds"),
    "wait_recheck_seconds": ("uws", "wait_recheck_seconds"),
    "wait_max_per_caller": ("uws", "wait_max_per_caller"),
    "wait_max_total": ("uws", "wait_max_total"),
    "default_execution_duration": ("uws", "default_execution_duration"),
    "max_execution_duration": ("uws", "max_execution_duration"),
    "default_destruction_seconds": ("uws", "default_destruction_seconds"),
    "max_destruction_seconds": ("uws", "max_destruction_seconds"),
    "trust_forwarded_headers": ("ops", "trust_forwarded_headers"),
    "accel_redirect_prefix": ("ops", "accel_redirect_prefix"),
    "heartbeat_seconds": ("uws", "heartbeat_seconds"),
    "stale_job_seconds": ("uws", "stale_job_seconds"),
    "max_job_attempts": ("uws", "max_job_attempts"),
    "requeue_after_seconds": ("uws", "requeue_after_seconds"),
    "lost_message_grace_seconds": ("uws", "lost_message_grace_seconds"),
    "transient_retries": ("uws", "transient_retries"),
    "retry_backoff_ms": ("uws", "retry_backoff_ms"),
    "sweep_interval_seconds": ("uws", "sweep_interval_seconds"),
    "watchdog_interval": ("uws", "watchdog_interval_seconds"),
    "max_job_parameters": ("limits", "max_job_parameters"),
    "max_job_parameter_bytes": ("limits", "max_job_parameter_bytes"),
    "max_upload_bytes": ("limits", "max_upload_bytes"),
    "max_uploads_at_once": ("limits", "max_uploads_at_once"),
}
# UWS settings the runtime reads itself rather than passing on in UWSConfig.
USED_BY_THE_RUNTIME = {"worker_threads", "worker_poll_ms", "selftest_jobs"}

# Each setting a value of its own, none its default, consistent with the cross checks.
DISTINCT = {
    "wait_max_seconds": "11", "wait_recheck_seconds": "1.5", "wait_max_per_caller": "3",
    "wait_max_total": "33", "default_execution_duration": "700",
    "max_execution_duration": "7000", "default_destruction_seconds": "5000",
    "max_destruction_seconds": "9000", "worker_threads": "3", "worker_poll_ms": "45", "heartbeat_seconds": "2.5",
    "stale_job_seconds": "13", "max_job_attempts": "5", "requeue_after_seconds": "123",
    "lost_message_grace_seconds": "7.5", "transient_retries": "6", "retry_backoff_ms": "250",
    "sweep_interval_seconds": "17", "watchdog_interval_seconds": "0.125", "selftest_jobs": "true",
    "trust_forwarded_headers": "false", "accel_redirect_prefix": "/_wired",
    "max_job_parameters": "77", "max_job_parameter_bytes": "9999", "max_upload_bytes": "12345678", "max_uploads_at_once": "7",
}


def test_every_uws_config_field_has_a_setting_and_no_default() -> None:
    fields = dataclasses.fields(UWSConfig)
    assert set(WIRING) == {f.name for f in fields}
    assert all(f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
               for f in fields)


def test_every_uws_setting_is_wired() -> None:
    wired = {name for group, name in WIRING.values() if group == "uws"}
    assert wired | USED_BY_THE_RUNTIME == set(UWSSettings.model_fields)
    assert set(DISTINCT) >= set(UWSSettings.model_fields)


def test_each_uws_config_field_gets_its_own_setting() -> None:
    settings = load_settings(environ={f"CUTOUT_{name.upper()}": raw for name, raw in DISTINCT.items()})
    defaults = Settings()
    given = {name: getattr(getattr(settings, group), name) for group, name in WIRING.values()}
    assert len(set(given.values())) == len(given), "two settings share a value: a swap would pass"
    config = uws_config(settings)
    for field, (group, name) in WIRING.items():
        assert given[name] != getattr(getattr(defaults, group), name), name
        assert getattr(config, field) == given[name], field


def test_the_runtime_starts_its_workers_with_their_settings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from soda.ops.runtime import Runtime

    runtime = Runtime(load_settings(environ={"CUTOUT_DATA_DIR": str(tmp_path), "CUTOUT_WORKER_THREADS": "3",
                                             "CUTOUT_WORKER_POLL_MS": "45"}))
    try:
        worker = runtime.start_workers()
        assert (worker.worker_threads, worker.worker_timeout) == (3, 45)
    finally:
        runtime.stop_workers()
        runtime.close()
