"""The learn report: the gap under a policy, unused rules, features, renderers."""

from __future__ import annotations

import json

import pytest

from proxy_addon.learn_report import analyse, human_bytes, md, to_json, to_markdown, to_text
from proxy_addon.learnfile import HostRecord, LearnData, Overflow
from proxy_addon.policy_loader import load_policy, policy_from_text

T1, T2 = "2026-11-29T10:00:00.000Z", "2026-11-29T11:00:00.000Z"


def rec(host, port=443, protocol="https", count=1, clients=("10.0.0.1",), sent=0, received=0, reasons=None):
    return HostRecord(host, port, protocol, T1, T2, count=count, clients=list(clients), bytes_sent=sent,
                      bytes_received=received, reasons=dict(reasons or {}))


def learned(*records, overflow=None):
    data = LearnData(started=T1, updated=T2, files=["a.json", "b.json"], overflow=overflow)
    for r in records:
        data.hosts[r.key] = r
    return data


@pytest.fixture(scope="module")
def april():
    return load_policy("azureml-2020-04")


@pytest.fixture(scope="module")
def analysis(april):
    data = learned(rec("pypi.org", count=3, received=5000), rec("files.pythonhosted.org", count=2, received=90000),
                   rec("ml.azure.com", sent=10, received=20), rec("example.org", 80, "http"),
                   rec("pypi.org", 22), rec("tricky.example", reasons={"sni_mismatch": 1}))
    return analyse(data, april)


def test_gaps_are_the_hosts_the_policy_would_deny(analysis):
    gaps = {(u.record.host, u.record.port): (u.decision.reason.value, u.feature) for u in analysis.gaps}
    assert gaps == {
        ("files.pythonhosted.org", 443): ("no_rule_matched", "pip-downloads"),
        ("example.org", 80): ("no_rule_matched", None),
        ("pypi.org", 22): ("port_not_allowed", "pip-index"),
        ("tricky.example", 443): ("no_rule_matched", None),
    }


def test_gaps_are_grouped_by_feature_with_other_hosts_last(analysis):
    groups = [(fid, [u.record.host for u in uses]) for fid, uses in analysis.grouped(analysis.gaps)]
    assert groups == [("pip-index", ["pypi.org"]), ("pip-downloads", ["files.pythonhosted.org"]),
                      (None, ["example.org", "tricky.example"])]
    assert analysis.feature_label(None) == "not an Azure ML host"
    assert analysis.feature_label("pip-downloads") == "pip package downloads (pip-downloads, Python)"


def test_unused_rules_are_those_no_traffic_matched(analysis, april):
    unused = {r.collection for r in analysis.unused_rules}
    assert "pip-index" not in unused and "studio" not in unused
    assert {"conda", "cran", "key-vault"} <= unused
    assert len(analysis.unused_rules) == april.rule_count - 2
    assert analysis.totals["rules"] == april.rule_count


def test_features_exercised_and_required_never_seen(analysis, april):
    features = {f.id: (f.hosts, f.requests, f.bytes, f.enabled) for f in analysis.features}
    assert features == {
        "pip-downloads": (1, 2, 90000, False), "pip-index": (2, 4, 5000, True), "studio": (1, 1, 30, True),
        None: (2, 2, 0, None),
    }
    assert [f.id for f in analysis.features][0] == "pip-downloads", "sorted by traffic"
    unseen = {f.id for f in analysis.required_unseen}
    assert "studio" not in unseen and "azureml-api" in unseen
    assert all(f.required for f in analysis.required_unseen)


def test_mismatched_traffic_is_listed_apart(analysis):
    assert [(u.record.host, u.mismatch_reasons) for u in analysis.mismatches] == [("tricky.example", ["sni_mismatch"])]


def test_source_rules_are_judged_per_recorded_client():
    policy = policy_from_text("""
version: 1
rule_collections:
  - name: lab
    priority: 100
    action: allow
    rules:
      - name: lab-only
        target_fqdns: [example.org]
        source_addresses: [10.1.0.0/16]
""")
    data = learned(rec("example.org", clients=["10.1.0.5"]), rec("example.org", 80, "http",
                                                                  clients=["10.1.0.5", "192.168.0.9"]))
    a = analyse(data, policy)
    assert [(u.record.port, u.decision.reason.value) for u in a.gaps] == [(80, "source_not_allowed")]
    assert a.unused_rules == []


def test_text_report_names_every_section(analysis):
    text = to_text(analysis)
    assert text.startswith("Learn report: 2 learn files: 6 hosts, 9 requests, 95.0 kB tunnelled")
    assert "Used but not allowed by the policy (denied under enforce): 4" in text
    assert "pip package downloads (pip-downloads, Python) - feature not enabled in this policy" in text
    assert "    files.pythonhosted.org:443 https  no_rule_matched  2 requests  90.0 kB" in text
    assert "not an Azure ML host\n    example.org:80 http" in text
    assert f"Rules nothing used (candidates to remove): {len(analysis.unused_rules)} of" in text
    assert "Required features of catalog azureml-2020-04 never seen:" in text
    assert "    ALLOW pypi.org:443 https  rule_matched  3 requests" in text


def test_markdown_report_has_a_table_per_group_and_escapes(april):
    data = learned(rec("a|b.example"), rec("files.pythonhosted.org"))
    text = to_markdown(analyse(data, april))
    assert "### pip package downloads (pip-downloads, Python)\n\n| host | protocol |" in text
    assert "| a\\|b.example:443 |" in text and "| a|b" not in text
    assert md("<script>*x*</script>") == "&lt;script&gt;\\*x\\*&lt;/script&gt;"


def test_json_report_is_complete(analysis):
    doc = json.loads(json.dumps(to_json(analysis)))
    assert doc["totals"] == {"hosts": 6, "requests": 9, "bytes": 95030, "gaps": 4,
                             "unused_rules": len(analysis.unused_rules), "rules": analysis.totals["rules"]}
    assert {g["host"] for g in doc["gaps"]} == {"files.pythonhosted.org", "example.org", "pypi.org", "tricky.example"}
    assert doc["policy"]["name"] == "azureml-2020-04" and doc["files"] == ["a.json", "b.json"]
    assert doc["overflow"] is None


def test_overflow_is_reported(april):
    a = analyse(learned(rec("pypi.org"), overflow=Overflow(42, 0, 0, T1, T2)), april)
    assert "Overflow: 42 decisions for hosts beyond the learn file's bound" in to_text(a)
    assert to_json(a)["overflow"]["count"] == 42


@pytest.mark.parametrize(("n", "text"), [(0, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (1536, "1.5 kB"),
                                         (2_500_000, "2.5 MB"), (7 * 10**12, "7.0 TB")],
                         ids=["zero", "bytes", "kilo", "kilo fraction", "mega", "tera"])
def test_human_bytes(n, text):
    assert human_bytes(n) == text
