"""The typed settings: defaults, overrides, one message per bad value, check-config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conf import ConfigError, load_settings
from conftest import ROOT


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in __import__("os").environ.items() if not k.startswith("CUTOUT_")}
    return subprocess.run([sys.executable, "-m", "soda.ops.cli", *args], env={**clean, **env},
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_defaults_come_from_the_settings_model():
    s = load_settings(environ={})
    assert s.ops.embedded and s.ops.port == 8000 and s.uws.wait_max_seconds == 60
    assert s.ops.effective_database_url.endswith("cutout-data/cutout.sqlite")
    assert s.surveys["des"].rgb_bands == ("i", "r", "g")


def test_environment_overrides_and_data_dir_moves_all_state(tmp_path):
    s = load_settings(environ={"CUTOUT_DATA_DIR": str(tmp_path), "CUTOUT_PORT": "9001",
                               "CUTOUT_SELFTEST_JOBS": "true"})
    assert s.ops.port == 9001 and s.uws.selftest_jobs is True
    assert s.ops.effective_database_url == f"sqlite:///{tmp_path / 'cutout.sqlite'}"
    assert s.ops.results_dir == tmp_path / "results"


def test_site_file_sits_between_defaults_and_environment(tmp_path):
    site = tmp_path / "site.toml"
    site.write_text('port = 7000\nwait_max_seconds = 10\n')
    s = load_settings(environ={"CUTOUT_CONFIG": str(site), "CUTOUT_PORT": "7001"})
    assert (s.ops.port, s.uws.wait_max_seconds) == (7001, 10)


def test_site_file_takes_group_tables_and_flat_keys(tmp_path):
    site = tmp_path / "site.toml"
    site.write_text('log_level = "debug"\n[uws]\nwait_max_seconds = 10\n[soda]\njpeg_quality = 70\n'
                    '[surveys.other]\nfactory = "soda.surveys.des:DESSurvey"\nroot = "other"\n')
    s = load_settings(environ={"CUTOUT_CONFIG": str(site), "CUTOUT_JPEG_QUALITY": "75"})
    assert (s.ops.log_level, s.uws.wait_max_seconds, s.soda.jpeg_quality) == ("DEBUG", 10, 75)
    assert list(s.surveys) == ["other"] and s.survey_root("other") == s.ops.data_dir / "other"


def test_site_file_problems_name_the_key_and_the_file(tmp_path):
    site = tmp_path / "site.toml"
    site.write_text('nope = 1\nport = 80\nwait_max_seconds = 0\n[ops]\nport = 81\nlog_json = "maybe"\n'
                    '[uws]\nhost = "::"\nextra = 2\n[surveys.des]\nfactory = "no-colon"\nroot = "x"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"CUTOUT_CONFIG": str(site)})
    problems = caught.value.problems
    expected = [f"nope (from {site})=1: unknown setting",
                f"port (from {site}): given twice, as a key and in the [ops] table",
                f"wait_max_seconds (from {site})=0: Value error, must be greater than 0",
                f"log_json (from {site})='maybe': ",
                f"uws.host (from {site}): belongs in the [ops] table",
                f"uws.extra (from {site})=2: unknown setting",
                f"surveys.des.factory (from {site})='no-colon': "]
    assert len(problems) == len(expected), problems
    for start in expected:
        assert sum(p.startswith(start) for p in problems) == 1, (start, problems)


def test_cors_origins_from_the_environment_as_json_or_words():
    words = load_settings(environ={"CUTOUT_CORS_ORIGINS": "https://a.example, https://b.example"})
    listed = load_settings(environ={"CUTOUT_CORS_ORIGINS": '["https://a.example", "https://b.example"]'})
    assert words.ops.cors_origins == listed.ops.cors_origins == ("https://a.example", "https://b.example")


def test_arguments_override_the_environment():
    s = load_settings(environ={"CUTOUT_PORT": "7001", "CUTOUT_HOST": "0.0.0.0"}, port=7002)
    assert (s.ops.host, s.ops.port) == ("0.0.0.0", 7002)


def test_every_bad_value_gets_its_own_message():
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={
            "CUTOUT_PORT": "eighty", "CUTOUT_BROKER_URL": "amqp://x", "CUTOUT_WAIT_MAX_SECONDS": "0",
            "CUTOUT_DATABASE_URL": "mysql://db", "CUTOUT_NOPE": "1", "CUTOUT_LOG_LEVEL": "LOUD"})
    problems = caught.value.problems
    assert len(problems) == 6, problems
    for name in ("CUTOUT_PORT", "CUTOUT_BROKER_URL", "CUTOUT_WAIT_MAX_SECONDS",
                 "CUTOUT_DATABASE_URL", "CUTOUT_NOPE", "CUTOUT_LOG_LEVEL"):
        assert sum(p.startswith(name) for p in problems) == 1, (name, problems)


def test_log_format_is_a_choice_and_log_json_its_alias():
    assert load_settings(environ={}).ops.log_format == "auto"
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"CUTOUT_LOG_FORMAT": "xml", "CUTOUT_LOG_JSON": "maybe"})
    problems = caught.value.problems
    assert len(problems) == 2, problems
    assert problems[0].startswith("CUTOUT_LOG_FORMAT='xml': ") and "'auto', 'json' or 'text'" in problems[0]
    assert problems[1] == "CUTOUT_LOG_JSON='maybe': Value error, must be true, false or \"auto\""


def test_cross_checks():
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"CUTOUT_DEFAULT_EXECUTION_DURATION": "7200",
                               "CUTOUT_HEARTBEAT_SECONDS": "20"})
    text = str(caught.value)
    assert "DEFAULT_EXECUTION_DURATION=7200" in text and "STALE_JOB_SECONDS" in text


def test_check_config_prints_settings_with_secrets_masked(tmp_path):
    out = cli("check-config", env={"CUTOUT_DATA_DIR": str(tmp_path),
                                   "CUTOUT_DATABASE_URL": "postgresql://app:s3cret@db:5432/cutout",
                                   "CUTOUT_BROKER_URL": "redis://:hunter2@cache:6379/0"})
    assert out.returncode == 0, out.stderr
    assert "s3cret" not in out.stdout and "hunter2" not in out.stdout
    assert "database_url = postgresql://app:***@db:5432/cutout" in out.stdout
    assert "shape = distributed" in out.stdout
    assert "configuration OK" in out.stdout


def test_check_config_reports_errors_and_fails():
    out = cli("check-config", env={"CUTOUT_PORT": "0", "CUTOUT_DATABASE_URL": "postgresql://u:pw@h/db",
                                   "CUTOUT_STALE_JOB_SECONDS": "x"})
    assert out.returncode == 2
    assert "CUTOUT_PORT=" in out.stderr and "CUTOUT_STALE_JOB_SECONDS=" in out.stderr
    assert "Traceback" not in out.stderr


def test_worker_refuses_the_embedded_shape(tmp_path):
    out = cli("worker", env={"CUTOUT_DATA_DIR": str(tmp_path)})
    assert out.returncode == 2 and "CUTOUT_BROKER_URL" in out.stderr


def test_serve_refuses_bad_configuration_before_starting():
    out = cli("serve", "--port", "70000", env={})
    assert out.returncode == 2 and "port" in out.stderr and "Traceback" not in out.stderr


def test_no_secret_files_in_repository():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert not [f for f in tracked if Path(f).suffix in (".pem", ".key") or Path(f).name == ".env"]
