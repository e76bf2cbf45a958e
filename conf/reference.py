"""The settings reference, ``conf/defaults.toml``: every setting, its meaning and its default,
written from the model (``cutout config-defaults``) so it cannot drift from it."""

from __future__ import annotations

import inspect
import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from conf.settings import ENV_PREFIX, GROUPS, Settings

HEADER = f"""\
# Settings of the cutout service, with their defaults.
#
# Generated from conf/settings.py by `cutout config-defaults`: do not edit; the service
# does not read this file. To change a setting, put it in a site file named by
# {ENV_PREFIX}CONFIG (in its table as here, or as a key without a table), or set
# {ENV_PREFIX}<KEY> (upper case) in the environment. Precedence, highest first:
# environment, site file, these defaults. `cutout check-config` prints the effective values.
"""

WIDTH = 92


def reference_toml(settings: Settings | None = None) -> str:
    """``settings`` (the defaults unless given) as a commented TOML site file."""
    settings = settings or Settings()
    tables = [HEADER]
    for group in GROUPS:
        tables.append(_table(group, getattr(settings, group)))
    surveys_field = Settings.model_fields["surveys"]
    for name, survey in settings.surveys.items():
        tables.append(_table(f"surveys.{name}", survey, surveys_field.description))
    return "\n".join(tables)


def _table(header: str, section: BaseModel, note: str | None = None) -> str:
    lines = list(_comment(note or ""))
    lines += _comment(inspect.cleandoc(type(section).__doc__ or ""))
    lines.append(f"[{header}]")
    for name, field in type(section).model_fields.items():
        lines += _comment(field.description or "")
        value = getattr(section, name)
        if isinstance(value, SecretStr):  # never written out, not even a default
            lines.append(f"# {name}: set {ENV_PREFIX}{name.upper()} in the environment")
        else:
            lines.append(f"{name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _comment(text: str) -> Iterator[str]:
    for paragraph in text.split("\n\n"):
        for line in textwrap.wrap(" ".join(paragraph.split()), WIDTH - 2,
                                  break_on_hyphens=False):
            yield f"# {line}"


def _toml_value(value: Any) -> str:
    # JSON's string escapes are a subset of TOML basic strings'.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (str, Path)):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{json.dumps(str(k), ensure_ascii=False)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + (f" {items} " if items else "") + "}"
    raise TypeError(f"no TOML form for {value!r}")
