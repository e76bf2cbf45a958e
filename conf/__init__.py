"""Configuration: the typed settings object and its loader."""

from conf.loader import ConfigError, load_settings
from conf.settings import Settings

__all__ = ["ConfigError", "Settings", "load_settings"]
