"""conf/defaults.toml is written from the settings model and says exactly what it holds."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from pydantic import SecretStr

from conf import load_settings
from conf.reference import reference_markdown, reference_toml
from conf.settings import GROUPS, Settings, SurveySettings
from conftest import ROOT

COMMITTED = ROOT / "conf" / "defaults.toml"

# The references written from the settings model: the file, what writes it, the command.
GENERATED = [(COMMITTED, reference_toml, "config-defaults"),
             (ROOT / "docs" / "configuration.md", reference_markdown, "config-reference")]


@pytest.mark.parametrize("path, made, command", GENERATED, ids=["defaults.toml", "configuration.md"])
def test_committed_reference_is_the_generated_one(path: Path, made: Callable[[], str], command: str) -> None:
    assert path.read_text(encoding="utf-8") == made(), (
        f"{path.relative_to(ROOT)} is out of date: regenerate it with "
        f"`python -m soda.ops.cli {command} > {path.relative_to(ROOT)}`")


@pytest.mark.parametrize("path, made, command", GENERATED, ids=["defaults.toml", "configuration.md"])
def test_cli_prints_the_reference(path: Path, made: Callable[[], str], command: str) -> None:
    out = subprocess.run([sys.executable, "-m", "soda.ops.cli", command], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == made()


def test_reference_as_a_site_file_gives_the_defaults(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text(reference_toml())
    assert load_settings(environ={"CUTOUT_CONFIG": str(site)}) == Settings()


def test_reference_names_every_setting_in_its_table() -> None:
    tables = tomllib.loads(reference_toml())
    for group, model in GROUPS.items():
        secrets = {name for name, field in model.model_fields.items() if field.annotation is SecretStr}
        assert set(tables[group]) == set(model.model_fields) - secrets, group
    assert set(tables["surveys"]) == {"des", "lsst"}
    for table in tables["surveys"].values():
        assert set(table) == set(SurveySettings.model_fields)
    for name in ("session_secret", "oidc_client_secret", "notify_smtp_password", "notify_webhook_secret"):
        assert f"# {name}: set CUTOUT_{name.upper()} in the environment" in reference_toml()


def test_reference_of_changed_settings_loads_back_unchanged(tmp_path: Path) -> None:
    changed = load_settings(environ={
        "CUTOUT_DATA_DIR": str(tmp_path / "state"), "CUTOUT_CORS_ORIGINS": "https://a.example,https://b.example",
        "CUTOUT_HEARTBEAT_SECONDS": "1.5", "CUTOUT_JPEG_QUALITY": "70", "CUTOUT_LOG_JSON": "false",
        "CUTOUT_ANONYMOUS_ASYNC": "off", "CUTOUT_OIDC_SCOPES": 'openid "quoted" \\ scope',
        "CUTOUT_USER_QUOTA_BYTES": "0", "CUTOUT_SESSION_SECRET": "not-written"})
    site = tmp_path / "site.toml"
    site.write_text(reference_toml(changed))
    assert "not-written" not in site.read_text()
    loaded = load_settings(environ={"CUTOUT_CONFIG": str(site), "CUTOUT_SESSION_SECRET": "not-written"})
    assert loaded == changed
