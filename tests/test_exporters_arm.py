"""ARM export, checked with Azure's own models (azure-mgmt-network) and by round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxy_addon.exporters import export
from proxy_addon.exporters.model import build_model, is_azure_name
from proxy_addon.policy_loader import load_policy

models = pytest.importorskip("azure.mgmt.network.models", reason="azure-mgmt-network is not installed")

RICH = Path(__file__).parent / "data" / "rich-policy.yaml"


def rest_names(model_cls) -> set[str]:
    """The REST field names an Azure SDK model knows."""
    model_cls()  # the SDK builds its field table on first use
    return {f._rest_name for f in model_cls._attr_to_rest_field.values()}


def assert_known_keys(data: dict, model_cls, where: str) -> None:
    unknown = set(data) - rest_names(model_cls)
    assert not unknown, f"{where}: fields unknown to {model_cls.__name__}: {unknown}"


@pytest.fixture(scope="module")
def rich():
    return load_policy(str(RICH))


@pytest.mark.parametrize("policy_name", ["default", "azureml-2020-04", "rich", "usgov", "china"])
def test_every_field_is_an_azure_model_field(policy_name, rich):
    policy = rich if policy_name == "rich" else load_policy(policy_name)
    template = json.loads(export(policy, "arm"))
    assert template["parameters"]["firewallPolicyName"]["type"] == "string"
    for resource in template["resources"]:
        assert resource["type"] == "Microsoft.Network/firewallPolicies/ruleCollectionGroups"
        assert resource["apiVersion"] == "2024-05-01"
        props = resource["properties"]
        assert_known_keys(props, models.FirewallPolicyRuleCollectionGroupProperties, "group")
        group = models.FirewallPolicyRuleCollectionGroup({"properties": props})
        assert group.properties.priority == props["priority"]
        for coll_json, coll in zip(props["ruleCollections"], group.properties.rule_collections, strict=True):
            assert isinstance(coll, models.FirewallPolicyFilterRuleCollection)
            assert_known_keys(coll_json, models.FirewallPolicyFilterRuleCollection, coll.name)
            assert_known_keys(coll_json["action"], models.FirewallPolicyFilterRuleCollectionAction, coll.name)
            assert coll.action.type in {m.value for m in models.FirewallPolicyFilterRuleCollectionActionType}
            assert is_azure_name(coll.name) and 100 <= coll.priority <= 65000
            kinds = {type(r) for r in coll.rules}
            assert len(kinds) == 1, f"{coll.name}: a filter collection holds one rule type"
            for rule_json, rule in zip(coll_json["rules"], coll.rules, strict=True):
                assert is_azure_name(rule.name), rule.name
                if isinstance(rule, models.ApplicationRule):
                    assert_known_keys(rule_json, models.ApplicationRule, rule.name)
                    assert rule.target_fqdns and rule.source_addresses
                    for proto_json, proto in zip(rule_json["protocols"], rule.protocols, strict=True):
                        assert_known_keys(proto_json, models.FirewallPolicyRuleApplicationProtocol, rule.name)
                        assert proto.protocol_type in {m.value for m in models.FirewallPolicyRuleApplicationProtocolType}
                        assert 0 < proto.port <= 64000
                else:
                    assert isinstance(rule, models.NetworkRule)
                    assert_known_keys(rule_json, models.NetworkRule, rule.name)
                    assert {p for p in rule.ip_protocols} <= {m.value for m in models.FirewallPolicyRuleNetworkProtocol}
                    assert not any("*" in f for f in rule.destination_fqdns)
        # the SDK model writes back exactly what we wrote
        assert group.as_dict()["properties"] == props


def test_values_match_the_policy(rich):
    template = json.loads(export(rich, "arm"))
    by_name = {r["name"].split("'")[-2]: r for r in template["resources"]}
    assert list(by_name) == ["platform", "DefaultApplicationRuleCollectionGroup", "azureml-features"]
    group = models.FirewallPolicyRuleCollectionGroup({"properties": by_name["DefaultApplicationRuleCollectionGroup"]["properties"]})
    deny, internal = group.properties.rule_collections
    assert (deny.name, deny.priority, deny.action.type) == ("block-lookalikes", 100, "Deny")
    assert deny.rules[1].target_fqdns == ["*evil.example"]
    mirror = internal.rules[0]
    assert mirror.source_addresses == ["10.0.0.0/8"]
    assert [(p.protocol_type, p.port) for p in mirror.protocols] == [("Http", 8080), ("Https", 443), ("Https", 8443)]
    features = models.FirewallPolicyRuleCollectionGroup({"properties": by_name["azureml-features"]["properties"]})
    smb = next(c for c in features.properties.rule_collections if c.name == "workspace-storage-network").rules[0]
    assert (smb.destination_fqdns, smb.destination_ports) == (["contosoml.file.core.windows.net"], ["445"])
    # groups are deployed one after the other
    assert "dependsOn" not in by_name["platform"]
    assert by_name["azureml-features"]["dependsOn"] == [
        "[resourceId('Microsoft.Network/firewallPolicies/ruleCollectionGroups', "
        "parameters('firewallPolicyName'), 'DefaultApplicationRuleCollectionGroup')]"]
    assert any("udp:5831" in line for line in template["metadata"]["notExpressed"])


def test_collection_count_is_one_per_feature_plus_network():
    policy = load_policy("default")
    template = json.loads(export(policy, "arm"))
    (resource,) = template["resources"]
    names = [c["name"] for c in resource["properties"]["ruleCollections"]]
    assert names == [c.name for _, c in build_model(policy).collections()]
    assert len(names) == len(policy.enabled_features)


def test_the_field_check_catches_a_misspelled_field():
    with pytest.raises(AssertionError, match="targetFQDNs"):
        assert_known_keys({"targetFQDNs": ["x"]}, models.ApplicationRule, "rule")
