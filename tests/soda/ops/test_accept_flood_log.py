"""A flood of accept failures (out of file descriptors) is logged once per interval, with
the count of the lines left out, instead of once per attempt."""

from __future__ import annotations

import logging

import pytest

from soda.ops.connections import FLOOD_MESSAGES, RateLimitedLog


def test_accept_failures_are_logged_once_per_interval(caplog: pytest.LogCaptureFixture,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("soda.ops.connections.time.monotonic", lambda: clock[0])
    logger = logging.getLogger("asyncio.flood-test")
    flood = RateLimitedLog(FLOOD_MESSAGES, interval=60)
    logger.addFilter(flood)
    try:
        with caplog.at_level(logging.ERROR, logger="asyncio.flood-test"):
            for _ in range(10_000):
                logger.error("socket.accept() out of system resource\nsocket: %s", "<sock>")
            logger.error("something else")
            clock[0] += 61
            logger.error("socket.accept() out of system resource\nsocket: %s", "<sock>")
    finally:
        logger.removeFilter(flood)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines[:5]
    assert lines[1] == "something else"
    assert "9999 more like it in the last 60 s not logged" in lines[2]
