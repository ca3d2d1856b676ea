"""deploy/prometheus and deploy/grafana: promtool validates the config, the
rules and their unit tests; every PromQL expression (alerts, dashboard panels,
dashboard variables, rule-test series) names only metrics and labels that a
real scrape of the proxy contains."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from support.promql import parse
from support.proxy import start_proxy

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "azml-egress-dashboard.json"
RULES = PROMETHEUS / "azml-egress-rules.yml"
RULES_TEST = PROMETHEUS / "azml-egress-rules.test.yml"
CONFIG = PROMETHEUS / "prometheus.yml"

TARGET_LABELS = {"job", "instance"}
"""Labels Prometheus attaches to every scraped series."""
PROMETHEUS_SERIES = {"up": TARGET_LABELS}
"""Series Prometheus itself writes for every scrape target."""
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "1h", "$__interval": "1m"}

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool is not installed (Debian package prometheus)")


# -- the expressions --------------------------------------------------------------

def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(board: dict) -> list[dict]:
    out = []
    for panel in board["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def dashboard_expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target."""
    return [(f"panel {p['title']!r} target {t['refId']}", t["expr"])
            for p in panels(dashboard()) for t in p.get("targets", [])]


def label_values_queries() -> list[tuple[str, str, str]]:
    """(variable, metric, label) of the dashboard's ``label_values(metric, label)`` variables."""
    out = []
    for var in dashboard()["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            m = re.fullmatch(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)", query)
            assert m, f"variable {var['name']}: unexpected query {query!r}"
            out.append((var["name"], m.group(1), m.group(2)))
    return out


def rule_expressions() -> list[tuple[str, str]]:
    data = yaml.safe_load(RULES.read_text())
    return [(f"rule {r.get('alert') or r.get('record')}", r["expr"]) for g in data["groups"] for r in g["rules"]]


def rule_test_series() -> list[tuple[str, str]]:
    data = yaml.safe_load(RULES_TEST.read_text())
    return [(f"rule test {t['name']!r}", s["series"]) for t in data["tests"] for s in t["input_series"]]


def all_expressions() -> list[tuple[str, str]]:
    return rule_expressions() + dashboard_expressions() + rule_test_series()


def grafana_free(expr: str) -> str:
    """``expr`` with Grafana's variables replaced, as Grafana sends it."""
    for name, replacement in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, replacement)
    return expr.replace("$instance", ".*")


# -- the extractor itself ---------------------------------------------------------

@pytest.mark.parametrize(("expr", "names", "grouping"), [
    ('up{job="azml-egress"} == 0', {"up"}, set()),
    ('sum by (feature, action) (rate(a_total{x="y", z=~"$v"}[$__rate_interval]))', {"a_total"}, {"feature", "action"}),
    ('histogram_quantile(0.99, sum(rate(h_bucket[5m])) by (le)) > 0.005', {"h_bucket"}, {"le"}),
    ('a / on(instance) group_left(mode) b offset 5m', {"a", "b"}, {"instance", "mode"}),
    ('topk(10, sum without (le) (c)) and d unless e or f', {"c", "d", "e", "f"}, {"le"}),
    ('count_values("v", g{s="by (x)"}) * bool 2', {"g"}, set()),
], ids=["comparison", "aggregation with by first", "by after the aggregation", "vector matching",
        "set operators", "strings are not names"])
def test_extractor(expr, names, grouping):
    parsed = parse(expr)
    assert parsed.metric_names == names
    assert parsed.grouping_labels == grouping


def test_extractor_reads_matchers():
    (selector,) = parse('x{a="1", b!~"2|3",c=~`4`}').selectors
    assert selector.matchers == [("a", "=", "1"), ("b", "!~", "2|3"), ("c", "=~", "4")]


# -- promtool ---------------------------------------------------------------------

def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60, cwd=cwd)


@needs_promtool
def test_promtool_checks_the_scrape_config_and_its_rules():
    done = promtool("check", "config", CONFIG.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 1 rule files found" in done.stdout


@needs_promtool
def test_promtool_checks_the_rules():
    done = promtool("check", "rules", RULES.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rule_expressions())} rules found" in done.stdout


@needs_promtool
def test_promtool_runs_the_rule_unit_tests():
    done = promtool("test", "rules", RULES_TEST.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@needs_promtool
def test_promtool_parses_every_dashboard_expression(tmp_path):
    exprs = dashboard_expressions()
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr_{i}", "expr": grafana_free(expr)} for i, (_, expr) in enumerate(exprs)]}]}
    (tmp_path / "dashboard-rules.yml").write_text(yaml.safe_dump(rules))
    done = promtool("check", "rules", "dashboard-rules.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in done.stdout


@needs_promtool
def test_promtool_rejects_a_broken_expression(tmp_path):
    """The check above can fail: promtool refuses what Grafana would refuse."""
    (tmp_path / "bad.yml").write_text(yaml.safe_dump(
        {"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": "sum by (feature (rate(x[5m]))"}]}]}))
    assert promtool("check", "rules", "bad.yml", cwd=tmp_path).returncode != 0


# -- the dashboard's shape ----------------------------------------------------------

def test_dashboard_shape():
    board = dashboard()
    assert board["uid"] == "azml-egress" and board["title"] and board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in panels(board):
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24 and pos["h"] > 0, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
    titles = {p["title"] for p in panels(board)}
    for wanted in ("Decisions by feature and action", "Top would-deny features (simulate)",
                   "Decision latency (Policy.decide)", "Active tunnels by feature", "Tunnelled bytes by feature",
                   "Policy in force"):
        assert wanted in titles


# -- every name against a real scrape -----------------------------------------------

@pytest.fixture(scope="module")
def exported(tmp_path_factory, upstream) -> dict[str, set[str]]:
    """Sample name -> label names, from a real scrape of a freshly started proxy."""
    proxy = start_proxy(tmp_path_factory.mktemp("scrape"), upstream, metrics=True)
    try:
        text = proxy.scrape()
    finally:
        proxy.stop()
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out


def test_the_readme_documents_every_exported_metric(exported):
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `(azml_egress_[a-z_]+)`", readme, re.M))
    scraped = set()
    for name in exported:
        if not name.startswith("azml_egress_"):
            continue
        for suffix in ("_bucket", "_count", "_sum"):
            if name.endswith(suffix) and name[: -len(suffix)] + "_bucket" in exported:
                name = name[: -len(suffix)]  # a histogram is documented under its base name
        scraped.add(name)
    assert documented == scraped


@pytest.mark.parametrize(("where", "expr"), all_expressions(), ids=[w for w, _ in all_expressions()])
def test_every_expression_names_exported_metrics_and_labels(exported, where, expr):
    known = {**exported, **PROMETHEUS_SERIES}
    parsed = parse(expr)
    assert parsed.selectors, f"{where}: no metric in {expr!r}"
    labels_in_play = set(TARGET_LABELS) | {"le"}
    for selector in parsed.selectors:
        assert selector.name, f"{where}: a selector without a metric name: {expr!r}"
        assert selector.name in known, f"{where}: {selector.name} is not exported (expression {expr!r})"
        available = known[selector.name] | TARGET_LABELS
        labels_in_play |= available
        for label, _, _ in selector.matchers:
            assert label in available, f"{where}: {selector.name} has no label {label!r}"
    assert parsed.grouping_labels <= labels_in_play, f"{where}: unknown labels {parsed.grouping_labels - labels_in_play}"


def test_dashboard_variables_name_exported_metrics(exported):
    queries = label_values_queries()
    assert queries
    for name, metric, label in queries:
        assert metric in exported, f"variable {name}: {metric} is not exported"
        assert label in exported[metric] | TARGET_LABELS, f"variable {name}: no label {label}"


def test_a_misspelt_metric_would_be_caught(exported):
    parsed = parse('sum by (feature) (rate(azml_egress_decision_total[5m]))')
    assert not parsed.metric_names <= set(exported)
