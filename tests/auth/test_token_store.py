"""Personal API tokens in the database (auth.tokens)."""

from __future__ import annotations

import datetime as dt

from auth.tables import MIGRATIONS as AUTH
from auth.tokens import Check, TokenStore
from soda.ops.database import migrate, open_database


def test_a_token_made_with_an_aware_expiry_is_checked_like_any_other(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = open_database(f"sqlite:///{tmp_path / 'tokens.sqlite'}")
    migrate(db, [("auth", AUTH)])
    store = TokenStore(db)
    _, secret = store.create("ann", "laptop", dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    check, info = store.check(secret)
    assert check is Check.VALID and info is not None and info.expires.tzinfo is None
    db.close()
