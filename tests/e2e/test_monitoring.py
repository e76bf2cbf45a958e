"""The Grafana dashboard and the Prometheus alert rules in monitoring/ name only metrics the
service exports: a live ``cutout serve`` is given requests, jobs and a job notice, then its
/metrics is read as an operator (from 127.0.0.1, the default operator_clients) and every
metric name of every dashboard expression and rule must be there (a histogram by its
_bucket/_sum/_count series). The dashboard must be a Grafana dashboard (panels with targets,
unique ids, a datasource), and the rules must parse: with PyYAML, and with ``promtool check
rules`` (Debian's prometheus package), which also parses every dashboard expression; and
the rules fire as their unit tests say (``promtool test rules``: outages, a queue without
workers, 5xx answers, a backlog, slow /sync).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from conftest import base_env, eventually, free_port, require, start_server
from soda.surveys.des import tile_centre

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "monitoring" / "grafana" / "cutout-service.json"
RULES = ROOT / "monitoring" / "prometheus" / "cutout-alerts.yml"
RULE_TESTS = ROOT / "monitoring" / "prometheus" / "cutout-alerts.test.yml"
TILE = "DES0139-4457"
RA0, DEC0 = tile_centre(TILE)

# Series Prometheus makes itself for every scrape target, not the service.
PROMETHEUS_OWN = {"up"}

# PromQL words that are not metric names: functions, aggregations, keywords.
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values",
    "group", "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset",
    "bool", "rate", "irate", "increase", "delta", "idelta", "deriv", "histogram_quantile", "absent",
    "absent_over_time", "vector", "scalar", "clamp_min", "clamp_max", "abs", "ceil", "floor", "round",
    "time", "timestamp", "label_replace", "label_join", "sort", "sort_desc", "avg_over_time",
    "max_over_time", "min_over_time", "sum_over_time", "count_over_time", "changes", "resets",
    "predict_linear", "inf", "nan",
}
# Grafana's variables, as a Prometheus would see them once Grafana has filled them in.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "30s", "$job": ".*",
                     "$instance": ".*"}


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads: what is left of it once strings, label
    matchers, grouping labels, ranges and PromQL's own words are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)                            # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)                                      # label matchers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)                                     # ranges
    text = re.sub(r"\boffset\s+\S+", " ", text)
    text = re.sub(r"\$\w+", " ", text)
    words = set(re.findall(r"(?<![\w.$])([A-Za-z_:][A-Za-z0-9_:]*)", text))
    return {w for w in words if w.lower() not in PROMQL_WORDS}


def dashboard_expressions(dashboard: dict) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    found = []
    for panel in all_panels(dashboard):
        for target in panel.get("targets", []):
            found.append((panel["title"], target["expr"]))
    return found


def all_panels(dashboard: dict) -> list[dict]:  # type: ignore[type-arg]
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels += panel.get("panels", [])   # a collapsed row holds its panels
    return panels


def rule_expressions(rules: dict) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(rule.get("alert") or rule["record"], rule["expr"]) for group in rules["groups"] for rule in group["rules"]]


def exported(text: str) -> set[str]:
    """Every series name in an exposition, histograms' families under their own name too."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


def promtool() -> str:
    found = shutil.which("promtool")
    require("promtool", None if found else "not on PATH (apt-get install -y prometheus)")
    assert found is not None
    return found


# --- the live service -----------------------------------------------------------------------

def closed_port() -> int:
    """A port nothing listens on: a webhook sent there fails at once."""
    port = free_port()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
    return port


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory, demo_root: Path) -> Iterator[str]:
    """The /metrics text of a service that has answered the traffic the dashboard shows."""
    tmp = tmp_path_factory.mktemp("monitoring")
    env = base_env(tmp / "data", demo_root, CUTOUT_NOTIFY_WEBHOOK_SECRET="monitoring-test-secret",
                   CUTOUT_NOTIFY_ALLOW_HTTP="true", CUTOUT_NOTIFY_ALLOW_PRIVATE_TARGETS="true",
                   CUTOUT_NOTIFY_MAX_ATTEMPTS="1")
    proc, base = start_server(env, tmp / "server.log")
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            cut = {"ID": f"ivo://demo.cutout/des?{TILE}_r", "CIRCLE": f"{RA0} {DEC0} 0.003"}
            assert client.get("/sync", params=cut).status_code == 200
            assert client.get("/sync", params={**cut, "RESPONSEFORMAT": "png"}).status_code == 200
            assert client.get("/sync", params={"CIRCLE": "999 0 1"}).status_code == 400
            assert client.get("/links", params={"ID": cut["ID"]}).status_code == 200
            # A job that ends, with a notice that cannot be delivered (one attempt: failed).
            created = client.post("/async", data={**cut, "PHASE": "RUN",
                                                  "NOTIFY": f"http://127.0.0.1:{closed_port()}/hook"})
            assert created.status_code == 303, created.text
            job = created.headers["location"]
            eventually(lambda: client.get(f"{job}/phase").text == "COMPLETED", timeout=60)
            # A job destroyed by a sweep once its destruction time has passed.
            soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2))
            doomed = client.post("/selftest", data={"RESULTS": "1", "DESTRUCTION": soon}).headers["location"]
            eventually(lambda: client.get(doomed).status_code == 404, timeout=60)

            def scrape() -> str:
                text = client.get("/metrics").text
                wanted = ("cutout_job_notices_total", "cutout_sweep_jobs_total")
                return text if all(f"\n{name}{{" in text for name in wanted) else ""
            yield eventually(scrape, timeout=60, interval=0.5)
    finally:
        proc.stop()


# --- the tests ----------------------------------------------------------------------------------

def test_the_name_finder_reads_promql() -> None:
    assert metric_names('histogram_quantile(0.99, sum by (le, route) (rate(a_seconds_bucket{job=~"$job", '
                        'route="/sync"}[$__rate_interval])))') == {"a_seconds_bucket"}
    assert metric_names('max by (job) (x{phase="ERROR"}) - max by (job) (x{phase="ERROR"} offset 1h) > 50') == {"x"}
    assert metric_names('a / on (job) group_left b unless absent(up{job="cutout"}) or vector(0)') == {"a", "b", "up"}
    assert metric_names('count(c{dependency="database"} == 0)') == {"c"}


def test_every_metric_the_dashboard_and_rules_use_is_exported(scraped: str) -> None:
    names = exported(scraped)
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    used: dict[str, set[str]] = {}
    for where, expr in dashboard_expressions(dashboard) + rule_expressions(rules):
        found = metric_names(expr)
        assert found, f"{where}: no metric in {expr!r}"
        for name in found:
            used.setdefault(name, set()).add(where)
    missing = {name: sorted(where) for name, where in used.items() if name not in names | PROMETHEUS_OWN}
    assert not missing, f"metrics the service does not export: {missing}"
    # Each family the service exports is shown somewhere, so a new metric is not forgotten.
    families = {f.name for f in text_string_to_metric_families(scraped) if f.name.startswith("cutout_")}
    shown = {re.sub(r"_(bucket|sum|count|total)$", "", name) for name in used}
    assert families <= shown, f"exported, in no panel or rule: {sorted(families - shown)}"


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["title"] and dashboard["uid"] and isinstance(dashboard["schemaVersion"], int)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = all_panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids), ids
    graphs = [p for p in panels if p["type"] != "row"]
    assert len(graphs) >= 20
    for panel in graphs:
        assert panel["type"] in {"timeseries", "stat", "state-timeline"}, panel["title"]
        assert panel["title"] and panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]
    # No two panels overlap on the grid.
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        g = panel["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_the_alert_rules_parse_and_say_what_is_wrong() -> None:
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    names = [rule["alert"] for rule in alerts]
    assert len(names) == len(set(names))
    assert {"CutoutServiceDown", "CutoutHigh5xxRate", "CutoutSyncLatencyHigh", "CutoutJobBacklog",
            "CutoutJobsQueuedWithoutWorkers", "CutoutDependencyDown"} <= set(names)
    for rule in alerts:
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_promtool_accepts_the_rules_and_the_dashboard_expressions(tmp_path: Path) -> None:
    binary = promtool()
    checked = subprocess.run([binary, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # The dashboard's expressions, with Grafana's variables filled in, as recording rules.
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    records = []
    for number, (_, expr) in enumerate(dashboard_expressions(dashboard)):
        for variable, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
            expr = expr.replace(variable, value)
        assert "$" not in expr, expr
        records.append({"record": f"dashboard:expression_{number}", "expr": expr})
    as_rules = tmp_path / "dashboard-rules.yml"
    as_rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    checked = subprocess.run([binary, "check", "rules", str(as_rules)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_alerts_fire_as_their_unit_tests_say() -> None:
    tested = subprocess.run([promtool(), "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent,
                            capture_output=True, text=True, timeout=120)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr
    names = {test["alertname"] for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]
             for test in case["alert_rule_test"]}
    assert {"CutoutServiceDown", "CutoutDependencyDown", "CutoutJobsQueuedWithoutWorkers", "CutoutHigh5xxRate",
            "CutoutJobBacklog", "CutoutSyncLatencyHigh"} <= names
