"""A seeded fuzz of bulk job creation (/bulk): position tables of every kind of junk, with
every parameter the kind reads, sent as multipart uploads. Never a 5xx, never an unlabelled
refusal; a job that is made runs to an end and is deleted."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import eventually

HEADERS = ["ra,dec", "RAJ2000;DEJ2000", "s_ra\ts_dec\tid", "ra,dec,radius_arcsec,band", "x,y", "ra", "",
           "ra,dec,size,objid,filter"]
CELLS = ["24.9655", "-44.9583", "12:30:00", "-30:15:00", "1e9", "nan", "inf", "", "x", "-0", "360",
         "91", "0.001", "-1", "r", "g", "z", "a" * 300, "\x00", "é", "1,2", '"', "NULL"]
PARAMS = {"UPLOAD": ["positions,param:positions", "positions,param:other", "positions", ",", "p,http://x/y",
                     "positions,param:../x"],
          "RADIUS": ["0.001", "-1", "abc", "1e309", "11", "nan"],
          "FILTER": ["r", "g,r", "q", ",", ""],
          "LAYOUT": ["row", "group", "table", "x"],
          "RESPONSEFORMAT": ["application/fits", "image/png", "fits"],
          "PHASE": ["RUN", "ABORT"]}


def table() -> st.SearchStrategy[bytes]:
    rows = st.lists(st.lists(st.sampled_from(CELLS), max_size=6).map(",".join), max_size=8)
    text = st.tuples(st.sampled_from(HEADERS), rows).map(lambda t: "\n".join([t[0], *t[1]]).encode("utf-8"))
    fits_like = st.binary(max_size=200).map(lambda b: b"SIMPLE  =                    T" + b)
    usable = st.lists(st.sampled_from(["24.9655,-44.9583", "24.97,-44.95", "x,y", "999,0", ","]), min_size=1,
                      max_size=5).map(lambda rows: "\n".join(["ra,dec", "24.9655,-44.9583", *rows]).encode())
    return st.one_of(usable, usable, text, st.binary(max_size=600), fits_like, st.just(b"PAR1garbage"),
                     st.just(b"<VOTABLE><RESOURCE><TABLE><FIELD name='ra'/>"))


def test_bulk_creation_fuzz(embedded) -> None:  # type: ignore[no-untyped-def]
    seen = {"made": 0, "refused": 0}

    @settings(max_examples=150, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=table(), params=st.dictionaries(st.sampled_from(sorted(PARAMS)), st.just(None), max_size=4),
           picks=st.randoms(use_true_random=False), field=st.sampled_from(["positions", "other", "positions"]))
    def case(data: bytes, params: dict, picks, field: str) -> None:  # type: ignore[no-untyped-def]
        form = {"UPLOAD": "positions,param:positions", **{k: picks.choice(PARAMS[k]) for k in params}}
        r = embedded.post("/bulk", data=form, files={field: ("t", data, "application/octet-stream")})
        where = f"{form} {data[:120]!r} -> {r.status_code}: {r.text[:300]}"
        assert r.status_code in (303, 400, 413, 429, 503), where
        if r.status_code != 303:
            seen["refused"] += 1
            assert r.text.split(":")[0] in ("UsageError", "MultiValuedParamNotSupported", "ServiceUnavailable",
                                            "Error"), where
            return
        seen["made"] += 1
        job = r.headers["location"]
        if form.get("PHASE") == "RUN":
            phase = eventually(lambda: (p := embedded.get(job + "/phase").text) in ("COMPLETED", "ERROR") and p,
                               timeout=60)
            assert phase == "COMPLETED", (where, embedded.get(job).text[:2000])
        assert embedded.delete(job).status_code == 303

    case()
    assert seen["made"] >= 5 and seen["refused"] >= 50, seen
