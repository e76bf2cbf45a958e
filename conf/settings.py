"""The one settings object of the service: every default is written here, once.

Settings are grouped (``settings.uws.wait_max_seconds``) but every name is unique across
the groups, so the environment (``CUTOUT_WAIT_MAX_SECONDS``) and the site file can name
a setting without its group; ``conf.loader`` builds the object, ``conf.reference``
writes ``conf/defaults.toml`` from it.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator

ENV_PREFIX = "CUTOUT_"


def _greater_than_zero(v: float) -> float:
    if v <= 0:
        raise ValueError("must be greater than 0")
    return v


def _zero_or_more(v: int) -> int:
    if v < 0:
        raise ValueError("must be 0 or more")
    return v


def _zero_is_off(v: int) -> int:
    if v < 0:
        raise ValueError("must be 0 (no limit) or more")
    return v


PositiveInt = Annotated[int, AfterValidator(_greater_than_zero)]
PositiveFloat = Annotated[float, AfterValidator(_greater_than_zero)]
NonNegativeInt = Annotated[int, AfterValidator(_zero_or_more)]
LimitOrOff = Annotated[int, AfterValidator(_zero_is_off)]


class Group(BaseModel):
    # validate_default: the defaults below go through the same checks as given values.
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class OpsSettings(Group):
    """Where state lives, how the processes listen and log."""

    data_dir: Path = Field(Path("cutout-data"), description=(
        "Where all state lives: the SQLite database (unless database_url is set), job results, "
        "the demo survey. Relative paths are taken from the working directory."))
    database_url: str = Field("", description=(
        "Empty: SQLite in data_dir. Otherwise sqlite:///path or postgresql://user:pass@host/db."))
    broker_url: str = Field("", description=(
        "Empty: the embedded shape (Dramatiq stub broker, workers inside `cutout serve`). "
        "Otherwise redis://host:port/db: the distributed shape (`cutout worker` processes)."))
    redis_namespace: str = Field("cutout", description=(
        "Prefix of every key the service keeps in Redis (queues, phase notifications)."))
    database_connect_timeout_seconds: PositiveInt = Field(5, description=(
        "PostgreSQL: give up opening a connection after this long (a frozen or unreachable "
        "server is then answered with a 503 instead of holding requests)."))
    database_statement_timeout_seconds: NonNegativeInt = Field(10, description=(
        "PostgreSQL: the server cancels any statement running longer than this (0: never); "
        "a call still unanswered 2 s later (a frozen server) has its connection cut by the "
        "service, and handing out a pooled connection is bounded by the connect timeout."))
    redis_socket_timeout_seconds: PositiveFloat = Field(5.0, description=(
        "The job queue's Redis client: give up connecting, or waiting for an answer, after "
        "this long."))
    host: str = Field("127.0.0.1", description="Address `cutout serve` listens on (--host).")
    port: int = Field(8000, description="TCP port `cutout serve` listens on (--port).")
    public_url: str = Field("", description=(
        "The service's public base URL as users see it (https://cutouts.example.org). Needed by "
        "SAML: our SP entity id and ACS URL are built from it. Elsewhere URLs follow the request."))
    trust_forwarded_headers: bool = Field(True, description=(
        "Honour X-Forwarded-Proto/-Host/-Prefix (absolute URLs) and X-Forwarded-For (the "
        "client address of the rate limits) when they come from one of trusted_proxies."))
    trusted_proxies: tuple[str, ...] = Field((), description=(
        "Addresses or networks (CIDR) of the reverse proxies in front of the service, e.g. "
        "[\"127.0.0.1\"] or [\"10.0.0.0/8\"]: only their X-Forwarded-* headers count; "
        "anyone else's are dropped. Empty: no one's. CUTOUT_TRUSTED_PROXIES takes a JSON "
        "list or comma-separated entries."))
    operator_clients: tuple[str, ...] = Field(("127.0.0.1", "::1"), description=(
        "Addresses or networks (CIDR) of the operators: they may read /metrics and see why a "
        "check failed on /readyz and /availability (others see only \"database: unavailable\"; "
        "the log has the detail). Behind a trusted proxy the address it forwards counts. "
        "Default: this host only. CUTOUT_OPERATOR_CLIENTS takes a JSON list or comma-separated "
        "entries."))
    hsts_max_age_seconds: NonNegativeInt = Field(31536000, description=(
        "Strict-Transport-Security max-age sent on answers to requests that came over https "
        "(the scheme, or a trusted proxy's X-Forwarded-Proto); 0: no such header."))
    accel_redirect_prefix: str = Field("", description=(
        "Behind nginx: the internal location that serves the results directory (e.g. "
        "\"/_results\"); result downloads then answer X-Accel-Redirect and nginx sends the file. "
        "Empty: Python sends it."))
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING, ERROR or CRITICAL.")
    log_format: Literal["auto", "json", "text"] = Field("auto", description=(
        "\"json\": one JSON object per log line (time, level, logger, process, message, and "
        "the request id that follows a job into its worker), for log collectors; \"text\": "
        "the same as readable lines; \"auto\": text when the log goes to a terminal, JSON "
        "otherwise (a service manager, a container, a file)."))
    log_json: bool | Literal["auto"] = Field("auto", description=(
        "The older switch, kept as an alias: true means log_format = \"json\", false means "
        "\"text\" (and wins over log_format); \"auto\" leaves log_format in charge."))
    cors_origins: tuple[str, ...] = Field(("*",), description=(
        "Origins allowed to call the VO endpoints from a browser (CORS): [\"*\"] or a list such "
        "as [\"https://aladin.cds.unistra.fr\"]. CUTOUT_CORS_ORIGINS takes a JSON list or "
        "comma-separated origins."))
    max_request_body_bytes: PositiveInt = Field(1_048_576, description=(
        "Largest request body the application reads (Content-Length or bytes streamed); a "
        "larger one is refused with 413. 1 MiB holds the largest legitimate SODA POST many "
        "times over: max_form_fields values of a few hundred bytes each, or a POLYGON of "
        "thousands of vertices."))
    max_form_fields: PositiveInt = Field(1000, description=(
        "Most fields a form body may carry (urlencoded or multipart); more is refused with 413. "
        "A job with one POS or ID per target needs one field per target."))
    max_form_field_bytes: PositiveInt = Field(65_536, description=(
        "Largest single form field; a larger one is refused with 413. A POLYGON of 1000 "
        "vertices written with 10 digits is about 22 kB."))
    request_header_timeout_seconds: PositiveFloat = Field(10.0, description=(
        "`cutout serve`: a connection that has not sent a whole request head this long after "
        "it opened (or after its previous response) is closed. Behind nginx, "
        "client_header_timeout does the same before the request reaches us."))
    request_body_timeout_seconds: PositiveFloat = Field(30.0, description=(
        "Longest wait for the next part of a request body; a client that stops sending is "
        "answered 408."))
    keep_alive_timeout_seconds: PositiveInt = Field(5, description=(
        "`cutout serve`: an idle keep-alive connection is closed after this long."))
    max_connections: PositiveInt = Field(1000, description=(
        "`cutout serve`, per web process: beyond this many open connections (or requests in "
        "progress) a request is answered 503 ServiceUnavailable with Retry-After. Behind "
        "nginx, limit_conn bounds connections per client before they reach us."))
    listen_backlog: PositiveInt = Field(2048, description=(
        "`cutout serve`: connections the kernel queues before the process accepts them."))
    max_request_head_bytes: PositiveInt = Field(65_536, description=(
        "`cutout serve`: most bytes of a request head (request line and headers) held while "
        "it arrives; a head still incomplete beyond it is refused (400). Above the 32 kB "
        "request line nginx lets through (large_client_header_buffers), for long /sync query "
        "strings."))
    accept_error_log_seconds: PositiveFloat = Field(60.0, description=(
        "When the process cannot accept connections (out of file descriptors), this error is "
        "logged at most once per this many seconds, with the count of the ones left out."))
    audit_keep_days: NonNegativeInt = Field(90, description=(
        "Days the audit records of served cutouts (who cut what, when, how much: one per "
        "/sync answer, async job and bulk job part; the operators' statistics at /stats.json) "
        "are kept; older ones are deleted by the periodic sweeps (and `cutout audit purge`). "
        "0: nothing is recorded, and records kept before are deleted."))

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, v: str) -> str:
        if v and urlsplit(v).scheme not in ("http", "https"):
            raise ValueError("must be the service's public https:// base URL, e.g. https://cutouts.example.org")
        return v.rstrip("/")

    @field_validator("trusted_proxies", "operator_clients")
    @classmethod
    def _trusted_proxies(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for entry in v:
            try:
                out.append(str(ipaddress.ip_network(entry.strip(), strict=False)))
            except ValueError:
                raise ValueError(f"{entry!r} is not an address or a network such as 10.0.0.0/8") from None
        return tuple(out)

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

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format(cls, v: object) -> object:
        return v.lower() if isinstance(v, str) else v

    @field_validator("log_json", mode="before")
    @classmethod
    def _log_json(cls, v: object) -> object:
        # One message for a bad value, not one per member of the union.
        words = {"true": True, "1": True, "yes": True, "on": True,
                 "false": False, "0": False, "no": False, "off": False, "auto": "auto"}
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.strip().lower() in words:
            return words[v.strip().lower()]
        raise ValueError('must be true, false or "auto"')

    @property
    def effective_log_format(self) -> Literal["auto", "json", "text"]:
        """log_format, unless the older log_json says true or false."""
        if isinstance(self.log_json, bool):
            return "json" if self.log_json else "text"
        return self.log_format

    @property
    def embedded(self) -> bool:
        return not self.broker_url

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'cutout.sqlite').resolve()}"

    @property
    def results_dir(self) -> Path:
        return self.data_dir / "results"


class UWSSettings(Group):
    """UWS job control (durations in seconds) and the workers that run the jobs."""

    wait_max_seconds: PositiveInt = Field(60, description=(
        "Longest a blocking WAIT request is held; a client asking longer (or -1) gets this."))
    wait_recheck_seconds: PositiveFloat = Field(5.0, description=(
        "A blocking WAIT is woken by phase notifications; it also reads the job again this "
        "often, in case a notification is lost."))
    default_execution_duration: NonNegativeInt = Field(600, description=(
        "Execution duration of a job whose client gives none; 0: unlimited."))
    max_execution_duration: NonNegativeInt = Field(3600, description=(
        "Longest execution duration a client may ask for; 0: clients may ask for unlimited."))
    default_destruction_seconds: PositiveInt = Field(604800, description=(
        "A job is destroyed this long after its creation unless its client asks for sooner "
        "(7 days)."))
    max_destruction_seconds: PositiveInt = Field(2592000, description=(
        "Latest destruction a client may ask for, counted from the job's creation (30 days)."))
    worker_threads: PositiveInt = Field(4, description=(
        "Job threads of a `cutout worker` process (and of `cutout serve` in the embedded shape)."))
    worker_poll_ms: PositiveInt = Field(100, description=(
        "How long an idle job thread waits for a message before it looks whether it should "
        "stop: stopping a worker takes up to twice this."))
    heartbeat_seconds: PositiveFloat = Field(5.0, description=(
        "How often a worker records that its running jobs are alive."))
    stale_job_seconds: PositiveFloat = Field(30.0, description=(
        "An EXECUTING job whose worker has not sent a heartbeat for this long is re-queued "
        "(or put in ERROR once max_job_attempts is reached)."))
    max_job_attempts: PositiveInt = Field(2, description=(
        "How many times a job is started before losing its worker puts it in ERROR."))
    requeue_after_seconds: PositiveFloat = Field(600.0, description=(
        "A QUEUED job not picked up for this long has its message sent again (lost messages). "
        "With Redis this is only the fallback: a QUEUED job whose message Redis no longer holds "
        "for delivery (lost in a restart, or taken by a worker without a heartbeat for "
        "stale_job_seconds) is sent again after lost_message_grace_seconds."))
    lost_message_grace_seconds: PositiveFloat = Field(5.0, description=(
        "A job QUEUED for this long whose message the broker does not hold for delivery (or, "
        "where it cannot say which, when it holds fewer messages than there are active jobs) "
        "has its message sent again."))
    transient_retries: NonNegativeInt = Field(3, description=(
        "Retries of a job step that failed for a passing reason (a store or service briefly "
        "unavailable)."))
    retry_backoff_ms: PositiveInt = Field(2000, description=(
        "Wait before the first of those retries (milliseconds); it grows up to 30 times this."))
    sweep_interval_seconds: PositiveFloat = Field(60.0, description=(
        "How often the scheduled sweeps (destruction, stale jobs, lost messages) run; one "
        "worker runs them at a time."))
    watchdog_interval_seconds: PositiveFloat = Field(0.25, description=(
        "How often a worker checks its running jobs for abort, deletion and overrun of their "
        "execution duration."))
    wait_max_per_caller: LimitOrOff = Field(8, description=(
        "Blocking WAIT requests one caller (a user, or one anonymous client address) may hold "
        "at once; a WAIT beyond it returns the job document at once (UWS allows returning "
        "early). 0: no limit."))
    wait_max_total: LimitOrOff = Field(500, description=(
        "Blocking WAIT requests a web process holds at once on one job list (/async), all "
        "callers together; beyond it a WAIT returns at once. Keep it well under max_connections, so WAITs never take every "
        "connection. 0: no limit."))
    selftest_jobs: bool = Field(False, description=(
        "Mount the self-test job kind at /selftest (sleeps, writes a small result, can fail on "
        "demand)."))

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
        return problems


class SodaSettings(Group):
    """SODA cutouts: dataset identifiers, size limits, previews."""

    ivoa_authority: str = Field("demo.cutout", description=(
        "Dataset IDs are IVOA publisher DIDs: ivo://<ivoa_authority>/<survey>?<image>."))
    max_cutout_pixels: PositiveInt = Field(25_000_000, description=(
        "Largest cutout, in pixels per plane."))
    max_sync_cutouts: PositiveInt = Field(50, description=(
        "Most cutouts one /sync request may ask for."))
    max_preview_size: PositiveInt = Field(4096, description=(
        "PNG/JPEG previews: largest side in pixels (SIZE may ask for less)."))
    max_preview_source_pixels: PositiveInt = Field(100_000_000, description=(
        "Most source pixels one preview may read (a whole 10000² DES tile is 1e8)."))
    thumbnail_size: PositiveInt = Field(1024, description=(
        "Longest side of the thumbnail kept of each image larger than this (block-averaged, "
        "computed once): a PNG/JPEG whose pixels would be at least as coarse is made from it, "
        "so a preview of a whole image reads no more than this, for any caller."))
    thumbnail_cache_bytes: PositiveInt = Field(256 * 2**20, description=(
        "Disk space of the thumbnails (data_dir/thumbnails, 256 MiB); the least recently used "
        "go first."))
    jpeg_quality: int = Field(90, description="JPEG quality of previews (1-95).")
    max_request_shapes: PositiveInt = Field(1000, description=(
        "Most regions (POS, CIRCLE, RANGE and POLYGON values together) one request may name; "
        "more is refused (400 UsageError) before they are checked. A job with one region per "
        "target needs one per target."))
    max_polygon_vertices: PositiveInt = Field(200, description=(
        "Most vertices of one POLYGON. Each is checked against every other edge for "
        "self-intersection."))
    max_request_polygon_vertices: PositiveInt = Field(10_000, description=(
        "Most POLYGON vertices in one request, all its polygons together (what bounds the "
        "CPU time of checking them: about 0.3 s at this default)."))
    cutout_threads: LimitOrOff = Field(0, description=(
        "Threads of a web process that plan /sync answers (index lookups; they also cut and "
        "encode when cutout_in_processes is false): a pool of their own, apart from the one "
        "serving database and token calls; 0: one per CPU core."))
    cutout_in_processes: bool = Field(True, description=(
        "Cut and encode /sync answers in a pool of processes of each web process, so one web "
        "process uses every core (decompressing and writing FITS hold Python's GIL). False: on "
        "the web process's own threads (one core at most)."))
    cutout_processes: NonNegativeInt = Field(0, description=(
        "Processes of that pool per web process; 0: one per CPU core."))
    cutout_queue: NonNegativeInt = Field(32, description=(
        "/sync cutouts that may wait for a free process of a web process beyond those being "
        "cut; more are refused at once (503 ServiceUnavailable, Retry-After) rather than "
        "queued without end."))
    cutout_process_tasks: PositiveInt = Field(1000, description=(
        "A cutting process is replaced after this many cutouts, which returns the memory its "
        "caches and the allocator held."))
    cutout_idle_seconds: NonNegativeInt = Field(120, description=(
        "The cutting processes end after this long without a cut, returning their memory; the "
        "next cut starts them again (about half a second). 0: they stay."))
    sia_maxrec_default: NonNegativeInt = Field(1000, description=(
        "SIA /query: rows answered when MAXREC is not given (DALI §3.2.4)."))
    sia_maxrec_limit: PositiveInt = Field(10000, description=(
        "SIA /query: the hard limit on rows; a larger MAXREC is lowered to it (then OVERFLOW)."))
    sia_max_values: PositiveInt = Field(50, description=(
        "SIA /query: the most values one parameter may take (POS=..&POS=.. and every other)."))
    sia_scan_limit: PositiveInt = Field(20000, description=(
        "SIA /query: the most images read from the index for one POS value before the other "
        "constraints are applied; beyond it the answer is marked OVERFLOW."))
    bulk_default_radius: PositiveFloat = Field(0.005, description=(
        "Bulk jobs: the radius (degrees) of the cutout of a row without size or radius, when "
        "the job gives no RADIUS (0.005: 36 arcsec across, 137 DES pixels)."))
    coverage_max_order: int = Field(10, description=(
        "Coverage maps (/coverage/<survey>.fits|.json): the deepest HEALPix order of the MOCs "
        "(10: cells of 3.4 arcmin; each order more halves them). 0 to 20."))
    file_cache_entries: PositiveInt = Field(64, description=(
        "Image files whose layout (headers, HDUs, WCS, where the pixels are) each process keeps "
        "after reading it once; the least recently used go first, a changed file is read again."))
    tile_cache_bytes: NonNegativeInt = Field(128 * 2**20, description=(
        "Memory each process keeps for decoded compression tiles of .fits.fz images (128 MiB), "
        "so the next cutout near the last one decodes only the tiles it does not share with it "
        "(a row of a one-row-tiled 10000-pixel-wide DES plane is 40 kB); the least recently used "
        "go first; a cut that would fill half of it keeps none; a job worker lets them go when "
        "it has no job left. 0: none kept."))

    @field_validator("ivoa_authority")
    @classmethod
    def _authority(cls, v: str) -> str:
        # IVOA Identifiers 2.0 §2.3.1: an authority id starts with an alphanumeric.
        if not v or not v[0].isalnum() or any(c in v for c in "/?#"):
            raise ValueError("must be an IVOA authority such as 'example.org' (no '/', '?' or '#')")
        return v

    @field_validator("coverage_max_order")
    @classmethod
    def _order(cls, v: int) -> int:
        if not 0 <= v <= 20:
            raise ValueError("must be between 0 and 20 (HEALPix orders a MOC of this service uses)")
        return v

    @field_validator("jpeg_quality")
    @classmethod
    def _quality(cls, v: int) -> int:
        if not 1 <= v <= 95:
            raise ValueError("must be between 1 and 95 (Pillow's useful JPEG range)")
        return v


class AuthSettings(Group):
    """Who is asking: sessions, login methods, personal API tokens.

    Secrets never go in a file of the repository: set CUTOUT_SESSION_SECRET /
    CUTOUT_OIDC_CLIENT_SECRET in the environment, or name a file outside the repository in
    session_secret_file / oidc_client_secret_file.
    """

    session_secret: SecretStr = Field(SecretStr(""), description=(
        "Key that signs the session cookie. With neither it nor "
        "session_secret_file, one is generated into data_dir/secrets/session.key (mode 0600)."))
    session_secret_file: str = Field("", description=(
        "A file (outside the repository) holding the session secret."))
    session_cookie_name: str = Field("cutout_session", description="Name of the session cookie.")
    session_cookie_secure: bool = Field(True, description=(
        "Send the session cookie over HTTPS only. Set false only for plain-HTTP tests on loopback."))
    session_max_age_seconds: PositiveInt = Field(43200, description=(
        "Lifetime of a login session (12 hours)."))
    oidc_issuer: str = Field("", description=(
        "OIDC login (authorization code + PKCE), discovered from the issuer URL. Empty: no OIDC. "
        "The redirect URI to register at the provider is <public URL>/auth/oidc/callback."))
    oidc_client_id: str = Field("", description="Our client id at the OIDC provider.")
    oidc_client_secret: SecretStr = Field(SecretStr(""), description=(
        "Our client secret at the OIDC provider."))
    oidc_client_secret_file: str = Field("", description=(
        "A file (outside the repository) holding the OIDC client secret."))
    oidc_scopes: str = Field("openid profile email", description=(
        "Scopes asked for at login, separated by spaces; must include openid."))
    oidc_username_claim: str = Field("sub", description=(
        "The claim that names a user (jobs belong to it); the same claim is read from JWT "
        "access tokens."))
    oidc_accept_access_tokens: bool = Field(True, description=(
        "Accept the provider's RFC 9068 JWT access tokens as Bearer tokens (checked against "
        "its JWKS)."))
    oidc_token_audience: str = Field("", description=(
        "The audience those access tokens must carry; empty: oidc_client_id."))
    oidc_clock_skew_seconds: LimitOrOff = Field(30, description=(
        "Clock difference tolerated when checking those tokens' exp/iat."))
    oidc_jwks_retry_seconds: PositiveFloat = Field(30.0, description=(
        "After a failed fetch of the provider's keys (JWKS), tokens that need them are answered "
        "503 with Retry-After, without fetching again, for this long: a flood of tokens signed "
        "with unknown keys makes at most one fetch per interval."))
    saml_idp_metadata: str = Field("", description=(
        "SAML 2.0 login (e.g. eduGAIN through a federation): the IdP's metadata, a file or an "
        "https:// URL. Empty: no SAML. Our SP metadata is served at /auth/saml/metadata."))
    saml_username_attribute: str = Field("eduPersonPrincipalName", description=(
        "The attribute that names a user (friendly name or OID URI); the NameID when absent."))
    saml_sp_key_file: str = Field("", description=(
        "Optional SP key (PEM) to sign AuthnRequests."))
    saml_sp_cert_file: str = Field("", description=(
        "Optional SP certificate (PEM) that goes with saml_sp_key_file."))
    api_token_default_days: PositiveInt = Field(90, description=(
        "Lifetime of a personal API token (Authorization: Bearer ...) when none is asked."))
    api_token_max_days: PositiveInt = Field(365, description=(
        "Longest lifetime a personal API token may be given."))
    api_token_expired_kept_days: NonNegativeInt = Field(30, description=(
        "An expired API token is kept this long (its owner still sees it listed, and a request "
        "with it is told it expired), then the scheduled sweeps delete it. Expired sessions "
        "and SAML requests are deleted by the first sweep after they expire."))

    @field_validator("oidc_issuer")
    @classmethod
    def _issuer(cls, v: str) -> str:
        if v and urlsplit(v).scheme not in ("http", "https"):
            raise ValueError("must be the provider's https:// issuer URL (or empty: no OIDC login)")
        return v.rstrip("/")

    @field_validator("oidc_scopes")
    @classmethod
    def _scopes(cls, v: str) -> str:
        if "openid" not in v.split():
            raise ValueError("must include 'openid'")
        return v

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

    def cross_checks(self) -> list[str]:
        problems = []
        if self.oidc_enabled and not self.oidc_client_id:
            problems.append(f"{ENV_PREFIX}OIDC_CLIENT_ID: required when oidc_issuer is set "
                            f"({self.oidc_issuer})")
        if self.api_token_default_days > self.api_token_max_days:
            problems.append(f"{ENV_PREFIX}API_TOKEN_DEFAULT_DAYS={self.api_token_default_days}: "
                            f"must not exceed api_token_max_days ({self.api_token_max_days})")
        for name in ("session_secret_file", "oidc_client_secret_file", "saml_sp_key_file",
                     "saml_sp_cert_file"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                problems.append(f"{ENV_PREFIX}{name.upper()}={path}: no such file")
        metadata = self.saml_idp_metadata
        if metadata and "://" not in metadata and not Path(metadata).is_file():
            problems.append(f"{ENV_PREFIX}SAML_IDP_METADATA={metadata}: no such file (give a path or an https:// URL)")
        return problems


class LimitsSettings(Group):
    """Anonymous callers and per-user quotas (checked when a job is created and before it
    runs, and the result space while it runs; GET /usage shows a user where they stand)."""

    anonymous_access: bool = Field(True, description=(
        "false: every SODA and UWS endpoint needs a login (VOSI stays open)."))
    anonymous_async: Literal["off", "limited", "open"] = Field("limited", description=(
        "\"off\": anonymous callers cannot create jobs (401 with login challenges); \"limited\": "
        "they can, within anonymous_max_active_jobs (all anonymous callers together), their jobs "
        "are destroyed after anonymous_destruction_seconds and the job list shows them nothing (a "
        "job is reached by the URL its creation answered in Location); "
        "\"open\": anonymous callers use jobs like a user without quotas, and share one job list "
        "(only for a service on a private network, or for development)."))
    anonymous_max_cutout_pixels: PositiveInt = Field(1_048_576, description=(
        "Largest anonymous cutout, in pixels per plane (1024 x 1024)."))
    anonymous_max_sync_cutouts: PositiveInt = Field(5, description=(
        "Most cutouts in one anonymous /sync answer: one position in every band of a DES tile "
        "(g, r, i, z, Y). More go to /async."))
    anonymous_max_job_cutouts: PositiveInt = Field(20, description=(
        "Most cutouts (results) in one anonymous job (anonymous_async = \"limited\")."))
    anonymous_files: bool = Field(False, description=(
        "Whole-file downloads (/files) for anonymous callers."))
    anonymous_rate_limit: LimitOrOff = Field(60, description=(
        "Requests per client address per window, of anonymous callers and of SAML logins (each "
        "stores its request until the IdP answers); beyond it 429 with Retry-After. 0: no limit."))
    anonymous_rate_window_seconds: PositiveInt = Field(60, description=(
        "The window of anonymous_rate_limit."))
    anonymous_max_active_jobs: LimitOrOff = Field(4, description=(
        "Jobs QUEUED or EXECUTING at once for all anonymous callers together; 0: no limit."))
    anonymous_destruction_seconds: PositiveInt = Field(3600, description=(
        "Anonymous jobs are destroyed this long after their creation."))
    anonymous_quota_bytes: LimitOrOff = Field(2**30, description=(
        "Bytes of job results all anonymous callers together may keep (1 GiB); a job is not "
        "queued while they keep more (anonymous_async = \"limited\"). 0: no limit."))
    user_quota_bytes: LimitOrOff = Field(10 * 2**30, description=(
        "Bytes of job results a user may keep (10 GiB); 0: no limit."))
    user_max_active_jobs: LimitOrOff = Field(20, description=(
        "Jobs of a user QUEUED or EXECUTING at once; 0: no limit."))
    anonymous_max_unfinished_jobs: LimitOrOff = Field(20, description=(
        "Jobs not yet finished (PENDING, QUEUED, EXECUTING, HELD, SUSPENDED) of all anonymous "
        "callers together; one more is refused (429 with Retry-After) until one finishes or is "
        "deleted (anonymous_async = \"limited\"). 0: no limit."))
    user_max_unfinished_jobs: LimitOrOff = Field(100, description=(
        "Jobs of a user not yet finished (PENDING, QUEUED, EXECUTING, HELD, SUSPENDED); one "
        "more is refused (429 with Retry-After). 0: no limit."))
    user_max_job_cutouts: LimitOrOff = Field(2000, description=(
        "Most cutouts (results) in one job of a user; a job asking for more is refused at "
        "creation. 0: no limit."))
    max_job_parameters: LimitOrOff = Field(1000, description=(
        "Most parameters a job stores (those its parameters document lists; a SODA job keeps "
        "only the parameters it reads). 0: no limit."))
    max_job_parameter_bytes: LimitOrOff = Field(256 * 1024, description=(
        "Most bytes of parameter names and values a job stores (256 KiB). 0: no limit."))
    bulk_max_rows: PositiveInt = Field(100_000, description=(
        "Rows of a bulk job's position table (/bulk) for a logged-in user; a longer table is "
        "refused when the job is created."))
    anonymous_bulk_max_rows: NonNegativeInt = Field(1000, description=(
        "Rows of a bulk job's position table for an anonymous caller (0: anonymous callers "
        "make no bulk jobs)."))
    bulk_max_pixels: LimitOrOff = Field(10_000_000_000, description=(
        "Pixels one bulk job of a logged-in user may cut, estimated when it is created: for each "
        "row, the square of its cutout's side (twice its radius) in pixels of the first "
        "configured survey, times its bands (FILTER's, the row's band, else every band of that "
        "survey); a job over it is refused (UsageError). 0: no limit."))
    anonymous_bulk_max_pixels: LimitOrOff = Field(100_000_000, description=(
        "The same estimate's limit for one anonymous bulk job (10^8: a thousand 137-pixel "
        "stamps in three bands with room to spare). 0: no limit."))
    bulk_max_active_jobs: LimitOrOff = Field(4, description=(
        "Bulk jobs (/bulk) of a user not yet finished (PENDING, QUEUED, EXECUTING, HELD, "
        "SUSPENDED); one more is refused (429 with Retry-After). 0: no limit."))
    anonymous_bulk_max_active_jobs: LimitOrOff = Field(2, description=(
        "Bulk jobs not yet finished of one anonymous caller, counted per client address (as the "
        "anonymous rate limit counts them), so that one address cannot hold back the others; "
        "one more is refused (429 with Retry-After). 0: no limit."))
    max_upload_bytes: PositiveInt = Field(64 * 2**20, description=(
        "Most bytes of the files one job takes (DALI UPLOAD, e.g. a bulk job's position table: "
        "1,000,000 rows of CSV are about 30 MB), 64 MiB; the request body of a job list that "
        "takes files may be this much larger than max_request_body_bytes."))
    max_uploads_at_once: PositiveInt = Field(2, description=(
        "Job creations with files (a bulk job's table) a web process reads and checks at once, "
        "per job list: each may hold max_upload_bytes in memory; more are refused at once (503, "
        "Retry-After)."))


class NotifySettings(Group):
    """Notices when a job ends (NOTIFY=mailto:... or NOTIFY=https://... at its creation): an
    e-mail or a signed webhook POST, retried with backoff, never holding up the job. Off
    until an SMTP server (e-mail) or a webhook secret (webhooks) is set.

    Secrets never go in a file of the repository: set CUTOUT_NOTIFY_SMTP_PASSWORD and
    CUTOUT_NOTIFY_WEBHOOK_SECRET in the environment."""

    notify_max_targets: NonNegativeInt = Field(3, description=(
        "Most NOTIFY values (notification targets) one job may have; 0: NOTIFY is refused."))
    notify_smtp_host: str = Field("", description=(
        "The SMTP server that sends the e-mail notices. Empty: no e-mail (NOTIFY=mailto: is "
        "refused)."))
    notify_smtp_port: int = Field(587, description="Its TCP port.")
    notify_smtp_security: Literal["none", "starttls", "ssl"] = Field("starttls", description=(
        "\"starttls\": upgrade the connection with STARTTLS (port 587); \"ssl\": TLS from the "
        "start (port 465); \"none\": plain SMTP (a relay on this host or a trusted network)."))
    notify_smtp_user: str = Field("", description="Login at the SMTP server; empty: none.")
    notify_smtp_password: SecretStr = Field(SecretStr(""), description=(
        "Password of notify_smtp_user (set it in the environment)."))
    notify_mail_from: str = Field("", description=(
        "The From address of the e-mail notices; required with notify_smtp_host."))
    notify_mail_domains: tuple[str, ...] = Field((), description=(
        "E-mail notices go only to addresses in these domains (and their subdomains), e.g. "
        "[\"example.org\"]. Empty: any domain. CUTOUT_NOTIFY_MAIL_DOMAINS takes a JSON list "
        "or comma-separated entries."))
    notify_webhook_secret: SecretStr = Field(SecretStr(""), description=(
        "Key of the HMAC-SHA256 signature every webhook body carries (X-Cutout-Signature: "
        "sha256=<hex>); receivers check it with the same key. Empty: no webhooks."))
    notify_webhook_hosts: tuple[str, ...] = Field((), description=(
        "Webhooks go only to these host names, e.g. [\"hooks.example.org\"]. Empty: any host "
        "whose addresses are public. CUTOUT_NOTIFY_WEBHOOK_HOSTS takes a JSON list or "
        "comma-separated entries."))
    notify_allow_http: bool = Field(False, description=(
        "Accept plain http:// webhook URLs (else https:// only)."))
    notify_allow_private_targets: bool = Field(False, description=(
        "Deliver webhooks to hosts with loopback, private, link-local or other non-public "
        "addresses. Keep false on any service reachable by others: else a job can make the "
        "service call its internal network (server-side request forgery). For tests and "
        "private deployments."))
    notify_anonymous: Literal["off", "webhook", "all"] = Field("webhook", description=(
        "What anonymous callers may ask for: \"off\": no notices; \"webhook\": webhooks only "
        "(their targets are checked like anyone's, and bounded by the anonymous job limits); "
        "\"all\": e-mail too (anyone could then make the service mail any address)."))
    notify_timeout_seconds: PositiveFloat = Field(10.0, description=(
        "One delivery attempt waits at most this long for each step (connecting, each answer)."))
    notify_retry_delays_seconds: tuple[float, ...] = Field((30.0, 120.0, 600.0, 3600.0), description=(
        "Waits before the second, third... attempt of a notice that failed; the last one "
        "repeats. CUTOUT_NOTIFY_RETRY_DELAYS_SECONDS takes a JSON list or comma-separated numbers."))
    notify_max_attempts: PositiveInt = Field(5, description=(
        "Attempts of one notice before it is given up (logged, and kept as failed in "
        "uws_notice). An SMTP 5xx answer or a target no longer allowed is given up at once."))

    @field_validator("notify_smtp_port")
    @classmethod
    def _smtp_port(cls, v: int) -> int:
        if not 0 < v < 65536:
            raise ValueError("must be a TCP port between 1 and 65535")
        return v

    @field_validator("notify_retry_delays_seconds")
    @classmethod
    def _delays(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or any(d <= 0 for d in v):
            raise ValueError("must be one or more waits in seconds, each greater than 0")
        return v

    @field_validator("notify_mail_from")
    @classmethod
    def _mail_from(cls, v: str) -> str:
        if v and (v.count("@") != 1 or any(c.isspace() for c in v)):
            raise ValueError("must be one e-mail address such as cutouts@example.org")
        return v

    def cross_checks(self) -> list[str]:
        problems = []
        if self.notify_smtp_host and not self.notify_mail_from:
            problems.append(f"{ENV_PREFIX}NOTIFY_MAIL_FROM: required when notify_smtp_host is set "
                            f"({self.notify_smtp_host})")
        if self.notify_smtp_user and not self.notify_smtp_password.get_secret_value():
            problems.append(f"{ENV_PREFIX}NOTIFY_SMTP_PASSWORD: required when notify_smtp_user is set")
        return problems


class SurveySettings(Group):
    """One survey: its class, its image store and what is cut from it."""

    factory: str = Field(description=(
        "The survey class, \"package.module:Class\" (a soda.surveys.base.Survey)."))
    root: Path = Field(description=(
        "Its image store, a relative path taken from data_dir: where the demo builder writes, "
        "and what `cutout ingest --survey NAME` walks when given no path."))
    hdus: tuple[str, ...] = Field((), description=(
        "The HDUs cut identically, science first; empty: those the survey's file layout "
        "found at ingest (SCI, MSK, WGT for DESDM coadds; the image HDU otherwise)."))
    band_map: dict[str, str] = Field(default_factory=dict, description=(
        "Header values to band names, for `cutout ingest`: the BAND or FILTER card's whole "
        "value or its first word -> the band (unmapped, the first word is the band; \"\" "
        "names the band of images without either card, else 'unknown')."))
    band_ranges: dict[str, tuple[float, float]] = Field(default_factory=dict, description=(
        "Band -> (low, high) wavelength in metres, for SODA BAND; bands not listed take "
        "the common filters' ranges (ugrizy, Y, Johnson UBVRI), others 300 nm to 2.5 um."))
    demo_builder: str = Field("", description=(
        "\"package.module:function\" that builds demo images into root at start (when "
        "missing); they are then ingested into the index. Empty: none."))
    rgb_bands: tuple[str, ...] = Field((), description=(
        "The colour composite's default bands as R, G, B (RGB=default)."))
    options: dict[str, str] = Field(default_factory=dict, description=(
        "Further keyword arguments of the survey class, e.g. skymap = \"demo\" for "
        "soda.surveys.lsst:LSSTSurvey (the sky map its patches were cut on: dc2, "
        "hsc_rings_120 or demo)."))

    @field_validator("band_ranges")
    @classmethod
    def _ranges(cls, v: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        for band, (low, high) in v.items():
            if not 0 < low < high:
                raise ValueError(f"band {band}: need 0 < low < high metres (got {low}, {high})")
        return v

    @field_validator("factory", "demo_builder")
    @classmethod
    def _import_path(cls, v: str) -> str:
        if v and (":" not in v or not all(v.split(":"))):
            raise ValueError("must be an import path like 'package.module:name'")
        return v


def _default_surveys() -> dict[str, SurveySettings]:
    return {"des": SurveySettings(factory="soda.surveys.des:DESSurvey", root=Path("demo/des"),
                                  demo_builder="soda.surveys.demo:ensure_demo",
                                  rgb_bands=("i", "r", "g")),
            "lsst": SurveySettings(factory="soda.surveys.lsst:LSSTSurvey", root=Path("demo/lsst"),
                                   demo_builder="soda.surveys.lsst_demo:ensure_lsst_demo",
                                   rgb_bands=("i", "r", "g"), options={"skymap": "demo"})}


class Settings(Group):
    ops: OpsSettings = Field(default_factory=OpsSettings)
    uws: UWSSettings = Field(default_factory=UWSSettings)
    soda: SodaSettings = Field(default_factory=SodaSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    surveys: dict[str, SurveySettings] = Field(default_factory=_default_surveys, description=(
        "The surveys served, one [surveys.<name>] table each (adding a survey is one module "
        "plus one table); a site file's surveys replace these."))

    def survey_root(self, name: str) -> Path:
        return self.ops.data_dir / self.surveys[name].root

    def cross_checks(self) -> list[str]:
        """Checks between settings, after each passed its own."""
        problems = self.uws.cross_checks() + self.auth.cross_checks() + self.notify.cross_checks()
        if self.limits.anonymous_destruction_seconds > self.uws.max_destruction_seconds:
            problems.append(f"{ENV_PREFIX}ANONYMOUS_DESTRUCTION_SECONDS={self.limits.anonymous_destruction_seconds}: "
                            f"must not exceed max_destruction_seconds ({self.uws.max_destruction_seconds})")
        if self.auth.saml_enabled and not self.ops.public_url:
            problems.append(f"{ENV_PREFIX}PUBLIC_URL: required when saml_idp_metadata is set "
                            f"(the SAML entity id and ACS URL are built from it)")
        return problems

    def describe(self) -> dict[str, Any]:
        """The effective settings by their flat names, secrets masked, for ``cutout check-config``."""
        out: dict[str, Any] = {}
        for group in GROUPS:
            section = getattr(self, group)
            for name in type(section).model_fields:
                value = getattr(section, name)
                out[name] = mask_url(value) if name.endswith("_url") else value
        for survey, table in self.surveys.items():
            for name in type(table).model_fields:
                out[f"surveys.{survey}.{name}"] = getattr(table, name)
        out["effective_database_url"] = mask_url(self.ops.effective_database_url)
        out["results_dir"] = self.ops.results_dir
        out["shape"] = "embedded" if self.ops.embedded else "distributed"
        return out


# The groups of flat settings, in the order they are shown and written.
GROUPS: dict[str, type[Group]] = {
    "ops": OpsSettings, "uws": UWSSettings, "soda": SodaSettings, "auth": AuthSettings,
    "limits": LimitsSettings, "notify": NotifySettings,
}


def _group_of_each_name() -> dict[str, str]:
    """Flat setting name -> its group; names must be unique across the groups."""
    owner: dict[str, str] = {}
    for group, model in GROUPS.items():
        for name in model.model_fields:
            if name in owner or name in Settings.model_fields:
                raise TypeError(f"setting {name!r} is declared twice ({owner.get(name)}, {group})")
            owner[name] = group
    return owner


GROUP_OF: dict[str, str] = _group_of_each_name()


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
