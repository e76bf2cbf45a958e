"""The limit on unfinished bulk jobs holds exactly under concurrent creations (real
requests from threads against the app, on SQLite and on PostgreSQL), per user and per
anonymous client address: the count is made with the insert, as one unit (it was made
while the request was parsed, so creations at once all passed it, and anonymous callers
were counted together, so one address could hold back every other)."""

from __future__ import annotations

import threading
import uuid
from collections import Counter

import pytest

from conftest import app_client, header_identity

RA, DEC = 24.9655, -44.9583
TABLE = f"ra,dec\n{RA},{DEC}\n"
THREADS = 8  # creations at once per caller
USER_LIMIT, ANONYMOUS_LIMIT = 3, 2


@pytest.fixture(params=["sqlite", "postgresql"])
def client(request, tmp_path, demo_root):  # type: ignore[no-untyped-def]
    database = {} if request.param == "sqlite" else {"CUTOUT_DATABASE_URL": request.getfixturevalue("postgres_url")}
    with app_client(tmp_path / "data", demo_root, identify=header_identity, CUTOUT_TRUSTED_PROXIES="127.0.0.1",
                    CUTOUT_ANONYMOUS_ASYNC="open", CUTOUT_ANONYMOUS_RATE_LIMIT="0",
                    CUTOUT_MAX_UPLOADS_AT_ONCE="64", CUTOUT_BULK_MAX_ACTIVE_JOBS=str(USER_LIMIT),
                    CUTOUT_ANONYMOUS_BULK_MAX_ACTIVE_JOBS=str(ANONYMOUS_LIMIT), **database) as c:
        yield c


def _post(client, caller: tuple[str, str]) -> int:  # type: ignore[no-untyped-def]
    kind, name = caller
    headers = {"X-Test-User": name} if kind == "user" else {"X-Forwarded-For": name}
    r = client.post("/bulk", data={"UPLOAD": "positions,param:positions"}, headers=headers,
                    files={"positions": ("p.csv", TABLE, "text/csv")})
    assert r.status_code in (303, 429), r.text
    if r.status_code == 429:
        assert "bulk job limit reached" in r.text and r.headers["retry-after"]
    return r.status_code


@pytest.mark.parametrize("round_", range(2))
def test_concurrent_bulk_creations_never_pass_the_limit(client, round_: int) -> None:  # type: ignore[no-untyped-def]
    run = uuid.uuid4().hex[:6]
    octet = int(run[:2], 16)
    callers = [("user", f"ann-{run}"), ("user", f"bob-{run}"),
               ("anonymous", f"10.{octet}.{round_}.1"), ("anonymous", f"10.{octet}.{round_}.2")]
    start = threading.Barrier(THREADS * len(callers))
    made: Counter[tuple[str, str]] = Counter()
    lock = threading.Lock()

    def racer(caller: tuple[str, str]) -> None:
        start.wait()
        status = _post(client, caller)
        with lock:
            made[caller] += status == 303

    threads = [threading.Thread(target=racer, args=(c,)) for c in callers for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert made == {c: USER_LIMIT if c[0] == "user" else ANONYMOUS_LIMIT for c in callers}
    # Another address is not held back by theirs; theirs stays at its limit.
    assert _post(client, ("anonymous", f"10.{octet}.{round_}.3")) == 303
    assert _post(client, ("anonymous", f"10.{octet}.{round_}.1")) == 429
