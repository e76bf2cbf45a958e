"""A backup taken with the documented command (`cutout backup DIR`, docs/operations.md) of a
running service restores (`cutout restore DIR`) into a fresh database and a fresh data
folder, and the service started on them serves the old jobs: the same job documents, the
same result bytes, the same users' tokens. PostgreSQL (with a real Redis broker and a real
`cutout worker` running the cutouts) and the embedded SQLite default."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from conftest import ROOT, assert_uws, base_env, fresh_database, link_demo, start_server, start_worker, uws_text

pytestmark = [pytest.mark.slow]

UWS = {"uws": "http://www.ivoa.net/xml/UWS/v1.0"}
XLINK = "{http://www.w3.org/1999/xlink}href"
TILE = "ivo://demo.cutout/des?DES0139-4457_r"


def cutout(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The `cutout` command of the environment the tests run in, as an operator runs it."""
    return subprocess.run([str(Path(sys.prefix) / "bin" / "cutout"), *args], env={**env, "PYTHONPATH": str(ROOT)},
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def finished(client: httpx.Client, url: str) -> str:
    """The job document once the job has ended."""
    body = client.get(url, params={"WAIT": "30", "PHASE": "QUEUED"}, timeout=40).text
    for _ in range(6):
        doc = assert_uws(body.encode())
        if uws_text(doc, "uws:phase") not in ("QUEUED", "EXECUTING", "PENDING"):
            return body
        body = client.get(url, params={"WAIT": "30"}, timeout=40).text
    raise AssertionError(f"{url} did not finish: {body}")


def caller(client: httpx.Client, url: str, anonymous: set[str]) -> httpx.Client | type[httpx]:
    return httpx if any(url.startswith(a) for a in anonymous) else client


def make_jobs(client: httpx.Client, base: str) -> tuple[list[str], set[str]]:
    """A cutout job of a user, an anonymous one and a bulk job of the user, all run to the end;
    their URLs, and those of the anonymous ones (only an anonymous caller may read them)."""
    urls, anonymous = [], set()
    for headers in ({}, {"Authorization": client.headers["Authorization"]}):
        r = httpx.post(base + "/async", headers=headers, timeout=30, data={
            "ID": TILE, "CIRCLE": ["24.9655 -44.9583 0.01", "24.97 -44.95 0.005"], "PHASE": "RUN", "RUNID": "kept"})
        assert r.status_code == 303, r.text
        urls.append(r.headers["location"])
        if not headers:
            anonymous.add(r.headers["location"])
    table = b"ra,dec,id\n24.9655,-44.9583,first\n24.98,-44.95,second\n"
    r = client.post(base + "/bulk", files={"positions": ("positions.csv", table, "text/csv")}, timeout=30,
                    data={"UPLOAD": "positions,param:positions", "RADIUS": "0.003", "PHASE": "RUN"})
    assert r.status_code == 303, r.text
    urls.append(r.headers["location"])
    for url in urls:
        who = caller(client, url, anonymous)
        assert uws_text(assert_uws(finished(who, url).encode()), "uws:phase") == "COMPLETED", url  # type: ignore[arg-type]
    return urls, anonymous


def snapshot(client: httpx.Client, urls: list[str], base: str, anonymous: set[str]) -> dict[str, object]:
    """What the service serves of the jobs: documents (their URLs relative to the base) and
    every result's bytes."""
    seen: dict[str, object] = {}
    for url in urls:
        who = caller(client, url, anonymous)
        doc = who.get(url, timeout=30)
        assert doc.status_code == 200, doc.text
        seen[url.removeprefix(base)] = doc.text.replace(base, "BASE")
        hrefs = [r.get(XLINK) for r in assert_uws(doc.content).findall("uws:results/uws:result", UWS)]
        assert hrefs, url
        for href in hrefs:
            answer = who.get(href, timeout=30)
            assert answer.status_code == 200, (href, answer.text[:200])
            seen[href.removeprefix(base)] = answer.content
        seen[url.removeprefix(base) + "/parameters"] = who.get(url + "/parameters").text.replace(base, "BASE")
    listed = client.get(base + "/async", timeout=30).text + client.get(base + "/bulk", timeout=30).text
    seen["alice's jobs"] = sorted(re.findall(r'xlink:href="([^"]+)"', listed.replace(base, "BASE")))
    return seen


def token_for(env: dict[str, str]) -> str:
    made = cutout("token", "create", "--user", "alice", "--name", "backup-test", env=env)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def check_restored(before: dict[str, object], client: httpx.Client, urls: list[str], anonymous: set[str],
                   old_base: str, new_base: str) -> None:
    moved = [new_base + u.removeprefix(old_base) for u in urls]
    after = snapshot(client, moved, new_base, {new_base + u.removeprefix(old_base) for u in anonymous})
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert after[key] == value, key
    assert len(before["alice's jobs"]) == 2  # type: ignore[arg-type]   # the user's cutout and bulk jobs
    # the restored service's own state works: the user's token, and new jobs
    assert client.get(new_base + "/whoami").json() == {"user": "alice", "authenticated": True, "method": "token"}
    r = client.post(new_base + "/async", data={"ID": TILE, "CIRCLE": "24.9655 -44.9583 0.01", "PHASE": "RUN"})
    assert r.status_code == 303, r.text
    assert "COMPLETED" in finished(client, r.headers["location"])


@pytest.mark.redis
@pytest.mark.postgres
def backed_up(client: httpx.Client, base: str, env: dict[str, str],
              backup_dir: Path) -> tuple[list[str], set[str], dict[str, object], str]:
    """The test's jobs made, what they answer kept, and a backup taken while the service runs
    (with what it printed)."""
    urls, anonymous = make_jobs(client, base)
    before = snapshot(client, urls, base, anonymous)
    taken = cutout("backup", str(backup_dir), env=env)
    assert taken.returncode == 0, taken.stderr
    return urls, anonymous, before, taken.stdout


def test_postgresql_backup_restores_into_a_fresh_database(tmp_path: Path, demo_root: Path, redis_url: str) -> None:
    backup_dir = tmp_path / "backup"
    with fresh_database("cutout_backup") as source_url, fresh_database("cutout_backup") as restored_url:
        env = base_env(tmp_path / "data", demo_root, CUTOUT_DATABASE_URL=source_url, CUTOUT_BROKER_URL=redis_url,
                       CUTOUT_REDIS_NAMESPACE=f"cutout-backup-{uuid.uuid4().hex[:8]}",
                       CUTOUT_ANONYMOUS_ASYNC="open")
        server, base = start_server(env, tmp_path / "server.log")
        worker = start_worker(env, tmp_path / "worker.log")
        try:
            with httpx.Client(headers={"Authorization": f"Bearer {token_for(env)}"}) as client:
                urls, anonymous, before, said = backed_up(client, base, env, backup_dir)
                assert "postgresql database" in said
                for url in urls:   # gone from the old service: only the backup has them now
                    assert caller(client, url, anonymous).delete(url).status_code == 303
                token = client.headers["Authorization"][7:]
        finally:
            worker.stop()
            server.stop()
        manifest = json.loads((backup_dir / "manifest.json").read_text())
        assert manifest["database"] == "postgresql" and manifest["schema"]["uws"] >= 6
        assert (backup_dir / "database.dump").stat().st_size > 0
        assert manifest["results"]["files"] >= 6   # 2 + 2 cutouts, 2 bulk files and manifests, the upload

        # the restored service: a fresh database, a fresh data folder, the embedded shape
        new_env = base_env(tmp_path / "restored", demo_root, CUTOUT_DATABASE_URL=restored_url,
                           CUTOUT_ANONYMOUS_ASYNC="open")
        put = cutout("restore", str(backup_dir), env=new_env)
        assert put.returncode == 0, put.stdout + put.stderr
        again = cutout("restore", str(backup_dir), env=new_env)   # never over a database in use
        assert again.returncode == 1 and "has tables already" in again.stderr
        server, new_base = start_server(new_env, tmp_path / "restored.log")
        try:
            with httpx.Client(headers={"Authorization": f"Bearer {token}"}) as restored:
                check_restored(before, restored, urls, anonymous, base, new_base)
        finally:
            server.stop()


def test_sqlite_backup_restores_into_a_fresh_data_folder(tmp_path: Path, demo_root: Path) -> None:
    backup_dir = tmp_path / "backup"
    env = base_env(tmp_path / "data", demo_root, CUTOUT_ANONYMOUS_ASYNC="open")
    server, base = start_server(env, tmp_path / "server.log")
    try:
        with httpx.Client(headers={"Authorization": f"Bearer {token_for(env)}"}) as client:
            urls, anonymous, before, _ = backed_up(client, base, env, backup_dir)
            token = client.headers["Authorization"][7:]
    finally:
        server.stop()
    assert json.loads((backup_dir / "manifest.json").read_text())["database"] == "sqlite"
    assert sorted(p.name for p in backup_dir.iterdir()) == ["database.sqlite", "manifest.json", "results", "secrets"]

    new_env = base_env(tmp_path / "restored", None, CUTOUT_ANONYMOUS_ASYNC="open")
    put = cutout("restore", str(backup_dir), env=new_env)
    assert put.returncode == 0, put.stdout + put.stderr
    assert (tmp_path / "restored" / "secrets" / "session.key").read_bytes() == \
        (tmp_path / "data" / "secrets" / "session.key").read_bytes()
    again = cutout("restore", str(backup_dir), env=new_env)
    assert again.returncode == 1 and "there is a database" in again.stderr
    link_demo(tmp_path / "restored", demo_root)   # the survey images, as the old data folder had them
    server, new_base = start_server(new_env, tmp_path / "restored.log")
    try:
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}) as restored:
            check_restored(before, restored, urls, anonymous, base, new_base)
    finally:
        server.stop()


def test_restore_refuses_what_it_cannot_restore(tmp_path: Path) -> None:
    env = base_env(tmp_path / "data")
    nothing = cutout("restore", str(tmp_path / "nowhere"), env=env)
    assert nothing.returncode == 1 and "is not a backup of this service" in nothing.stderr
    made = tmp_path / "made"
    (made / "results").mkdir(parents=True)
    (made / "database.sqlite").write_bytes(b"")
    (made / "manifest.json").write_text(json.dumps(
        {"format": 1, "database": "sqlite", "schema": {"uws": 999}, "results": {}}))
    newer = cutout("restore", str(made), env=env)
    assert newer.returncode == 1 and "newer version" in newer.stderr and "uws 999" in newer.stderr
    for schema, named in (({"audit": 999}, "audit 999"), ({"future": 1}, "future 1 (unknown to this version)")):
        (made / "manifest.json").write_text(json.dumps(
            {"format": 1, "database": "sqlite", "schema": {"uws": 1, **schema}, "results": {}}))
        later = cutout("restore", str(made), env=env)
        assert later.returncode == 1 and "newer version" in later.stderr and named in later.stderr, later.stderr
    assert not (tmp_path / "data" / "cutout.sqlite").exists()
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    refused = cutout("backup", str(full), env=env)
    assert refused.returncode == 1 and "not an empty folder" in refused.stderr
