"""The export, import and diff commands, run in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from proxy_addon.cli import main

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("fmt", ["arm", "bicep", "terraform", "az-cli", "aml-managed-network", "squid", "text"])
def test_export_every_format_of_the_default_policy(fmt, tmp_path, capsys):
    out = tmp_path / f"rules.{fmt}"
    assert main(["export", "--format", fmt, "-o", str(out)]) == 0
    text = out.read_text()
    assert "azureml-default" in text and "login.microsoftonline.com" in text
    assert f"wrote {out}" in capsys.readouterr().err


def test_export_to_stdout_and_collect_by_group(capsys):
    assert main(["export", "-f", "arm", "--collect-by", "group"]) == 0
    template = json.loads(capsys.readouterr().out)
    names = [c["name"] for c in template["resources"][0]["properties"]["ruleCollections"]]
    assert names[:3] == ["Authentication", "Azure-service", "Azure-ML-service"]


def test_export_classic(capsys):
    assert main(["export", "-f", "az-cli", "--classic"]) == 0
    assert "az network firewall application-rule create" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["export", "-f", "arm", "--classic"], "--classic applies to --format az-cli only"),
    (["export", "-f", "arm", "--config", "missing.yaml"], "missing.yaml: (top level): file not found"),
    (["import", str(DATA / "rich-policy.yaml")], "not valid JSON"),
    (["import", "missing.json"], "missing.json: $: file not found"),
    (["import", str(DATA / "classic-firewall.json"), "--catalog", "nope"], "unknown catalog 'nope'"),
    (["import", str(DATA / "classic-firewall.json"), "--features", "pip"], "unknown feature 'pip'"),
    (["diff", "default", "catalog:nope"], "unknown catalog 'nope'"),
], ids=["classic-arm", "missing-policy", "yaml-not-json", "missing-json", "bad-catalog", "bad-feature", "bad-side"])
def test_errors_exit_2_with_one_line_per_problem(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_bad_firewall_file_lists_every_problem(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "p/g", "type": "Microsoft.Network/firewallPolicies/ruleCollectionGroups",
                               "properties": {"priority": 10, "ruleCollections": [
                                   {"ruleCollectionType": "FirewallPolicyFilterRuleCollection", "name": "c",
                                    "priority": 100, "action": {"type": "Allow"}, "rules": [
                                        {"ruleType": "ApplicationRule", "name": "r", "targetFqdns": ["a.*.b"],
                                         "protocols": [{"protocolType": "Https", "port": 443}]}]}]}}))
    assert main(["import", str(bad)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"azml-egress import: cannot import {bad} (2 problems):"
    assert err[1] == f"  {bad}: $.properties.priority: priority 10 is outside 100..65000"
    assert err[2].startswith(f"  {bad}: $.properties.ruleCollections[0].rules[0].targetFqdns[0]: target FQDN 'a.*.b'")


def test_import_then_validate(tmp_path, capsys):
    out = tmp_path / "imported.yaml"
    assert main(["import", str(DATA / "firewall-policy-template.json"), "-o", str(out), "--name", "contoso"]) == 0
    err = capsys.readouterr().err
    assert "warning: $.resources[1].properties.ruleCollections[0].rules[0]: NetworkRule 'files'" in err
    assert yaml.safe_load(out.read_text())["name"] == "contoso"
    assert main(["validate", "--config", str(out)]) == 0
    assert main(["check", "test.pypi.org", "--config", str(out)]) == 1
    assert "Rule Collection: block-test-index. Rule: no-test-pypi" in capsys.readouterr().out


def test_diff_exit_codes_and_json(capsys):
    assert main(["diff", "default", "default"]) == 0
    assert "no differences" in capsys.readouterr().out
    assert main(["diff", "azureml-2020-04", "catalog:azureml", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["same"] is False and data["a"] == "azureml-2020-04"
    assert "files.pythonhosted.org" in {s["pattern"] for s in data["only_in_b"]}
