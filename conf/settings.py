"""The one settings object of the service, loaded and validated at start.

Sources, highest precedence first: environment variables ``CUTOUT_<NAME>``, the TOML
site file named by ``CUTOUT_CONFIG``, and ``conf/defaults.toml``.
"""

from __future__ import annotations

import json
import os
import tomllib
import typing
from typing import Literal
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, field_validator

ENV_PREFIX = "CUTOUT_"


class ConfigError(Exception):
    """Raised with one message per bad value."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class SurveySettings(BaseModel):
    """One ``[surveys.<name>]`` table: adding a survey is one module plus one of these."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    factory: str                 # "package.module:Class", a soda.surveys.base.Survey
    root: Path                   # image store; relative paths are taken from data_dir
    index: str = "index.csv"     # the tile index, relative to root
    hdus: tuple[str, ...] = ("SCI", "MSK", "WGT")
    demo_builder: str = ""       # "package.module:function" that builds demo images into root
    rgb_bands: tuple[str, ...] = ()  # the default colour triplet (R, G, B) for RGB=default

    @field_validator("factory", "demo_builder")
    @classmethod
    def _import_path(cls, v: str) -> str:
        if v and (":" not in v or not all(v.split(":"))):
            raise ValueError("must be an import path like 'package.module:name'")
        return v


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path
    database_url: str = ""
    broker_url: str = ""
    redis_namespace: str = "cutout"
    host: str = "127.0.0.1"
    port: int = 8000
    trust_forwarded_headers: bool = True
    accel_redirect_prefix: str = ""
    log_level: str = "INFO"
    log_json: bool = True

    wait_max_seconds: int
    default_execution_duration: int
    max_execution_duration: int
    default_destruction_seconds: int
    max_destruction_seconds: int

    worker_threads: int
    heartbeat_seconds: float
    stale_job_seconds: float
    max_job_attempts: int
    requeue_after_seconds: float
    transient_retries: int
    retry_backoff_ms: int
    sweep_interval_seconds: float

    selftest_jobs: bool = False

    # SODA: dataset IDs are ivo://<ivoa_authority>/<survey>?<image>.
    ivoa_authority: str = "demo.cutout"
    surveys: dict[str, SurveySettings] = {}
    # Origins allowed to call the VO endpoints from a browser (CORS); "*" for any.
    cors_origins: tuple[str, ...] = ("*",)
    max_cutout_pixels: int = 25_000_000
    max_sync_cutouts: int = 50
    # PNG/JPEG: largest side of a preview, most source pixels read for one, JPEG quality.
    max_preview_size: int = 4096
    max_preview_source_pixels: int = 100_000_000
    jpeg_quality: int = 90
    # Threads of a web process that cut and encode /sync answers; 0: one per CPU core.
    cutout_threads: int = 0

    # Who is asking: sessions, login methods, tokens (see conf/defaults.toml).
    public_url: str = ""
    session_secret: SecretStr = SecretStr("")
    session_secret_file: str = ""
    session_cookie_name: str = "cutout_session"
    session_cookie_secure: bool = True
    session_max_age_seconds: int = 43200
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: SecretStr = SecretStr("")
    oidc_client_secret_file: str = ""
    oidc_scopes: str = "openid profile email"
    oidc_username_claim: str = "sub"
    oidc_accept_access_tokens: bool = True
    oidc_token_audience: str = ""
    oidc_clock_skew_seconds: int = 30
    saml_idp_metadata: str = ""
    saml_username_attribute: str = "eduPersonPrincipalName"
    saml_sp_key_file: str = ""
    saml_sp_cert_file: str = ""
    api_token_default_days: int = 90
    api_token_max_days: int = 365
    # Anonymous callers and per-user limits.
    anonymous_access: bool = True
    anonymous_async: Literal["off", "limited", "open"] = "limited"
    anonymous_max_cutout_pixels: int = 1_048_576
    anonymous_max_sync_cutouts: int = 1
    anonymous_files: bool = False
    anonymous_rate_limit: int = 60
    anonymous_rate_window_seconds: int = 60
    anonymous_max_active_jobs: int = 4
    anonymous_destruction_seconds: int = 3600
    user_quota_bytes: int = 10 * 2**30
    user_max_active_jobs: int = 20

    @field_validator("ivoa_authority")
    @classmethod
    def _authority(cls, v: str) -> str:
        # IVOA Identifiers 2.0 §2.3.1: an authority id starts with an alphanumeric.
        if not v or not v[0].isalnum() or any(c in v for c in "/?#"):
            raise ValueError("must be an IVOA authority such as 'example.org' (no '/', '?' or '#')")
        return v

    @field_validator("jpeg_quality")
    @classmethod
    def _quality(cls, v: int) -> int:
        if not 1 <= v <= 95:
            raise ValueError("must be between 1 and 95 (Pillow's useful JPEG range)")
        return v

    @field_validator("max_cutout_pixels", "max_sync_cutouts", "max_preview_size", "max_preview_source_pixels")
    @classmethod
    def _limit(cls, v: int) -> int:
        if v <= 0:
            raise ValueError("must be greater than 0")
        return v

    @field_validator("anonymous_max_cutout_pixels", "anonymous_max_sync_cutouts",
                     "anonymous_rate_window_seconds", "anonymous_destruction_seconds",
                     "session_max_age_seconds", "api_token_default_days", "api_token_max_days")
    @classmethod
    def _positive_int(cls, v: int) -> int:
        if v <= 0:
            raise ValueError("must be greater than 0")
        return v

    @field_validator("anonymous_rate_limit", "oidc_clock_skew_seconds", "anonymous_max_active_jobs", "user_quota_bytes", "cutout_threads",
                     "user_max_active_jobs")
    @classmethod
    def _zero_is_off(cls, v: int) -> int:
        if v < 0:
            raise ValueError("must be 0 (no limit) or more")
        return v

    @field_validator("oidc_issuer")
    @classmethod
    def _issuer(cls, v: str) -> str:
        if v and urlsplit(v).scheme not in ("http", "https"):
            raise ValueError("must be the provider's https:// issuer URL (or empty: no OIDC login)")
        return v.rstrip("/")

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, v: str) -> str:
        if v and urlsplit(v).scheme not in ("http", "https"):
            raise ValueError("must be the service's public https:// base URL, e.g. https://cutouts.example.org")
        return v.rstrip("/")

    @field_validator("oidc_scopes")
    @classmethod
    def _scopes(cls, v: str) -> str:
        if "openid" not in v.split():
            raise ValueError("must include 'openid'")
        return v

    @field_validator("port")
    @classmethod
    def _port(cls, v: int) -> int:
        if not 0 < v < 65536:
            raise ValueError("must be a TCP port between 1 and 65535")
        return v

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, v: str) -> str:
        if v and urlsplit(v).scheme.split("+")[0] not in ("sqlite", "postgres", "postgresql"):
            raise ValueError("must start with sqlite:/// or postgresql:// (or be empty for SQLite in data_dir)")
        return v

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, v: str) -> str:
        if v and urlsplit(v).scheme not in ("redis", "rediss"):
            raise ValueError("must be a redis:// or rediss:// URL (or empty for the embedded broker)")
        return v

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, v: str) -> str:
        if v.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return v.upper()

    @field_validator(
        "wait_max_seconds", "default_destruction_seconds", "max_destruction_seconds",
        "worker_threads", "max_job_attempts", "heartbeat_seconds", "stale_job_seconds",
        "requeue_after_seconds", "sweep_interval_seconds", "retry_backoff_ms",
    )
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("must be greater than 0")
        return v

    @field_validator("default_execution_duration", "max_execution_duration", "transient_retries")
    @classmethod
    def _not_negative(cls, v: int) -> int:
        if v < 0:
            raise ValueError("must be 0 or more")
        return v

    # Derived values: one place that says where state lives.
    @property
    def embedded(self) -> bool:
        return not self.broker_url

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'cutout.sqlite').resolve()}"

    @property
    def results_dir(self) -> Path:
        return self.data_dir / "results"

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer)

    @property
    def saml_enabled(self) -> bool:
        return bool(self.saml_idp_metadata)

    @property
    def login_enabled(self) -> bool:
        return self.oidc_enabled or self.saml_enabled

    def secret(self, name: str) -> str:
        """A secret from its setting (the environment) or else from its ``_file`` setting."""
        value: SecretStr = getattr(self, name)
        if value.get_secret_value():
            return value.get_secret_value()
        path = getattr(self, f"{name}_file")
        return Path(path).read_text().strip() if path else ""

    def survey_root(self, name: str) -> Path:
        return self.data_dir / self.surveys[name].root

    def cross_checks(self) -> list[str]:
        problems = []
        if self.max_execution_duration and self.default_execution_duration > self.max_execution_duration:
            problems.append(
                f"{ENV_PREFIX}DEFAULT_EXECUTION_DURATION={self.default_execution_duration}: "
                f"must not exceed max_execution_duration ({self.max_execution_duration})")
        if self.max_execution_duration and not self.default_execution_duration:
            problems.append(
                f"{ENV_PREFIX}DEFAULT_EXECUTION_DURATION=0 (unlimited): not allowed while "
                f"max_execution_duration is {self.max_execution_duration}")
        if self.default_destruction_seconds > self.max_destruction_seconds:
            problems.append(
                f"{ENV_PREFIX}DEFAULT_DESTRUCTION_SECONDS={self.default_destruction_seconds}: "
                f"must not exceed max_destruction_seconds ({self.max_destruction_seconds})")
        if self.stale_job_seconds < 2 * self.heartbeat_seconds:
            problems.append(
                f"{ENV_PREFIX}STALE_JOB_SECONDS={self.stale_job_seconds}: must be at least twice "
                f"heartbeat_seconds ({self.heartbeat_seconds}), or live jobs would be taken for dead")
        if self.oidc_enabled and not self.oidc_client_id:
            problems.append(f"{ENV_PREFIX}OIDC_CLIENT_ID: required when oidc_issuer is set "
                            f"({self.oidc_issuer})")
        if self.api_token_default_days > self.api_token_max_days:
            problems.append(f"{ENV_PREFIX}API_TOKEN_DEFAULT_DAYS={self.api_token_default_days}: "
                            f"must not exceed api_token_max_days ({self.api_token_max_days})")
        if self.anonymous_destruction_seconds > self.max_destruction_seconds:
            problems.append(f"{ENV_PREFIX}ANONYMOUS_DESTRUCTION_SECONDS={self.anonymous_destruction_seconds}: "
                            f"must not exceed max_destruction_seconds ({self.max_destruction_seconds})")
        for name in ("session_secret_file", "oidc_client_secret_file", "saml_sp_key_file",
                     "saml_sp_cert_file"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                problems.append(f"{ENV_PREFIX}{name.upper()}={path}: no such file")
        if self.saml_enabled and not self.public_url:
            problems.append(f"{ENV_PREFIX}PUBLIC_URL: required when saml_idp_metadata is set "
                            f"(the SAML entity id and ACS URL are built from it)")
        metadata = self.saml_idp_metadata
        if metadata and "://" not in metadata and not Path(metadata).is_file():
            problems.append(f"{ENV_PREFIX}SAML_IDP_METADATA={metadata}: no such file (give a path or an https:// URL)")
        return problems

    def describe(self) -> dict[str, Any]:
        """The effective settings with secrets masked, for ``cutout check-config``."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            out[name] = mask_url(value) if name.endswith("_url") else value
        out["effective_database_url"] = mask_url(self.effective_database_url)
        out["results_dir"] = self.results_dir
        out["shape"] = "embedded" if self.embedded else "distributed"
        return out


def mask_url(url: str) -> str:
    """Hide the password of a URL (``postgresql://u:***@host/db``)."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _read_toml(path: Path, problems: list[str]) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        problems.append(f"{ENV_PREFIX}CONFIG={path}: no such file")
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{path}: not valid TOML ({exc})")
    return {}


def _is_list(name: str) -> bool:
    return typing.get_origin(Settings.model_fields[name].annotation) in (tuple, list)


def _list_value(raw: str) -> Any:
    """A list from the environment: a JSON list, or comma-separated words."""
    if raw.lstrip().startswith("["):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw  # reported by validation with the setting's name
    return [item.strip() for item in raw.split(",") if item.strip()]


def defaults() -> dict[str, Any]:
    with resources.files("conf").joinpath("defaults.toml").open("rb") as fh:
        return tomllib.load(fh)


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build the settings from defaults, site file and environment; raise ConfigError."""
    env = os.environ if environ is None else environ
    problems: list[str] = []
    values = defaults()
    origin = {key: "conf/defaults.toml" for key in values}

    site = env.get(f"{ENV_PREFIX}CONFIG")
    if site:
        site_values = _read_toml(Path(site), problems)
        values.update(site_values)
        origin.update({key: site for key in site_values})

    fields = Settings.model_fields
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX) or key == f"{ENV_PREFIX}CONFIG":
            continue
        name = key[len(ENV_PREFIX):].lower()
        if name not in fields or name == "surveys":
            problems.append(f"{key}: unknown setting (known: {', '.join(sorted(fields))})")
            continue
        values[name] = _list_value(raw) if _is_list(name) else raw
        origin[name] = key
    values.update(overrides)
    origin.update({key: "argument" for key in overrides})

    try:
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else "?"
            where = origin.get(name, "settings")
            label = where if where.startswith(ENV_PREFIX) else f"{name} (from {where})"
            shown = err.get("input")
            if name.endswith("_url") and isinstance(shown, str):
                shown = mask_url(shown)
            problems.append(f"{label}={shown!r}: {err['msg']}")
        raise ConfigError(problems) from None
    problems.extend(settings.cross_checks())
    if problems:
        raise ConfigError(problems)
    return settings
