"""The settings reference, ``conf/defaults.toml``: every setting, its meaning and its default,
written from the model (``cutout config-defaults``) so it cannot drift from it."""

from __future__ import annotations

import inspect
import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr

from conf.settings import ENV_PREFIX, GROUPS, Settings, SurveySettings

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


# --- the Markdown reference: docs/configuration.md ------------------------------------------------

MARKDOWN_HEADER = f"""\
# Configuration reference

Every setting of the service: its name, the environment variable that sets it, its type,
its default and its meaning. Generated from the settings object (`conf/settings.py`) by
`cutout config-reference > docs/configuration.md`; do not edit by hand (a test checks
that this file is the generated one). The same settings, as a TOML site file with these
defaults, are in `conf/defaults.toml` (`cutout config-defaults`).

A setting is given, highest precedence first, by the environment (`{ENV_PREFIX}<NAME>`,
upper case), by the TOML site file named by `{ENV_PREFIX}CONFIG` (in its table, e.g.
`[limits]`, or as a key without a table), else it has its default. Lists are given in the
environment as comma-separated values or as JSON; tables (`{{...}}`) as JSON.
`cutout check-config` prints the effective settings (secrets masked) or one line per bad
value. Secrets (type `secret`) have no default written anywhere: set them in the
environment.
"""


def reference_markdown(settings: Settings | None = None) -> str:
    """``settings`` (the defaults unless given) as a Markdown reference, one table per group."""
    settings = settings or Settings()
    parts = [MARKDOWN_HEADER]
    for group, model in GROUPS.items():
        parts.append(f"## `[{group}]`\n\n{_one_line(inspect.cleandoc(model.__doc__ or ''))}\n")
        parts.append("| setting | environment | type | default | meaning |\n| --- | --- | --- | --- | --- |")
        section = getattr(settings, group)
        for name, field in model.model_fields.items():
            value = getattr(section, name)
            default = "(none)" if isinstance(value, SecretStr) else _cell_code(_toml_value(value))
            parts.append(f"| `{name}` | `{ENV_PREFIX}{name.upper()}` | {_type_name(field.annotation)} | "
                         f"{default} | {_cell(field.description or '')} |")
        parts.append("")
    surveys_field = Settings.model_fields["surveys"]
    parts.append(f"## `[surveys.<name>]`\n\n{_one_line(surveys_field.description or '')} "
                 f"Surveys are set in the site file only (no environment variable); the defaults "
                 f"are {', '.join(f'`{n}`' for n in settings.surveys)}.\n")
    parts.append("| key | type | meaning |\n| --- | --- | --- |")
    for name, field in SurveySettings.model_fields.items():
        parts.append(f"| `{name}` | {_type_name(field.annotation)} | {_cell(field.description or '')} |")
    for name, survey in settings.surveys.items():
        lines = [line for line in _table(f"surveys.{name}", survey).splitlines() if not line.startswith("#")]
        parts.append(f"\nThe default `[surveys.{name}]`:\n\n```toml\n" + "\n".join(lines) + "\n```")
    return "\n".join(parts).rstrip() + "\n"


def _type_name(annotation: Any) -> str:
    if annotation is SecretStr:
        return "secret"
    origin = get_origin(annotation)
    if origin is Annotated:
        return _type_name(get_args(annotation)[0])
    if origin is Literal:
        return " \\| ".join(f"`{json.dumps(a)}`" for a in get_args(annotation))
    if origin in (tuple, list):
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        return f"list of {_type_name(args[0])}" if len(args) == 1 or len(set(args)) == 1 else \
            "(" + ", ".join(_type_name(a) for a in args) + ")"
    if origin is dict:
        key, value = get_args(annotation)
        return f"table of {_type_name(key)} → {_type_name(value)}"
    if origin in (Union, UnionType):
        return " or ".join(_type_name(a) for a in get_args(annotation))
    names = {bool: "boolean", int: "integer", float: "number", str: "string", Path: "path"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _cell(text: str) -> str:
    return _one_line(text).replace("|", "\\|")


def _cell_code(text: str) -> str:
    return f"`{text}`".replace("|", "\\|") if "`" not in text else f"``{text}``".replace("|", "\\|")
