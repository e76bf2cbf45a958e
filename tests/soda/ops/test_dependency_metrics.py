"""/metrics says which dependency is down (cutout_dependency_up), and keeps answering while
one is: what is read from a dependency that is down is left out, not a failed scrape."""

from __future__ import annotations

import peewee as pw
from prometheus_client.parser import text_string_to_metric_families


def scrape(client) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:  # type: ignore[no-untyped-def]
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def up(found, dependency: str) -> float:  # type: ignore[no-untyped-def]
    return found["cutout_dependency_up"][(("dependency", dependency),)]


def test_every_dependency_checked_is_up_on_a_whole_service(embedded) -> None:
    found = scrape(embedded)
    assert set(found["cutout_dependency_up"]) == {(("dependency", d),) for d in ("database", "images", "results")}
    assert all(v == 1.0 for v in found["cutout_dependency_up"].values())
    assert (("phase", "COMPLETED"),) in found["cutout_jobs"] and found["cutout_queue_depth"]


def test_a_failed_check_is_zero_and_the_rest_still_scraped(embedded, tmp_path, monkeypatch) -> None:
    runtime = embedded.app_state.runtime
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setattr(runtime.storage, "root", blocker / "results")   # results cannot be written
    found = scrape(embedded)
    assert up(found, "results") == 0.0 and up(found, "database") == 1.0 and up(found, "images") == 1.0
    assert "cutout_jobs" in found and "cutout_http_requests_total" in found


def test_a_database_that_is_down_is_not_asked_for_job_counts(embedded, monkeypatch) -> None:
    store = embedded.app_state.runtime.store
    asked: list[str] = []

    def down() -> None:
        raise pw.OperationalError("connection refused")

    def count_by_phase():  # type: ignore[no-untyped-def]
        asked.append("count_by_phase")
        raise pw.OperationalError("connection refused")

    monkeypatch.setattr(store, "ping", down)
    monkeypatch.setattr(store, "count_by_phase", count_by_phase)
    found = scrape(embedded)
    assert up(found, "database") == 0.0
    assert "cutout_jobs" not in found and not asked
    assert found["cutout_queue_depth"] and "cutout_http_requests_total" in found


def test_a_failing_read_leaves_its_family_out_even_when_the_check_passed(embedded, monkeypatch) -> None:
    def count_by_phase():  # type: ignore[no-untyped-def]
        raise pw.OperationalError("statement timeout")

    monkeypatch.setattr(embedded.app_state.runtime.store, "count_by_phase", count_by_phase)
    found = scrape(embedded)
    assert up(found, "database") == 1.0 and "cutout_jobs" not in found and found["cutout_queue_depth"]
