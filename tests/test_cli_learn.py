"""``azml-egress learn report`` and ``learn suggest``, run in-process."""

from __future__ import annotations

import json

import pytest
import yaml

from proxy_addon.cli import main
from proxy_addon.learnfile import HostRecord, LearnData, save
from proxy_addon.policy_loader import builtin_policy_path, load_policy

T = "2026-11-29T10:00:00.000Z"


def write_learn(path, hosts, policy_source=None, sha=None):
    data = LearnData(started=T, updated=T)
    for host, port, protocol, count in hosts:
        r = HostRecord(host, port, protocol, T, T, count=count, clients=["10.0.0.1"])
        data.hosts[r.key] = r
    if policy_source:
        data.policies.append({"name": "x", "source": str(policy_source), "sha256": sha or "", "catalog": "azureml",
                              "mode": "learn"})
    save(data, path)
    return path


@pytest.fixture
def two_replicas(tmp_path):
    april = builtin_policy_path("azureml-2020-04")
    sha = load_policy("azureml-2020-04").sha256
    a = write_learn(tmp_path / "a.json", [("pypi.org", 443, "https", 2), ("files.pythonhosted.org", 443, "https", 1)],
                    april, sha)
    b = write_learn(tmp_path / "b.yaml", [("pypi.org", 443, "https", 3), ("example.org", 443, "https", 1)], april, sha)
    return a, b


def test_report_merges_replicas_and_uses_the_recorded_policy(two_replicas, capsys):
    assert main(["learn", "report", *map(str, two_replicas), "--format", "json"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert "policy 'azureml-2020-04'" in err and "as recorded in the learn file" in err
    assert report["totals"]["hosts"] == 3 and report["totals"]["requests"] == 7
    assert {g["host"] for g in report["gaps"]} == {"files.pythonhosted.org", "example.org"}
    assert next(h for h in report["hosts"] if h["host"] == "pypi.org")["count"] == 5


def test_report_config_overrides_the_recorded_policy(two_replicas, capsys):
    assert main(["learn", "report", *map(str, two_replicas), "--config", "default", "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert "as recorded" not in err
    assert {g["host"] for g in json.loads(out)["gaps"]} == {"example.org"}


def test_a_changed_recorded_policy_is_noted(tmp_path, capsys):
    path = write_learn(tmp_path / "l.json", [("pypi.org", 443, "https", 1)], builtin_policy_path(), "0" * 64)
    assert main(["learn", "report", str(path)]) == 0
    assert "(the file changed since learning)" in capsys.readouterr().err


@pytest.mark.parametrize(("fmt", "start"), [("text", "Learn report: 2 learn files"), ("markdown", "# Learn report"),
                                            ("html", "<!DOCTYPE html>"), ("json", "{")],
                         ids=["text", "markdown", "html", "json"])
def test_report_formats_to_a_file(two_replicas, tmp_path, capsys, fmt, start):
    out_file = tmp_path / f"report.{fmt}"
    assert main(["learn", "report", *map(str, two_replicas), "-f", fmt, "-o", str(out_file)]) == 0
    assert out_file.read_text().startswith(start)
    assert f"wrote {out_file} (3 hosts, 2 not allowed," in capsys.readouterr().err


def test_suggest_writes_a_valid_policy(two_replicas, tmp_path, capsys):
    out_file = tmp_path / "team.yaml"
    assert main(["learn", "suggest", *map(str, two_replicas), "-o", str(out_file)]) == 0
    err = capsys.readouterr().err
    assert f"wrote {out_file}: 3 rules in 3 rule collections for 3 learned entries" in err
    doc = yaml.safe_load(out_file.read_text())
    assert doc["name"] == "team" and doc["catalog"] == "azureml-2020-04" and doc["mode"] == "enforce"
    assert [c["name"] for c in doc["rule_collections"]] == ["learned-pip-index", "learned-pip-downloads",
                                                            "learned-other-hosts"]
    assert main(["validate", "--config", str(out_file)]) == 0
    assert "valid: policy 'team'" in capsys.readouterr().out


def test_suggest_to_stdout_with_exact_names(tmp_path, capsys):
    path = write_learn(tmp_path / "l.json", [(f"{c}.cdn.example.com", 443, "https", 1) for c in "abc"]
                       + [("acct1.blob.core.windows.net", 443, "https", 1)])
    assert main(["learn", "suggest", str(path), "--exact", "--name", "exact-test"]) == 0
    doc = yaml.safe_load(capsys.readouterr().out)
    targets = sorted(t for c in doc["rule_collections"] for r in c["rules"] for t in r["target_fqdns"])
    assert targets == ["a.cdn.example.com", "acct1.blob.core.windows.net", "b.cdn.example.com", "c.cdn.example.com"]
    assert doc["name"] == "exact-test"


@pytest.mark.parametrize(("argv", "message"), [
    (["learn", "report", "{dir}/missing.json"], "missing.json: (top level): file not found"),
    (["learn", "report", "{dir}/bad.json"], "bad.json:1: (top level): not valid JSON"),
    (["learn", "suggest", "{dir}/bad.json", "{dir}/missing.json"], "invalid learn file (2 problems)"),
    (["learn", "report", "{dir}/ok.json", "--config", "{dir}/nope.yaml"], "invalid policy"),
], ids=["missing file", "bad json", "every bad file", "bad policy"])
def test_bad_input_exits_2_with_one_line_per_problem(tmp_path, capsys, argv, message):
    (tmp_path / "bad.json").write_text("{oops")
    write_learn(tmp_path / "ok.json", [])
    assert main([a.format(dir=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("value", ["1", "x"], ids=["too few", "not a number"])
def test_min_siblings_is_checked(tmp_path, capsys, value):
    assert main(["learn", "suggest", str(write_learn(tmp_path / "l.json", [])), "--min-siblings", value]) == 2
    assert "--min-siblings" in capsys.readouterr().err
