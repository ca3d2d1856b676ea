"""Sovereign clouds: the policy key ``cloud`` picks the catalog, and export and
simulation use that cloud's hosts (reference azure-ml-hosts.md §3, A9)."""

from __future__ import annotations

import json

import pytest
import yaml

from proxy_addon.exporters import export
from proxy_addon.policy_loader import load_policy, policy_from_text

CLOUDS = {
    "AzureCloud": ("default", "azureml", ["login.microsoftonline.com", "management.azure.com", "ml.azure.com",
                                          "*.azureml.ms"]),
    "AzureUSGovernment": ("usgov", "azureml-usgov", ["login.microsoftonline.us", "management.azure.us",
                                                     "management.usgovcloudapi.net", "ml.azure.us", "*.ml.azure.us",
                                                     "*.modelmanagement.azureml.us", "*.blob.core.usgovcloudapi.net"]),
    "AzureChinaCloud": ("china", "azureml-china", ["login.chinacloudapi.cn", "management.azure.cn",
                                                   "management.chinacloudapi.cn", "studio.ml.azure.cn", "*.ml.azure.cn",
                                                   "*.azureml.cn", "*.blob.core.chinacloudapi.cn"]),
}
PUBLIC_ONLY = ["login.microsoftonline.com", "management.azure.com", "ml.azure.com", "mcr.microsoft.com"]


def probe(pattern: str) -> str:
    return "ws1." + pattern[2:] if pattern.startswith("*.") else pattern


@pytest.mark.parametrize("cloud", list(CLOUDS))
def test_built_in_policy_uses_the_cloud_catalog(cloud):
    name, catalog, hosts = CLOUDS[cloud]
    policy = load_policy(name)
    assert policy.catalog.id == catalog and policy.catalog.cloud == cloud
    for host in hosts:
        decision = policy.decide(probe(host), 443)
        assert decision.allowed, (cloud, host, decision.reason)
        assert decision.catalog == catalog


@pytest.mark.parametrize("cloud", ["AzureUSGovernment", "AzureChinaCloud"])
def test_public_cloud_hosts_are_denied_but_attributed(cloud):
    policy = load_policy(CLOUDS[cloud][0])
    for host in PUBLIC_ONLY:
        decision = policy.decide(host, 443)
        assert not decision.allowed and decision.reason.value == "no_rule_matched", host
        assert decision.catalog == "azureml"


@pytest.mark.parametrize("cloud", list(CLOUDS))
@pytest.mark.parametrize("fmt", ["text", "arm", "aml-managed-network"])
def test_export_carries_the_cloud_hosts(cloud, fmt):
    name, catalog, hosts = CLOUDS[cloud]
    text = export(load_policy(name), fmt)
    if fmt == "text":
        found = {line for line in text.splitlines() if not line.startswith("#")}
    elif fmt == "arm":
        found = {f for r in json.loads(text)["resources"] for c in r["properties"]["ruleCollections"]
                 for rule in c["rules"] for f in rule.get("targetFqdns", [])}
    else:
        found = {r["destination"] for r in yaml.safe_load(text)["managed_network"]["outbound_rules"]}
    assert set(hosts) <= found
    assert f"Catalog {catalog}" in text and f"cloud {cloud}" in text
    if cloud != "AzureCloud":
        assert not set(PUBLIC_ONLY) & found


def test_workspace_parameters_in_a_sovereign_cloud():
    policy = policy_from_text("version: 1\ncloud: AzureUSGovernment\nworkspace: {storage_account: govml, region: usgovvirginia}\n"
                              "features: [required]\n")
    rules = [rule for r in json.loads(export(policy, "arm"))["resources"] for c in r["properties"]["ruleCollections"]
             for rule in c["rules"]]
    assert any(r.get("targetFqdns") == ["govml.blob.core.usgovcloudapi.net"] for r in rules)
    network = {(tuple(r["destinationFqdns"]), tuple(r["ipProtocols"]), tuple(r["destinationPorts"]))
               for r in rules if r["ruleType"] == "NetworkRule"}
    assert network == {(("govml.file.core.usgovcloudapi.net",), ("TCP",), ("445",)),
                       (("usgovvirginia.tundra.azureml.us",), ("UDP",), ("5831",))}
    assert policy.decide("govml.file.core.usgovcloudapi.net", 443).allowed
