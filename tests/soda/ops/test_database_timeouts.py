"""A database or queue that stops answering fails the request within a bound, instead of
holding it: PostgreSQL connect and statement timeouts, Redis socket timeouts."""

from __future__ import annotations

import socket
import time

import peewee as pw
import pytest
import redis

from conf import Settings
from soda.ops.database import close_database, open_database
from uws.broker import make_broker


def test_a_slow_statement_is_cancelled_by_the_statement_timeout(postgres_url):
    db = open_database(postgres_url, statement_timeout=0.5)
    try:
        t0 = time.monotonic()
        with pytest.raises(pw.OperationalError, match="statement timeout"):
            db.execute_sql("SELECT pg_sleep(5)")
        assert time.monotonic() - t0 < 3
    finally:
        close_database(db)


def test_postgres_sessions_carry_the_configured_timeouts(postgres_url):
    ops = Settings().ops
    db = open_database(postgres_url, connect_timeout=ops.database_connect_timeout_seconds,
                       statement_timeout=ops.database_statement_timeout_seconds)
    try:
        shown = db.execute_sql("SHOW statement_timeout").fetchone()[0]
        assert shown == f"{ops.database_statement_timeout_seconds}s"
        assert db.connection().get_dsn_parameters()["connect_timeout"] == str(
            ops.database_connect_timeout_seconds)
    finally:
        close_database(db)


def test_the_default_database_has_a_statement_timeout(postgres_url):
    db = open_database(postgres_url)
    try:
        assert db.execute_sql("SHOW statement_timeout").fetchone()[0] != "0"
    finally:
        close_database(db)


@pytest.fixture
def silent_server():
    """A TCP port whose server accepts connections and never answers (a frozen process:
    the kernel still completes the handshake)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


def test_connecting_to_a_frozen_postgres_gives_up_after_the_connect_timeout(silent_server):
    db = open_database(f"postgresql://nobody@127.0.0.1:{silent_server}/test", connect_timeout=2)
    t0 = time.monotonic()
    with pytest.raises(pw.OperationalError):
        db.connect()
    assert time.monotonic() - t0 < 5


def test_a_frozen_redis_fails_a_send_after_the_socket_timeout(silent_server):
    broker = make_broker(f"redis://127.0.0.1:{silent_server}/0", "timeouts", socket_timeout=1)
    t0 = time.monotonic()
    with pytest.raises(redis.RedisError):
        broker.client.ping()
    assert time.monotonic() - t0 < 4
    broker.close()
