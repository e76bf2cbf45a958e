"""Backup and restore of the service's state: the job database and the results folder.

``cutout backup DIR`` writes into a new folder:

- ``database.sqlite`` (the embedded default: SQLite's online backup API, a consistent copy
  while the service runs) or ``database.dump`` (PostgreSQL: ``pg_dump --format=custom``,
  one consistent snapshot, taken while the service runs);
- ``results/``: the results store's files (jobs' results and uploaded tables), copied
  after the database, so every result the copy of the database lists is there unless
  its job was deleted in between (files of jobs created in between are copied too, and
  the sweep deletes them after a restore, as their jobs are not in the copy);
- ``secrets/``: the session key kept in the data directory, if there is one (the
  backup is then as private as the key: browser sessions are signed with it);
- ``manifest.json``: what it holds, the schema version of every component, counts.

``cutout restore DIR`` puts them back into an empty database (SQLite: no database file
yet; PostgreSQL: a database with no tables, made with ``createdb``) and an empty results
folder, as the configuration of the restored service names them. A backup of an older
version restores as it was; the service's migrations bring it up to date when it starts.
A backup made by a newer version (a schema this code does not know) is refused.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import peewee as pw

from conf import Settings
from soda import SERVICE, VERSION
from soda.ops.database import close_database, open_database
from soda.ops.schemas import SCHEMAS

FORMAT = 1
MANIFEST = "manifest.json"
SQLITE_FILE = "database.sqlite"
PG_FILE = "database.dump"
RESULTS = "results"
SECRETS = "secrets"

# The components whose schema this code knows (the runtime migrates them at start).
KNOWN_SCHEMAS: Mapping[str, int] = {name: len(steps) for name, steps in SCHEMAS}
# libpq connection options a database URL may carry on to pg_dump/pg_restore (the service's own,
# such as max_connections, and the statement timeout in ``options`` are not theirs).
_LIBPQ_OPTIONS = frozenset({"sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "connect_timeout",
                            "application_name", "target_session_attrs", "gssencmode"})
_TOOL_SECONDS = 24 * 3600  # a dump or restore of a big database may take hours; not forever


class BackupError(Exception):
    """The backup or restore cannot be done; the message says why and what to do."""


@dataclass
class Report:
    folder: Path
    database: str                      # "sqlite" or "postgresql"
    schema: dict[str, int]
    result_files: int = 0
    result_bytes: int = 0
    missing: list[str] = field(default_factory=list)   # results the database lists without a file
    notes: list[str] = field(default_factory=list)

    def summary(self, verb: str) -> str:
        schema = ", ".join(f"{k} {v}" for k, v in sorted(self.schema.items()))
        line = (f"{verb} {self.folder}: {self.database} database (schema {schema}), "
                f"{self.result_files} result files ({self.result_bytes} bytes)")
        if self.missing:
            line += (f"; {len(self.missing)} results listed in the database have no file (their jobs were "
                     f"deleted while the backup was taken?), e.g. {self.missing[0]}")
        return "\n".join([line, *self.notes])


# --- backup --------------------------------------------------------------------------------------

def backup(settings: Settings, folder: Path) -> Report:
    """Copy the database, then the results folder and the session key, into ``folder``
    (new or empty); the service may be running."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise BackupError(f"{folder} exists and is not an empty folder; back up into a new one")
    url = settings.ops.effective_database_url
    kind = _kind(url)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)  # it holds token digests, sessions and the session key
    if kind == "sqlite":
        source = _sqlite_path(url)
        if not source.is_file():
            raise BackupError(f"there is no database at {source} (CUTOUT_DATA_DIR / CUTOUT_DATABASE_URL)")
        _sqlite_copy(source, folder / SQLITE_FILE)
        schema = _schema_sqlite(folder / SQLITE_FILE)
    else:
        schema = _schema_of(url)
        _run_pg("pg_dump", url, ["--format=custom", "--no-owner", "--no-privileges",
                                 f"--file={folder / PG_FILE}"])
    report = Report(folder, kind, schema)
    report.result_files, report.result_bytes = _copy_tree(settings.ops.results_dir, folder / RESULTS)
    secrets = settings.ops.data_dir / SECRETS
    if secrets.is_dir():
        _copy_tree(secrets, folder / SECRETS)
    manifest = {"format": FORMAT, "service": SERVICE, "version": VERSION,
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "database": kind, "schema": schema,
                "results": {"files": report.result_files, "bytes": report.result_bytes}}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return report


# --- restore -------------------------------------------------------------------------------------

def restore(settings: Settings, folder: Path) -> Report:
    """Put a backup into the configured database (empty) and results folder (empty)."""
    folder = Path(folder)
    manifest = _manifest(folder)
    url = settings.ops.effective_database_url
    kind = _kind(url)
    if manifest["database"] != kind:
        raise BackupError(f"{folder} holds a {manifest['database']} database and the service is configured "
                          f"for {kind} (CUTOUT_DATABASE_URL): restore it into the same kind of database")
    schema = {str(k): int(v) for k, v in manifest["schema"].items()}
    newer = [f"{name} {version} (this version knows {KNOWN_SCHEMAS[name]})" if name in KNOWN_SCHEMAS
             else f"{name} {version} (unknown to this version)"
             for name, version in schema.items() if version > KNOWN_SCHEMAS.get(name, 0)]
    if newer:
        raise BackupError(f"{folder} was made by a newer version of the service (schema {', '.join(newer)}); "
                          f"restore it with that version or a later one")
    # Everything is checked before anything is written.
    if kind == "sqlite":
        target = _sqlite_path(url)
        if any(Path(f"{target}{end}").exists() for end in ("", "-wal", "-shm")):
            raise BackupError(f"there is a database at {target} already; restore into a fresh data folder "
                              f"(or move it away first)")
    else:
        tables = _pg_tables(url)
        if tables:
            raise BackupError(f"the database {_safe_url(url)} has tables already ({', '.join(tables[:5])}"
                              f"{', ...' if len(tables) > 5 else ''}); restore into a new, empty database "
                              f"(createdb NAME)")
    results = settings.ops.results_dir
    if results.exists() and any(results.iterdir()):
        raise BackupError(f"the results folder {results} is not empty; restore into a fresh data folder "
                          f"(CUTOUT_DATA_DIR)")
    if kind == "sqlite":
        target.parent.mkdir(parents=True, exist_ok=True)
        _sqlite_copy(folder / SQLITE_FILE, target)
    else:
        _run_pg("pg_restore", url, ["--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error",
                                    str(folder / PG_FILE)])
    report = Report(folder, kind, schema)
    report.result_files, report.result_bytes = _copy_tree(folder / RESULTS, results)
    secrets, target_secrets = folder / SECRETS, settings.ops.data_dir / SECRETS
    if secrets.is_dir():
        for source in secrets.iterdir():
            if (target_secrets / source.name).exists():
                report.notes.append(f"kept the existing {target_secrets / source.name} (the backup's is in "
                                    f"{source}): browser sessions of the backup need a new login")
            else:
                target_secrets.mkdir(parents=True, exist_ok=True, mode=0o700)
                shutil.copy2(source, target_secrets / source.name)
    report.missing = _missing_results(url, results)
    return report


def _manifest(folder: Path) -> dict[str, object]:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupError(f"{folder} is not a backup of this service (no {MANIFEST})") from None
    except (OSError, ValueError) as exc:
        raise BackupError(f"{path} cannot be read: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or \
            manifest.get("database") not in ("sqlite", "postgresql") or not isinstance(manifest.get("schema"), dict):
        raise BackupError(f"{path} is not a manifest this version reads (format {FORMAT})")
    data = folder / (SQLITE_FILE if manifest["database"] == "sqlite" else PG_FILE)
    if not data.is_file():
        raise BackupError(f"{folder} lacks {data.name}: the backup is incomplete")
    return manifest


def _missing_results(url: str, results: Path) -> list[str]:
    db = open_database(url, statement_timeout=0)
    try:
        with db.connection_context():
            if not db.table_exists("uws_result"):
                return []
            keys = [row[0] for row in db.execute_sql("SELECT key FROM uws_result ORDER BY key")]
    finally:
        close_database(db)
    return [key for key in keys if not (results / key).is_file()]


# --- the databases --------------------------------------------------------------------------------

def _kind(url: str) -> str:
    scheme = urlsplit(url).scheme.split("+")[0]
    if scheme == "sqlite":
        return "sqlite"
    if scheme in ("postgres", "postgresql"):
        return "postgresql"
    raise BackupError(f"cannot back up a database of scheme {scheme!r}")


def _sqlite_path(url: str) -> Path:
    parts = urlsplit(url)
    path = parts.netloc + parts.path if parts.netloc else parts.path[1:] if parts.path.startswith("/") else parts.path
    if not path or path == ":memory:":
        raise BackupError("the database is in memory: there is nothing to back up or restore into")
    return Path(path)


def _sqlite_copy(source: Path, target: Path) -> None:
    """SQLite's online backup: a consistent copy while other connections write."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)) as src, \
                contextlib.closing(sqlite3.connect(target)) as dst:
            src.backup(dst)
            # One self-contained file (the copy took the source's WAL mode); the service
            # switches it back to WAL when it opens it.
            dst.execute("PRAGMA journal_mode=delete")
    except sqlite3.Error as exc:
        target.unlink(missing_ok=True)
        raise BackupError(f"copying the SQLite database {source} failed: {exc}") from None


def _schema_sqlite(path: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        names = [r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '%\\_schema\\_version' ESCAPE '\\'")]
        return {name.removesuffix("_schema_version"): int(db.execute(f'SELECT max(version) FROM "{name}"').fetchone()[0])
                for name in sorted(names)}


def _schema_of(url: str) -> dict[str, int]:
    db = open_database(url, statement_timeout=0)
    try:
        with db.connection_context():
            names = [r[0] for r in db.execute_sql(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
                "AND table_name LIKE %s ORDER BY table_name", ("%\\_schema\\_version",))]
            return {name.removesuffix("_schema_version"):
                    int(db.execute_sql(f'SELECT max(version) FROM "{name}"').fetchone()[0]) for name in names}
    except pw.OperationalError as exc:
        raise BackupError(f"the database {_safe_url(url)} cannot be read: {exc}".strip()) from None
    finally:
        close_database(db)


def _pg_tables(url: str) -> list[str]:
    db = open_database(url, statement_timeout=0)
    try:
        with db.connection_context():
            return [r[0] for r in db.execute_sql(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
                "ORDER BY table_name")]
    except pw.OperationalError as exc:
        raise BackupError(f"the database {_safe_url(url)} cannot be opened: {exc}".strip()) from None
    finally:
        close_database(db)


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """The URL for pg_dump/pg_restore without its password (that goes in PGPASSWORD, out of
    the process list) and without the service's own options; the environment to run them in."""
    parts = urlsplit(url)
    env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
    if parts.password:
        env["PGPASSWORD"] = unquote(parts.password)
    user = f"{parts.username}@" if parts.username else ""
    host = parts.hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    port = f":{parts.port}" if parts.port else ""
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k in _LIBPQ_OPTIONS])
    return f"postgresql://{user}{host}{port}{parts.path}" + (f"?{query}" if query else ""), env


def _safe_url(url: str) -> str:
    return _libpq(url)[0]


def _run_pg(tool: str, url: str, args: list[str]) -> None:
    binary = shutil.which(tool)
    if binary is None:
        raise BackupError(f"{tool} is not installed (or not on PATH): install PostgreSQL's client tools "
                          f"of the server's version (Debian: postgresql-client)")
    target, env = _libpq(url)
    try:
        done = subprocess.run([binary, *args, f"--dbname={target}"], env=env, capture_output=True, text=True,
                              timeout=_TOOL_SECONDS)
    except subprocess.TimeoutExpired:
        raise BackupError(f"{tool} did not finish within {_TOOL_SECONDS // 3600} hours") from None
    if done.returncode != 0:
        raise BackupError(f"{tool} failed (exit status {done.returncode}): {done.stderr.strip()[-2000:]}")


# --- files ---------------------------------------------------------------------------------------

def _files(root: Path) -> Iterator[Path]:
    for folder, _, names in os.walk(root):
        for name in sorted(names):
            if not name.startswith(".part-"):   # a result being written (storage.local)
                yield Path(folder) / name


def _copy_tree(source: Path, target: Path) -> tuple[int, int]:
    """Copy the files under ``source``; a file deleted meanwhile (its job was) is skipped."""
    count = size = 0
    if not source.is_dir():
        return count, size
    target.mkdir(parents=True, exist_ok=True)
    for path in _files(source):
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copy2(path, destination)
        except FileNotFoundError:
            continue
        count += 1
        size += destination.stat().st_size
    return count, size
