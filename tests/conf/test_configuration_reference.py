"""docs/configuration.md is the Markdown reference written from the settings model (that the
committed file is the generated one: tests/conf/test_settings_reference.py)."""

from __future__ import annotations

import re

from conf.reference import reference_markdown
from conf.settings import ENV_PREFIX, GROUPS, Settings, SurveySettings

def _rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows[cells[0].strip("`")] = cells
    return rows


def test_every_setting_has_one_row_with_its_variable_default_and_meaning() -> None:
    rows = _rows(reference_markdown())
    defaults = Settings()
    for group, model in GROUPS.items():
        for name, field in model.model_fields.items():
            name_cell, env, kind, default, meaning = rows[name]
            assert env == f"`{ENV_PREFIX}{name.upper()}`"
            assert meaning and field.description and meaning.startswith(field.description.split()[0]), name
            value = getattr(getattr(defaults, group), name)
            if kind == "secret":
                assert default == "(none)"
            elif isinstance(value, bool):
                assert default == f"`{str(value).lower()}`", name
            elif isinstance(value, (int, float)):
                assert default == f"`{value!r}`", name
    for name in SurveySettings.model_fields:
        assert len(rows[name]) == 3, name
    expected = sum(len(m.model_fields) for m in GROUPS.values()) + len(SurveySettings.model_fields)
    assert len(rows) == expected


def test_the_reference_follows_changed_values() -> None:
    from conf import load_settings

    changed = load_settings(environ={"CUTOUT_JPEG_QUALITY": "70", "CUTOUT_LOG_FORMAT": "json"})
    rows = _rows(reference_markdown(changed))
    assert rows["jpeg_quality"][3] == "`70`" and rows["log_format"][3] == '`"json"`'
    assert rows["jpeg_quality"][2] == "integer"
    assert rows["log_format"][2] == '`"auto"` \\| `"json"` \\| `"text"`'
