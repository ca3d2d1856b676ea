"""The format-neutral export model: names, collections, network rules, unexpressed entries."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy_addon.exporters import FORMATS, export
from proxy_addon.exporters.model import azure_name, build_model, is_azure_name, unique_name
from proxy_addon.policy_loader import load_policy

RICH = Path(__file__).parent / "data" / "rich-policy.yaml"


@pytest.mark.parametrize(("text", "expected"), [
    ("pypi.org", "pypi.org"),
    ("*.azureml.ms", "wildcard.azureml.ms"),
    ("*pytorch.org", "wildcard-pytorch.org"),
    ("Azure ML service", "Azure-ML-service"),
    ("-leading.dots-", "leading.dots"),
    ("a" * 100, "a" * 80),
    ("ünïcode", "n-code"),
    ("***", "wildcard-wildcard-wildcard"),
    ("", "rule"),
], ids=["fqdn", "subdomain-wildcard", "suffix-wildcard", "spaces", "edges", "too-long", "non-ascii", "stars", "empty"])
def test_azure_name(text, expected):
    assert azure_name(text) == expected
    assert is_azure_name(azure_name(text))


def test_unique_name_keeps_80_characters():
    used = {"a" * 80}
    name = unique_name("a" * 80, used)
    assert name == "a" * 78 + "-2" and len(name) == 80 and name in used


def test_default_policy_one_collection_per_feature_in_priority_order():
    policy = load_policy("default")
    model = build_model(policy)
    (group,) = model.groups
    assert group.name == "azureml-features" and group.priority == 1000
    names = [c.name for c in group.collections]
    assert names[:4] == ["entra-id", "azure-resource-manager", "studio", "azureml-api"]
    priorities = [c.priority for c in group.collections]
    assert priorities == sorted(priorities) and len(set(priorities)) == len(priorities)
    assert all(c.kind == "application" for c in group.collections)
    rule = group.collections[0].rules[0]
    assert rule.target_fqdns == ("login.microsoftonline.com",)
    assert rule.protocols == (("http", 80), ("https", 443))
    assert rule.description.startswith("Azure ML feature entra-id (Microsoft Entra ID sign-in); source A9: ")
    for _, collection in model.collections():
        for r in collection.rules:
            assert is_azure_name(r.name), r.name
    # wildcard network entries cannot be network rules: listed, not dropped
    unexpressed = {u.entry for u in model.unexpressed}
    assert unexpressed == {"*.file.core.windows.net tcp:445", "*.tundra.azureml.ms udp:5831",
                           "*.api.azureml.ms udp:5831"}


def test_workspace_parameters_give_network_rules_with_exact_names():
    model = build_model(load_policy(str(RICH)))
    network = {c.name: c for _, c in model.collections() if c.kind == "network"}
    assert set(network) == {"workspace-storage-network", "compute-instance-network"}
    smb = network["workspace-storage-network"].rules[0]
    assert (smb.destination_fqdns, smb.ip_protocols, smb.destination_ports) == (
        ("contosoml.file.core.windows.net",), ("TCP",), ("445",))
    udp = network["compute-instance-network"].rules[0]
    assert (udp.destination_fqdns, udp.ip_protocols, udp.destination_ports) == (
        ("westeurope.tundra.azureml.ms",), ("UDP",), ("5831",))
    # a network collection sits right after its application collection, with its own priority
    features = next(g for g in model.groups if g.name == "azureml-features")
    priorities = [c.priority for c in features.collections]
    assert len(set(priorities)) == len(priorities)
    entries = [u.entry for u in model.unexpressed]
    assert "*.tundra.westeurope.api.azureml.ms udp:5831" in entries
    assert any(e.startswith("github.com/microsoft/vscode-tools-for-ai/") for e in entries)


def test_groups_in_azure_order_with_deny_collections():
    model = build_model(load_policy(str(RICH)))
    assert [(g.name, g.priority) for g in model.groups] == [
        ("platform", 200), ("DefaultApplicationRuleCollectionGroup", 300), ("azureml-features", 1000)]
    platform = model.groups[0]
    assert [(c.name, c.action) for c in platform.collections] == [("platform-deny", "Deny"),
                                                                  ("platform-allow", "Allow")]
    mirror = model.groups[1].collections[1].rules[0]
    assert mirror.source_addresses == ("10.0.0.0/8",)
    assert mirror.protocols == (("http", 8080), ("https", 443), ("https", 8443))


def test_collect_by_group_merges_features_and_keeps_rule_names_unique():
    model = build_model(load_policy(str(RICH)), collect_by="group")
    features = next(g for g in model.groups if g.name == "azureml-features")
    names = [c.name for c in features.collections if c.kind == "application"]
    assert names[:3] == ["Authentication", "Azure-service", "Azure-ML-service"]
    storage = next(c for c in features.collections if c.name == "Storage")
    rule_names = [r.name for r in storage.rules]
    assert len(rule_names) == len(set(rule_names))
    assert "wildcard.blob.core.windows.net" in rule_names and "contosoml.blob.core.windows.net" in rule_names


def test_unknown_collect_by():
    with pytest.raises(ValueError, match="collect_by must be one of feature, group"):
        build_model(load_policy("default"), collect_by="cloud")


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_names_every_unexpressed_entry(fmt):
    text = export(load_policy("default"), fmt)
    for entry in ("*.file.core.windows.net tcp:445", "*.tundra.azureml.ms udp:5831"):
        assert entry in text, fmt
    assert "azureml-default" in text


def test_classic_only_for_az_cli():
    with pytest.raises(ValueError, match="--classic applies to --format az-cli only"):
        export(load_policy("default"), "arm", classic=True)
    with pytest.raises(ValueError, match="unknown format"):
        export(load_policy("default"), "yaml")
