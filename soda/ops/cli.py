"""The ``cutout`` command: serve, worker, demo-data, ingest, retile, check-config,
config-defaults, config-reference, token, backup, restore, audit."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from conf import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from auth.tokens import TokenStore
    from soda.ops.backup import Report


def _settings_or_exit(**overrides: object) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        print("cutout: the configuration has errors:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        raise SystemExit(2) from None


def _logging(settings: Settings) -> None:
    from soda.ops.logs import configure

    configure(settings.ops.log_level, settings.ops.effective_log_format)


def _metrics_dir(settings: Settings) -> None:
    """Processes on one host share their metrics (prometheus-client multiprocess mode).

    Must run before prometheus_client is imported.
    """
    path = (settings.ops.data_dir / "metrics").resolve()
    path.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(path))


def _mark_dead() -> None:
    from prometheus_client import multiprocess

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(os.getpid())


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = _settings_or_exit(host=args.host, port=args.port)
    _metrics_dir(settings)
    _logging(settings)
    if args.workers > 1 and settings.ops.embedded:
        print("cutout serve: --workers > 1 needs the distributed shape (set CUTOUT_BROKER_URL); "
              "the embedded shape keeps its jobs in one process", file=sys.stderr)
        return 2
    from soda.ops import connections

    connections.install(settings)
    old_files, open_files = connections.raise_open_file_limit()
    if open_files != old_files:
        logging.getLogger(__name__).info("open-file limit raised from %d to %d", old_files, open_files)
    common = dict(host=settings.ops.host, port=settings.ops.port, log_level=settings.ops.log_level.lower(),
                  proxy_headers=False, timeout_graceful_shutdown=5, log_config=None,
                  **connections.uvicorn_options(settings))
    # By name: the web application sits above operations and is built in each web process.
    uvicorn.run("soda.web.app:create_app", factory=True, workers=args.workers, **common)
    _mark_dead()
    return 0


def worker(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    _metrics_dir(settings)
    _logging(settings)
    if settings.ops.embedded:
        print("cutout worker: no broker is configured (CUTOUT_BROKER_URL); in the embedded shape "
              "`cutout serve` runs the jobs itself", file=sys.stderr)
        return 2
    from soda.ops.runtime import Runtime

    runtime = Runtime(settings)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    runtime.start_workers(args.threads)
    logging.getLogger("cutout.worker").info(
        "worker started: %d threads, queues %s", args.threads or settings.uws.worker_threads,
        ", ".join(sorted(runtime.broker.get_declared_queues())))
    stop.wait()
    runtime.stop_workers()
    runtime.close()
    _mark_dead()
    return 0


def demo_data(args: argparse.Namespace) -> int:
    """Build DES-like demo tiles (the embedded default builds them by itself at start)."""
    import time

    from soda.surveys.demo import build_des_demo

    settings = _settings_or_exit()
    _logging(settings)
    out = Path(args.out) if args.out else settings.survey_root("des")
    kwargs: dict[str, object] = {"size": args.size}
    if args.tiles:
        kwargs["tiles"] = tuple(args.tiles.split(","))
    if args.bands:
        kwargs["bands"] = tuple(args.bands.split(","))
    started = time.monotonic()
    build_des_demo(out, **kwargs)  # type: ignore[arg-type]
    print(f"demo survey in {out} ready after {time.monotonic() - started:.1f} s "
          f"(`cutout serve` ingests it at start, or run `cutout ingest --survey des {out}`)")
    return 0


def _progress_bar(done: int, total: int) -> None:
    width = 40
    filled = width * done // total if total else width
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} files")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def ingest(args: argparse.Namespace) -> int:
    """Index the images of FITS files (or folders of them) for a survey; incremental."""
    from soda.index.surveys import ingest_survey
    from soda.index.tables import MIGRATIONS
    from soda.ops.database import close_database, migrate, open_database

    settings = _settings_or_exit()
    _logging(settings)
    survey = args.survey or next(iter(settings.surveys), None)
    if survey not in settings.surveys:
        known = ", ".join(settings.surveys) or "none"
        print(f"cutout ingest: no survey {survey!r} is configured (surveys: {known})", file=sys.stderr)
        return 1
    paths = [Path(p) for p in args.paths] or [settings.survey_root(survey)]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(f"cutout ingest: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return 1
    settings.ops.data_dir.mkdir(parents=True, exist_ok=True)
    db = open_database(settings.ops.effective_database_url)
    try:
        migrate(db, [("images", MIGRATIONS)])
        report = ingest_survey(db, settings, survey, paths,
                               progress=_progress_bar if sys.stderr.isatty() else None)
    finally:
        close_database(db)
    for path, reason in report.bad:
        print(f"bad file {path}: {reason}")
    print(report.summary())
    return 0


def retile(args: argparse.Namespace) -> int:
    """Square-tiled copies of the surveys' row-tiled .fits.fz files, served in their place."""
    from soda.index.copies import retile_survey, undo_survey
    from soda.index.tables import MIGRATIONS
    from soda.ops.database import close_database, migrate, open_database

    settings = _settings_or_exit()
    _logging(settings)
    surveys = args.survey or list(settings.surveys)
    unknown = [s for s in surveys if s not in settings.surveys]
    if unknown:
        known = ", ".join(settings.surveys) or "none"
        print(f"cutout retile: no survey {', '.join(map(repr, unknown))} is configured (surveys: {known})",
              file=sys.stderr)
        return 1

    def say(line: str) -> None:
        print(line, flush=True)

    settings.ops.data_dir.mkdir(parents=True, exist_ok=True)
    db = open_database(settings.ops.effective_database_url)
    failed = 0
    try:
        migrate(db, [("images", MIGRATIONS)])
        for name in surveys:
            folder = settings.ops.data_dir / "retiled" / name
            if args.undo:
                report = undo_survey(db, name, folder, say)
            else:
                report = retile_survey(db, name, settings.survey_root(name), folder, args.tile,
                                       args.lossless, args.jobs, say)
            failed += len(report.failed)
            print(report.summary(), flush=True)
    finally:
        close_database(db)
    return 1 if failed else 0


def _tile_side(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 16 <= value <= 65536:
        raise argparse.ArgumentTypeError(f"the tile side must be a whole number of pixels from 16 to 65536, not {text!r}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


def check_config(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    for name, value in settings.describe().items():
        print(f"{name} = {value}")
    print("configuration OK")
    return 0


def config_defaults(args: argparse.Namespace) -> int:
    """Print every setting with its meaning and default (the text of conf/defaults.toml)."""
    from conf.reference import reference_toml

    print(reference_toml(), end="")
    return 0


def config_reference(args: argparse.Namespace) -> int:
    """Print the Markdown configuration reference (the text of docs/configuration.md)."""
    from conf.reference import reference_markdown

    print(reference_markdown(), end="")
    return 0


# --- backup and restore of the job database and results -----------------------------------------

def backup(args: argparse.Namespace) -> int:
    """Copy the database, the results folder and the session key into a new folder."""
    from soda.ops.backup import backup as take

    report = _backup_step("backup", take, Path(args.folder))
    if report is None:
        return 1
    print(report.summary("backed up into"))
    return 0


def restore(args: argparse.Namespace) -> int:
    """Put a backup into an empty database and an empty results folder."""
    from soda.ops.backup import restore as put

    report = _backup_step("restore", put, Path(args.folder))
    if report is None:
        return 1
    print(report.summary("restored from"))
    return 1 if report.missing else 0


def _backup_step(name: str, step: Callable[[Settings, Path], Report], folder: Path) -> Report | None:
    """``step`` (backup or restore) on the settings' database and data folder; None when it
    refused (the reason on standard error)."""
    from soda.ops.backup import BackupError

    settings = _settings_or_exit()
    try:
        return step(settings, folder)
    except BackupError as exc:
        print(f"cutout {name}: {exc}", file=sys.stderr)
        return None


# --- personal API tokens, for operators -------------------------------------------------------

@contextlib.contextmanager
def _token_store(settings: Settings) -> Iterator[TokenStore]:
    """The service's token table, migrated as ``cutout serve`` would (it may be running)."""
    from auth.tables import MIGRATIONS
    from auth.tokens import TokenStore
    from soda.ops.database import close_database, migrate, open_database

    settings.ops.data_dir.mkdir(parents=True, exist_ok=True)
    db = open_database(settings.ops.effective_database_url)
    try:
        migrate(db, [("auth", MIGRATIONS)])
        yield TokenStore(db)
    finally:
        close_database(db)


def _user(name: str) -> str:
    user = name.strip()
    if not user or len(user) > 255 or any(ord(c) < 32 for c in user):
        print("cutout token: --user must name a user (1 to 255 printable characters)", file=sys.stderr)
        raise SystemExit(2)
    return user


def token_create(args: argparse.Namespace) -> int:
    """Print a new personal API token, once: it is stored only as a digest."""
    import datetime as dt

    settings = _settings_or_exit()
    user = _user(args.user)
    auth = settings.auth
    days = auth.api_token_default_days if args.days is None else args.days
    if not 1 <= days <= auth.api_token_max_days:
        print(f"cutout token create: --days must be between 1 and {auth.api_token_max_days} "
              f"(setting api_token_max_days)", file=sys.stderr)
        return 2
    name = args.name.strip()
    if not name or len(name) > 100:
        print("cutout token create: --name must be 1 to 100 characters", file=sys.stderr)
        return 2
    expires = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=days)
    with _token_store(settings) as store:
        info, secret = store.create(user, name, expires)
    print(secret)
    print(f"token {info.id} ({info.name!r}) of {info.user_id}, expires {info.as_json()['expires']}; "
          f"shown only this once. Send it as 'Authorization: Bearer <token>'.", file=sys.stderr)
    return 0


def token_list(args: argparse.Namespace) -> int:
    with _token_store(_settings_or_exit()) as store:
        listed = store.list(_user(args.user))
    for info in listed:
        shown = info.as_json()
        print(f"{info.id}\t{info.name}\tcreated {shown['created']}\texpires {shown['expires']}\t"
              f"last used {shown['last_used'] or 'never'}")
    return 0


def token_revoke(args: argparse.Namespace) -> int:
    user = _user(args.user)
    with _token_store(_settings_or_exit()) as store:
        revoked = store.revoke(user, args.id)
    if not revoked:
        print(f"cutout token revoke: {user} has no token {args.id!r}", file=sys.stderr)
        return 1
    print(f"token {args.id} of {user} revoked")
    return 0


def _token_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = commands.add_parser("token", help="personal API tokens of a user (in the service's database)")
    tokens = p.add_subparsers(dest="token_command", required=True)
    t = tokens.add_parser("create", help="create a token and print it (once)")
    t.add_argument("--user", required=True, help="the user it acts as (jobs belong to them)")
    t.add_argument("--name", default="cli", help="a label to tell tokens apart (default: cli)")
    t.add_argument("--days", type=int, help="lifetime in days (setting: api_token_default_days)")
    t.set_defaults(func=token_create)
    t = tokens.add_parser("list", help="a user's tokens (never their secrets)")
    t.add_argument("--user", required=True)
    t.set_defaults(func=token_list)
    t = tokens.add_parser("revoke", help="revoke one of a user's tokens by its id")
    t.add_argument("--user", required=True)
    t.add_argument("id", help="the token's id (from `cutout token list`)")
    t.set_defaults(func=token_revoke)


# --- the audit of served cutouts, for operators ------------------------------------------------

def audit_purge(args: argparse.Namespace) -> int:
    """Delete the audit records older than --days (default: the setting audit_keep_days)."""
    from dali.timestamps import utcnow
    from soda.audit.records import PURGE_BATCH, PURGE_BATCHES, AuditLog, keep_until
    from soda.audit.tables import MIGRATIONS
    from soda.ops.database import close_database, migrate, open_database

    settings = _settings_or_exit()
    days = settings.ops.audit_keep_days if args.days is None else args.days
    if days < 0:
        print("cutout audit purge: --days must be 0 (delete every record) or more", file=sys.stderr)
        return 2
    settings.ops.data_dir.mkdir(parents=True, exist_ok=True)
    db = open_database(settings.ops.effective_database_url)
    try:
        migrate(db, [("audit", MIGRATIONS)])
        log, before, deleted = AuditLog(db, enabled=False), keep_until(days, utcnow()), 0
        while True:  # each call deletes a bounded number; a long backlog takes several
            count = log.purge(before)
            deleted += count
            if count < PURGE_BATCH * PURGE_BATCHES:
                break
    finally:
        close_database(db)
    print(f"{deleted} audit records older than {days} days deleted")
    return 0


def _audit_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = commands.add_parser("audit", help="the audit records of served cutouts (in the service's database)")
    audit = p.add_subparsers(dest="audit_command", required=True)
    t = audit.add_parser("purge", help="delete the records older than the days kept, now (the sweeps "
                                       "do it periodically)")
    t.add_argument("--days", type=int, help="keep this many days (setting: audit_keep_days; 0: delete all)")
    t.set_defaults(func=audit_purge)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cutout", description="IVOA SODA/UWS image-cutout service")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("serve", help="run the web service (and, embedded, its job workers)")
    p.add_argument("--host", help="address to listen on (setting: host)")
    p.add_argument("--port", type=int, help="port to listen on (setting: port)")
    p.add_argument("--workers", type=int, default=1, help="web processes (distributed shape only)")
    p.set_defaults(func=serve)

    p = commands.add_parser("worker", help="run job workers against the Redis broker")
    p.add_argument("--threads", type=int, help="worker threads (setting: worker_threads)")
    p.set_defaults(func=worker)

    p = commands.add_parser("demo-data", help="build DES-like demo tiles (full size with --size 10000)")
    p.add_argument("--size", type=int, default=2048, help="pixels on a side (10000 for a real DES tile)")
    p.add_argument("--out", help="folder to write (default: the des survey root in the data dir)")
    p.add_argument("--tiles", help="comma-separated tile names (default: the demo tiles)")
    p.add_argument("--bands", help="comma-separated bands (default: g,r,i)")
    p.set_defaults(func=demo_data)

    p = commands.add_parser("ingest", help="index FITS images (files or folders) for a survey; incremental")
    p.add_argument("--survey", help="the configured survey they belong to (default: the first)")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="FITS/.fits.fz files or folders of them (default: the survey's root)")
    p.set_defaults(func=ingest)

    p = commands.add_parser(
        "retile", help="copy row-tiled .fits.fz images with square compression tiles (faster cutouts); "
                       "the index serves the copies in their place")
    p.add_argument("--survey", action="append", metavar="NAME",
                   help="a configured survey (repeat for several; default: every survey)")
    p.add_argument("--tile", type=_tile_side, default=256, metavar="N",
                   help="compression tiles of N x N pixels (default: 256)")
    p.add_argument("--lossless", action="store_true",
                   help="store quantised float planes unquantised (GZIP_2): every pixel exact, "
                        "files several times larger; default: quantised again as the original was")
    p.add_argument("--undo", action="store_true",
                   help="serve the original files again and delete the copies")
    p.add_argument("--jobs", type=_positive, default=1, metavar="N",
                   help="files rewritten at once, one process each (about 1.5 GB each for a "
                        "10000x10000 tile; default: 1)")
    p.set_defaults(func=retile)

    p = commands.add_parser("check-config", help="print the effective settings or their errors")
    p.set_defaults(func=check_config)

    p = commands.add_parser("config-defaults",
                            help="print every setting with its meaning and default, as TOML")
    p.set_defaults(func=config_defaults)

    p = commands.add_parser("config-reference",
                            help="print every setting as a Markdown table (docs/configuration.md)")
    p.set_defaults(func=config_reference)

    _token_commands(commands)
    _audit_commands(commands)

    p = commands.add_parser("backup", help="copy the job database, the results and the session key into "
                                           "a new folder (the service may be running)")
    p.add_argument("folder", metavar="DIR", help="a new (or empty) folder")
    p.set_defaults(func=backup)

    p = commands.add_parser("restore", help="put a backup into an empty database and results folder "
                                            "(as configured); start the service afterwards")
    p.add_argument("folder", metavar="DIR", help="a folder written by `cutout backup`")
    p.set_defaults(func=restore)

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
