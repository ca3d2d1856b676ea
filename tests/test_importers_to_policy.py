"""Imported Azure Firewall rules as a policy: attribution, and the ARM round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from proxy_addon.catalog import find_catalog
from proxy_addon.config import ConfigError
from proxy_addon.exporters import export
from proxy_addon.importers import import_firewall, policy_yaml, read_firewall_json
from proxy_addon.importers.to_policy import FeatureFinder
from proxy_addon.policy_loader import load_policy, policy_from_text
from support.compare import disagreements, log_view
from support.corpus import corpus

DATA = Path(__file__).parent / "data"
RICH = DATA / "rich-policy.yaml"


def round_trip(policy, collect_by="feature"):
    text, warnings = policy_yaml(read_firewall_json(export(policy, "arm", collect_by=collect_by), "export.json"),
                                 "round-trip")
    return policy_from_text(text, "round-trip.yaml"), text, warnings


@pytest.mark.parametrize("policy_name", ["default", "azureml-2020-04", str(RICH), "usgov", "china"],
                         ids=["default", "2020-04", "rich", "usgov", "china"])
@pytest.mark.parametrize("client_ip", ["10.0.0.5", "192.168.1.1"], ids=["inside-10/8", "outside-10/8"])
def test_arm_round_trip_gives_identical_decisions(policy_name, client_ip):
    policy = load_policy(policy_name)
    imported, _, _ = round_trip(policy)
    probes = corpus([policy])
    assert len(probes) >= 200
    assert disagreements(policy, imported, probes, client_ip) == []
    # both outcomes occur, and allowed hosts keep their feature
    decisions = [policy.decide(h, p, pr, client_ip) for h, p, pr in probes]
    assert sum(d.allowed for d in decisions) > 20 and sum(not d.allowed for d in decisions) > 200
    for (host, port, protocol), d in zip(probes, decisions):
        if d.allowed:
            assert imported.decide(host, port, protocol, client_ip).feature == d.feature, host


def test_round_trip_by_group_keeps_every_action():
    policy = load_policy(str(RICH))
    imported, _, _ = round_trip(policy, collect_by="group")
    for host, port, protocol in corpus([policy]):
        assert policy.decide(host, port, protocol).action == imported.decide(host, port, protocol).action, host


def test_imported_policy_is_the_firewall_alone():
    _, text, warnings = round_trip(load_policy(str(RICH)))
    data = yaml.safe_load(text)
    assert data["features"] == [] and data["catalog"] == "azureml"
    assert [g["name"] for g in data["rule_collection_groups"]] == [
        "platform", "DefaultApplicationRuleCollectionGroup", "azureml-features"]
    # network rules of the export are named, not dropped
    assert any("NetworkRule 'westeurope.tundra.azureml.ms'" in w for w in warnings)
    assert "# NOT IMPORTED" in text


def test_deny_collection_of_higher_priority_wins():
    policy = policy_from_text(import_firewall(DATA / "firewall-policy-template.json")[0], "imported.yaml")
    denied = policy.decide("test.pypi.org", 443, "https", "10.0.0.9")
    assert (denied.action.value, denied.reason.value, denied.rule_collection, denied.rule) == (
        "deny", "deny_rule", "block-test-index", "no-test-pypi")
    assert denied.firewall_message("10.0.0.9:5000") == (
        "HTTPS request from 10.0.0.9:5000 to test.pypi.org:443. Action: Deny. Rule Collection: block-test-index. "
        "Rule: no-test-pypi")
    allowed = policy.decide("a.pypi.org", 443, "https", "10.0.1.5")
    assert (allowed.action.value, allowed.rule_collection, allowed.rule, allowed.rule_collection_group) == (
        "allow", "python-packages", "pypi", "DefaultApplicationRuleCollectionGroup")
    assert policy.decide("a.pypi.org", 443, "https", "10.0.1.9").reason.value == "source_not_allowed"
    assert policy.decide("pypi.org", 443, "https", "10.0.0.9").feature == "pip-index"
    assert policy.decide("ml.azure.com", 1433, "https").allowed is False  # Mssql was not imported


def test_cloud_and_features_options():
    text, _ = import_firewall(DATA / "classic-firewall.json", name="gov", cloud="AzureUSGovernment",
                              features=["entra-id"])
    data = yaml.safe_load(text)
    assert data["cloud"] == "AzureUSGovernment" and "catalog" not in data and data["features"] == ["entra-id"]
    policy = policy_from_text(text)
    assert policy.catalog.id == "azureml-usgov"
    assert policy.decide("login.microsoftonline.us", 443).allowed


@pytest.mark.parametrize(("pattern", "hints", "feature"), [
    ("pypi.org", [], "pip-index"),
    ("*.blob.core.windows.net", ["microsoft-storage"], "microsoft-storage"),
    ("*.blob.core.windows.net", ["workspace-storage"], "workspace-storage"),
    ("*.blob.core.windows.net", ["pip-index"], "microsoft-storage"),
    ("contosoml.blob.core.windows.net", [], "microsoft-storage"),
    ("login.microsoftonline.us", [], "entra-id"),
    ("example.org", [], None),
    ("*evil.example", [], None),
], ids=["exact", "hint", "other-hint", "hint-not-covering", "account", "usgov-host", "unknown", "suffix"])
def test_feature_attribution(pattern, hints, feature):
    assert FeatureFinder(find_catalog("azureml")).feature(pattern, hints) == feature


def test_duplicate_collection_names_across_groups_are_renamed():
    data = [{"name": f"g{i}", "type": "Microsoft.Network/firewallPolicies/ruleCollectionGroups",
             "properties": {"priority": 100 + i, "ruleCollections": [{
                 "ruleCollectionType": "FirewallPolicyFilterRuleCollection", "name": "same", "priority": 100,
                 "action": {"type": "Allow"}, "rules": [{"ruleType": "ApplicationRule", "name": "r",
                                                         "targetFqdns": [f"h{i}.example"], "sourceAddresses": ["*"],
                                                         "protocols": [{"protocolType": "Https", "port": 443}]}]}]}}
            for i in range(2)]
    text, warnings = policy_yaml(read_firewall_json(json.dumps(data), "fw.json"), "dup")
    policy = policy_from_text(text)
    assert log_view(policy, "h1.example", 443, "https")[1].endswith("Rule Collection: same-2. Rule: r")
    assert any("renamed 'same-2'" in w for w in warnings)


def test_the_features_group_name_is_free_when_no_feature_is_enabled():
    group = ("rule_collection_groups:\n  - name: azureml-features\n    priority: 1000\n    rule_collections:\n"
             "      - name: c\n        priority: 100\n        action: allow\n        rules:\n"
             "          - name: r\n            target_fqdns: [pypi.org]\n")
    policy = policy_from_text("version: 1\nfeatures: []\n" + group)
    assert [g.name for g in policy.groups] == ["azureml-features"]
    assert policy.decide("pypi.org", 443).rule_collection == "c"
    with pytest.raises(ConfigError, match="rule collection group name 'azureml-features' is already used"):
        policy_from_text("version: 1\nfeatures: [pip-index]\n" + group)


def test_destination_addresses_survive_the_round_trip():
    policy = policy_from_text("version: 1\nrule_collections:\n  - name: ips\n    priority: 100\n    action: allow\n"
                              "    rules:\n      - name: range\n        destination_addresses: [203.0.113.0/24]\n"
                              "        protocols: [https:443]\n", "ips.yaml")
    imported, text, _ = round_trip(policy)
    assert "203.0.113.0/24" in text
    for host in ("203.0.113.10", "203.0.114.10"):
        assert log_view(policy, host, 443, "https") == log_view(imported, host, 443, "https")
    assert imported.decide("203.0.113.10", 443).allowed
    assert "--destination-addresses 203.0.113.0/24" in export(policy, "az-cli")
    assert "acl azml_dst_range dst 203.0.113.0/24" in export(policy, "squid")
