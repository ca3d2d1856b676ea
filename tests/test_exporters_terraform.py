"""Terraform export, parsed with python-hcl2 and compared with the policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxy_addon.exporters import export, terraform
from proxy_addon.exporters.model import build_model
from proxy_addon.policy_loader import load_policy

hcl2 = pytest.importorskip("hcl2", reason="python-hcl2 is not installed")

RICH = Path(__file__).parent / "data" / "rich-policy.yaml"


def plain(value):
    """python-hcl2 keeps string quotes and marks blocks; strip both."""
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items() if k != "__is_block__"}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return json.loads(value).replace("$${", "${").replace("%%{", "%{")
    return value


@pytest.fixture(scope="module")
def parsed():
    policy = load_policy(str(RICH))
    return plain(hcl2.loads(export(policy, "terraform"))), build_model(policy)


def test_one_resource_per_rule_collection_group(parsed):
    data, model = parsed
    assert data["variable"][0]["firewall_policy_id"]["type"] == "string"
    resources = [next(iter(r["azurerm_firewall_policy_rule_collection_group"].values())) for r in data["resource"]]
    assert [(r["name"], r["priority"]) for r in resources] == [(g.name, g.priority) for g in model.groups]
    assert all(r["firewall_policy_id"] == "${var.firewall_policy_id}" for r in resources)
    assert resources[1]["depends_on"] == ["${azurerm_firewall_policy_rule_collection_group.platform}"]


def test_collections_and_rules_match_the_model(parsed):
    data, model = parsed
    resources = [next(iter(r["azurerm_firewall_policy_rule_collection_group"].values())) for r in data["resource"]]
    for resource, group in zip(resources, model.groups, strict=True):
        app = resource.get("application_rule_collection", [])
        net = resource.get("network_rule_collection", [])
        assert [(c["name"], c["priority"], c["action"]) for c in app] == [
            (c.name, c.priority, c.action) for c in group.collections if c.kind == "application"]
        assert [c["name"] for c in net] == [c.name for c in group.collections if c.kind == "network"]
        for block, collection in zip(app, [c for c in group.collections if c.kind == "application"], strict=True):
            for rule_block, rule in zip(block["rule"], collection.rules, strict=True):
                assert rule_block["name"] == rule.name
                assert rule_block["destination_fqdns"] == list(rule.target_fqdns)
                assert rule_block["source_addresses"] == (list(rule.source_addresses) or ["*"])
                assert [(p["type"], p["port"]) for p in rule_block["protocols"]] == [
                    (p.capitalize(), n) for p, n in rule.protocols]
        for block, collection in zip(net, [c for c in group.collections if c.kind == "network"], strict=True):
            for rule_block, rule in zip(block["rule"], collection.rules, strict=True):
                assert rule_block["protocols"] == list(rule.ip_protocols)
                assert rule_block["destination_ports"] == list(rule.destination_ports)
                assert rule_block["destination_fqdns"] == list(rule.destination_fqdns)


def test_unexpressed_entries_are_comments(parsed):
    text = export(load_policy(str(RICH)), "terraform")
    assert "# NOT EXPRESSED by these rules" in text
    assert "#   azureml-features/compute-instance/wildcard.tundra.westeurope.api.azureml.ms:" in text


@pytest.mark.parametrize(("text", "literal"), [
    ('say "hi"', '"say \\"hi\\""'),
    ("${var.x}", '"$${var.x}"'),
    ("%{if}", '"%%{if}"'),
    ("a\\b", '"a\\\\b"'),
], ids=["quotes", "interpolation", "directive", "backslash"])
def test_string_escapes(text, literal):
    assert terraform.string(text) == literal
    assert plain(hcl2.loads(f"x = {literal}\n"))["x"] == text
