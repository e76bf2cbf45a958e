from conftest import assert_uws, eventually, uws_text


def test_create_run_complete(embedded):
    r = embedded.post("/selftest", data={"DURATION": "0.1", "PHASE": "RUN", "RUNID": "x"})
    assert r.status_code == 303
    url = r.headers["location"]
    doc = eventually(lambda: (d := assert_uws(embedded.get(url).content)) is not None
                     and uws_text(d, "uws:phase") == "COMPLETED" and d)
    assert uws_text(doc, "uws:runId") == "x"
