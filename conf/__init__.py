"""Configuration: the typed settings object and its loader."""

from conf.settings import ConfigError, Settings, load_settings

__all__ = ["ConfigError", "Settings", "load_settings"]
