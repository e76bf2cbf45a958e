"""Building the settings at start, with one message per bad value.

Sources, highest precedence first: arguments (``load_settings(port=...)``), environment
variables ``CUTOUT_<NAME>``, the TOML site file named by ``CUTOUT_CONFIG``, and the
defaults of ``conf.settings``. Names are flat everywhere; the site file may also put a
setting in its group's table (``[uws] wait_max_seconds = 10``).
"""

from __future__ import annotations

import json
import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from conf.settings import ENV_PREFIX, GROUP_OF, GROUPS, Settings, mask_url

CONFIG_VARIABLE = f"{ENV_PREFIX}CONFIG"


class ConfigError(Exception):
    """Raised with one message per bad value."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Layers:
    """The values given so far, nested as the model wants them, and where each came from."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.origin: dict[str, str] = {}

    def put(self, name: str, value: Any, where: str) -> None:
        """A flat name goes into its group; anything else stays on top (surveys, or an
        unknown key that validation reports)."""
        group = GROUP_OF.get(name)
        if group is None:
            self.values[name] = value
        else:
            table = self.values.setdefault(group, {})
            if isinstance(table, dict):  # else the group itself is reported as invalid
                table[name] = value
        self.origin[name] = where

    def put_unknown(self, group: str, name: str, value: Any, where: str) -> None:
        """A key of a ``[group]`` table that is no setting: kept for validation to report."""
        table = self.values.setdefault(group, {})
        if isinstance(table, dict):
            table[name] = value
        self.origin[f"{group}.{name}"] = where


def _read_toml(path: Path, problems: list[str]) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        problems.append(f"{CONFIG_VARIABLE}={path}: no such file")
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{path}: not valid TOML ({exc})")
    return {}


def _add_site_file(layers: _Layers, path: str, problems: list[str]) -> None:
    site = _read_toml(Path(path), problems)
    for key, value in site.items():
        group = GROUP_OF.get(key)
        if key in GROUPS and isinstance(value, dict):
            _add_table(layers, key, value, path, problems)
        elif group and isinstance(site.get(group), dict) and key in site[group]:
            problems.append(f"{key} (from {path}): given twice, as a key and in the [{group}] table")
        else:
            layers.put(key, value, path)


def _add_table(layers: _Layers, group: str, table: dict[str, Any], path: str,
               problems: list[str]) -> None:
    layers.origin[group] = path
    for name, value in table.items():
        home = GROUP_OF.get(name)
        if home == group:
            layers.put(name, value, path)
        elif home:
            problems.append(f"{group}.{name} (from {path}): belongs in the [{home}] table")
        else:
            layers.put_unknown(group, name, value, path)


def _is_list(name: str) -> bool:
    annotation = GROUPS[GROUP_OF[name]].model_fields[name].annotation
    return typing.get_origin(annotation) in (tuple, list)


def _list_value(raw: str) -> Any:
    """A list from the environment: a JSON list, or comma-separated words."""
    if raw.lstrip().startswith("["):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw  # reported by validation with the setting's name
    return [item.strip() for item in raw.split(",") if item.strip()]


def _add_environment(layers: _Layers, env: Mapping[str, str], problems: list[str]) -> None:
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX) or key == CONFIG_VARIABLE:
            continue
        name = key[len(ENV_PREFIX):].lower()
        if name not in GROUP_OF:
            problems.append(f"{key}: unknown setting (known: {', '.join(sorted(GROUP_OF))})")
            continue
        layers.put(name, _list_value(raw) if _is_list(name) else raw, key)


def _setting_name(loc: tuple[int | str, ...]) -> str:
    """The name a person gave: flat for a grouped setting, dotted elsewhere."""
    if len(loc) >= 2 and loc[0] in GROUPS and GROUP_OF.get(str(loc[1])) == loc[0]:
        return str(loc[1])
    if loc and loc[0] == "surveys":
        return ".".join(str(part) for part in loc)
    return ".".join(str(part) for part in loc[:2]) or "?"


def _problems(exc: ValidationError, origin: Mapping[str, str]) -> list[str]:
    problems = []
    for err in exc.errors():
        name = _setting_name(err["loc"])
        where = origin.get(name) or origin.get(name.split(".")[0], "the defaults")
        label = where if where.startswith(ENV_PREFIX) else f"{name} (from {where})"
        shown = err.get("input")
        if name.endswith("_url") and isinstance(shown, str):
            shown = mask_url(shown)
        message = "unknown setting" if err["type"] == "extra_forbidden" else err["msg"]
        problems.append(f"{label}={shown!r}: {message}")
    return problems


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build the settings from defaults, site file, environment and ``overrides`` (flat
    names); raise ConfigError."""
    env = os.environ if environ is None else environ
    problems: list[str] = []
    layers = _Layers()
    site = env.get(CONFIG_VARIABLE)
    if site:
        _add_site_file(layers, site, problems)
    _add_environment(layers, env, problems)
    for name, value in overrides.items():
        layers.put(name, value, "argument")

    try:
        settings = Settings.model_validate(layers.values)
    except ValidationError as exc:
        raise ConfigError(problems + _problems(exc, layers.origin)) from None
    problems.extend(settings.cross_checks())
    if problems:
        raise ConfigError(problems)
    return settings
