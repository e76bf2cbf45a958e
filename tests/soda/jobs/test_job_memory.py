"""A job worker with no job left lets the decoded tiles of its cuts go."""

from __future__ import annotations

from conftest import eventually


def test_tiles_are_let_go_when_the_last_job_ends(embedded) -> None:  # type: ignore[no-untyped-def]
    cutouts = embedded.app_state.runtime.cutouts
    r = embedded.post("/async", data={"ID": "ivo://demo.cutout/des?DES0139-4457_r",
                                      "CIRCLE": "24.9655 -44.9583 0.01", "PHASE": "RUN"})
    assert r.status_code == 303, r.text
    job = r.headers["location"]
    eventually(lambda: embedded.get(job + "/phase").text == "COMPLETED")
    assert len(cutouts.files.tiles) == 0 and cutouts.files.tiles.held_bytes == 0


def test_busy_lets_go_only_when_the_last_unit_ends(embedded) -> None:  # type: ignore[no-untyped-def]
    cutouts = embedded.app_state.runtime.cutouts
    request = cutouts.parse([("ID", "ivo://demo.cutout/des?DES0139-4457_r"), ("CIRCLE", "24.9655 -44.9583 0.01")])
    [target] = cutouts.plan(request)
    limits = cutouts.limits("someone")
    with cutouts.busy():
        with cutouts.busy():
            assert cutouts.make_one(target, request, limits) is not None
        assert len(cutouts.files.tiles) > 0  # another unit still runs: kept for it
    assert len(cutouts.files.tiles) == 0
