"""A database or queue that stops answering fails the request within a bound, instead of
holding it: PostgreSQL connect and statement timeouts, Redis socket timeouts."""

from __future__ import annotations

import concurrent.futures
import contextlib
import socket
import threading
import time
from urllib.parse import urlsplit

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


class FreezableRelay:
    """A TCP relay in front of the real PostgreSQL that can stop passing bytes on, keeping
    every socket open: to the client, a server frozen mid-conversation."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.flowing = threading.Event()
        self.flowing.set()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                self.flowing.wait()
                sink.sendall(chunk)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.flowing.set()
        self.listener.close()
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.close()


@pytest.fixture
def relay(postgres_url):
    parts = urlsplit(postgres_url)
    relay = FreezableRelay((parts.hostname or "127.0.0.1", parts.port or 5432))
    yield relay, parts._replace(netloc=f"{parts.username}@127.0.0.1:{relay.port}").geturl()
    relay.close()


def frozen_call(db: pw.Database, sql: str) -> tuple[object, float]:
    """Run ``sql`` in a thread of its own: its outcome and duration, or fail after 10 s."""
    outcome: list[object] = []

    def call() -> None:
        t0 = time.monotonic()
        try:
            db.execute_sql(sql)
            outcome.append("answered")
        except pw.OperationalError as exc:
            outcome.append(exc)
        outcome.append(time.monotonic() - t0)
        db.close()

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "the call still waits on the frozen server after 10 s"
    return outcome[0], outcome[1]  # type: ignore[return-value]


def test_a_pooled_connection_to_a_frozen_server_is_given_up_at_its_deadline(relay):
    """The pool asks the server whether a connection works before handing it out (under the
    pool's lock): on a frozen server that round trip is cut after the connect timeout."""
    server, url = relay
    db = open_database(url, statement_timeout=1, connect_timeout=1)
    try:
        assert db.execute_sql("SELECT 1").fetchone() == (1,)
        db.close()  # back to the pool: the next call, from another thread, takes it
        server.flowing.clear()
        outcome, seconds = frozen_call(db, "SELECT 2")
        assert isinstance(outcome, pw.OperationalError), outcome
        # The check is cut at 1 s; the server just proved silent, no new connection is tried.
        assert 0.9 <= seconds < 4, seconds
        assert db.deadlines is not None and db.deadlines.cut == 1
        server.flowing.set()
        time.sleep(1.1)  # the quiet period after the failure (the connect timeout) ends
        assert db.execute_sql("SELECT 3").fetchone() == (3,)
    finally:
        server.flowing.set()
        close_database(db)


def test_a_query_on_a_held_connection_to_a_frozen_server_ends_at_its_deadline(relay):
    """The statement timeout is the server's: a frozen server enforces nothing. The client
    cuts a call that passes statement timeout + margin; the pool then connects anew."""
    server, url = relay
    db = open_database(url, statement_timeout=1, connect_timeout=1)
    held, frozen = threading.Event(), threading.Event()
    outcome: list[object] = []

    def query() -> None:
        db.execute_sql("SELECT 1")  # this thread now holds a connection
        held.set()
        frozen.wait(5)
        t0 = time.monotonic()
        try:
            db.execute_sql("SELECT 2")
            outcome.append("answered")
        except pw.OperationalError as exc:
            outcome.append(exc)
        outcome.append(time.monotonic() - t0)
        db.close()

    try:
        worker = threading.Thread(target=query, daemon=True)
        worker.start()
        assert held.wait(5)
        server.flowing.clear()
        frozen.set()
        worker.join(timeout=10)
        assert not worker.is_alive(), "the query still waits on the frozen server after 10 s"
        assert isinstance(outcome[0], pw.OperationalError), outcome
        assert 2.5 <= outcome[1] < 6, outcome  # statement timeout 1 s + margin 2 s
        server.flowing.set()
        time.sleep(1.1)
        assert db.execute_sql("SELECT 3").fetchone() == (3,)
    finally:
        server.flowing.set()
        close_database(db)


def test_calls_within_their_deadline_are_left_alone(postgres_url):
    db = open_database(postgres_url, statement_timeout=1)
    try:
        for _ in range(5):
            assert db.execute_sql("SELECT pg_sleep(0.2), 1").fetchone()[1] == 1
        with db.atomic():
            db.execute_sql("SELECT 1")
        assert db.deadlines is not None and db.deadlines.cut == 0
    finally:
        close_database(db)


def test_requests_queued_behind_a_frozen_server_fail_together(relay):
    """The pool opens connections under its lock: after the first request has found the
    server silent, the others waiting for that lock are answered at once, instead of each
    waiting out its own connect timeout in turn."""
    server, url = relay
    db = open_database(url, statement_timeout=1, connect_timeout=1)
    try:
        barrier = threading.Barrier(4)

        def hold() -> None:  # four pooled connections, all returned
            db.execute_sql("SELECT 1")
            barrier.wait(5)
            db.close()

        threads = [threading.Thread(target=hold) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(5)
        server.flowing.clear()
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            outcomes = list(pool.map(lambda _: frozen_call(db, "SELECT 2"), range(6)))
        elapsed = time.monotonic() - t0
        assert all(isinstance(o, pw.OperationalError) for o, _ in outcomes), outcomes
        # One liveness check cut (1 s) and one connect timeout (1 s); without the shortcut
        # each request would check the pooled connections and connect in turn (> 10 s).
        assert elapsed < 5, (elapsed, [s for _, s in outcomes])
        assert db.deadlines is not None and db.deadlines.cut == 1  # the other three dropped unasked
        server.flowing.set()
        time.sleep(1.1)  # the quiet period after the failure ends
        assert db.execute_sql("SELECT 3").fetchone() == (3,)
    finally:
        server.flowing.set()
        close_database(db)
