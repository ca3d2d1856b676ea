"""Azure ML managed virtual network export."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from proxy_addon.exporters import export, managed_network
from proxy_addon.policy_loader import load_policy

RICH = Path(__file__).parent / "data" / "rich-policy.yaml"


def test_fqdn_outbound_rules_for_allowed_hosts():
    text = export(load_policy("default"), "aml-managed-network")
    data = yaml.safe_load(text)["managed_network"]
    assert data["isolation_mode"] == "allow_only_approved_outbound"
    rules = data["outbound_rules"]
    assert all(set(r) == {"name", "type", "destination", "category"} for r in rules)
    assert all(r["type"] == "fqdn" and r["category"] == "user_defined" for r in rules)
    destinations = [r["destination"] for r in rules]
    assert destinations[:3] == ["login.microsoftonline.com", "management.azure.com", "ml.azure.com"]
    assert "*.azureml.ms" in destinations and "files.pythonhosted.org" in destinations
    assert len(destinations) == len(set(destinations))
    names = [r["name"] for r in rules]
    assert len(names) == len(set(names))
    assert "wildcard-azureml-ms" in names


def test_what_outbound_rules_cannot_say_is_commented():
    text = export(load_policy(str(RICH)), "aml-managed-network")
    destinations = [r["destination"] for r in yaml.safe_load(text)["managed_network"]["outbound_rules"]]
    assert "test.pypi.org" not in destinations  # a deny rule
    assert "#   DefaultApplicationRuleCollectionGroup/block-lookalikes/no-test-pypi: DENY test.pypi.org" in text
    assert "the source restriction 10.0.0.0/8 is not kept" in text
    assert "ports https:8787 https:18881 of *.instances.azureml.ms" in text
    assert "network rule UDP 5831 to westeurope.tundra.azureml.ms" in text


@pytest.mark.parametrize(("fqdn", "name"), [
    ("pypi.org", "pypi-org"), ("*.azureml.ms", "wildcard-azureml-ms"), ("*pytorch.org", "wildcard-pytorch-org"),
], ids=["exact", "subdomains", "suffix"])
def test_rule_name(fqdn, name):
    assert managed_network.rule_name(fqdn) == name
