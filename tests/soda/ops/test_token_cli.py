"""``cutout token create|list|revoke``: personal API tokens written by an operator into the
service's database, which a running service accepts at once."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from auth.tokens import Check, TokenStore
from conftest import app_client
from soda.ops.cli import main
from soda.ops.database import open_database


@pytest.fixture
def data_dir(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    for name in [n for n in os.environ if n.startswith("CUTOUT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CUTOUT_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def store_of(data_dir) -> TokenStore:  # type: ignore[no-untyped-def]
    return TokenStore(open_database(f"sqlite:///{data_dir / 'cutout.sqlite'}"))


def test_create_prints_the_token_once_and_stores_its_digest(data_dir, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["token", "create", "--user", "alice", "--name", "laptop", "--days", "7"]) == 0
    out, err = capsys.readouterr()
    secret = out.strip()
    assert secret.startswith("cut_") and out.count("\n") == 1   # stdout: the token alone
    assert "alice" in err and "shown only this once" in err and secret not in err
    check, info = store_of(data_dir).check(secret)
    assert check is Check.VALID and info is not None
    assert (info.user_id, info.name) == ("alice", "laptop")
    lifetime = info.expires - dt.datetime.now(dt.UTC).replace(tzinfo=None)
    assert dt.timedelta(days=6, hours=23) < lifetime <= dt.timedelta(days=7)
    assert secret not in (data_dir / "cutout.sqlite").read_bytes().decode("latin-1")


def test_list_and_revoke(data_dir, capsys) -> None:  # type: ignore[no-untyped-def]
    main(["token", "create", "--user", "alice"])
    main(["token", "create", "--user", "bob", "--name", "other"])
    bobs = capsys.readouterr().out.split()[1]
    assert main(["token", "list", "--user", "alice"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    token_id, name = line.split("\t")[:2]
    assert name == "cli" and "last used never" in line and "cut_" not in line
    assert main(["token", "revoke", "--user", "bob", token_id]) == 1   # not bob's
    assert "has no token" in capsys.readouterr().err
    assert main(["token", "revoke", "--user", "alice", token_id]) == 0
    assert store_of(data_dir).list("alice") == []
    assert store_of(data_dir).check(bobs)[0] is Check.VALID   # bob's token is untouched


def exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.mark.parametrize("args", [
    ["--user", "alice", "--days", "0"], ["--user", "alice", "--days", "366"],
    ["--user", "   "], ["--user", "alice", "--name", ""], ["--user", "alice", "--name", "x" * 101]])
def test_bad_arguments_exit_2_and_create_nothing(data_dir, capsys, args) -> None:  # type: ignore[no-untyped-def]
    assert exit_code(["token", "create", *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("cutout token")
    assert not (data_dir / "cutout.sqlite").exists()


def test_a_running_service_accepts_the_token_at_once(data_dir, demo_root, capsys) -> None:  # type: ignore[no-untyped-def]
    with app_client(data_dir, demo_root) as client:
        assert main(["token", "create", "--user", "alice"]) == 0
        secret = capsys.readouterr().out.strip()
        r = client.get("/whoami", headers={"Authorization": f"Bearer {secret}"})
        assert r.status_code == 200
        assert r.json() == {"user": "alice", "authenticated": True, "method": "token"}


def test_tokens_in_postgresql(postgres_url, tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CUTOUT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CUTOUT_DATABASE_URL", postgres_url)
    assert main(["token", "create", "--user", "carol"]) == 0
    secret = capsys.readouterr().out.strip()
    store = TokenStore(open_database(postgres_url))
    assert store.check(secret)[0] is Check.VALID
    store.db.close_all()  # type: ignore[attr-defined]
