"""Reading Azure Firewall JSON: shapes, what is skipped, and errors with JSON paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxy_addon.config import ConfigError
from proxy_addon.importers import json_path, load_firewall_json, read_firewall_json

DATA = Path(__file__).parent / "data"


def rcg(name="rcg", priority=300, collections=None, wrap=True):
    props = {"priority": priority, "ruleCollections": collections if collections is not None else [collection()]}
    body = {"name": name, "type": "Microsoft.Network/firewallPolicies/ruleCollectionGroups"}
    return {**body, "properties": props} if wrap else {**body, **props}


def collection(name="c1", priority=100, action="Allow", rules=None):
    return {"ruleCollectionType": "FirewallPolicyFilterRuleCollection", "name": name, "priority": priority,
            "action": {"type": action}, "rules": rules if rules is not None else [app_rule()]}


def app_rule(name="r1", fqdns=("pypi.org",), protocols=(("Https", 443),), sources=("*",), **extra):
    return {"ruleType": "ApplicationRule", "name": name, "targetFqdns": list(fqdns),
            "protocols": [{"protocolType": p, "port": n} for p, n in protocols], "sourceAddresses": list(sources),
            **extra}


def read(data) -> object:
    return read_firewall_json(json.dumps(data), "fw.json")


def problems(data) -> list[str]:
    with pytest.raises(ConfigError) as e:
        read(data)
    return [f"{json_path(p.path)}: {p.message}" for p in e.value.problems]


def test_template_with_firewall_policy_and_groups():
    imported = load_firewall_json(DATA / "firewall-policy-template.json")
    assert [(g.name, g.priority) for g in imported.groups] == [
        ("DefaultNetworkRuleCollectionGroup", 200), ("DefaultApplicationRuleCollectionGroup", 300)]
    app = imported.groups[1]
    assert [(c.name, c.priority, c.action) for c in app.collections] == [
        ("python-packages", 200, "allow"), ("block-test-index", 100, "deny"), ("azureml", 300, "allow")]
    pypi = app.collections[0].rules[0]
    assert pypi.target_fqdns == ["pypi.org", "*.pypi.org"]
    assert pypi.protocols == ["https:443", "http:80"]
    assert pypi.source_addresses == ["10.0.0.0/24", "10.0.1.4/30"]
    assert app.collections[1].rules[0].target_fqdns == ["test.pypi.org"]  # normalised from TEST.PyPI.org.
    assert app.collections[2].rules[1].protocols == ["https:443"]
    skipped = "\n".join(imported.skipped)
    assert "$.resources[1].properties.ruleCollections[0].rules[0]: NetworkRule 'files'" in skipped
    assert "NAT rule collection 'inbound'" in skipped
    assert "fqdnTags cannot be simulated" in skipped and "Mssql:1433" in skipped


def test_classic_firewall():
    imported = load_firewall_json(DATA / "classic-firewall.json")
    (group,) = imported.groups
    assert group.name == "contoso-fw"
    assert [(c.name, c.priority, c.action) for c in group.collections] == [
        ("apprulecoll", 110, "deny"), ("azureml", 100, "allow")]
    assert group.collections[0].rules[0].source_addresses == ["216.58.216.164/32", "10.0.0.0/24"]
    assert imported.skipped == ["$.properties.networkRuleCollections[0]: classic network rule collection "
                                "'netrulecoll': an HTTP proxy cannot simulate it"]


@pytest.mark.parametrize("shape", ["resource", "list", "az-cli-flattened", "bare-properties", "template-nested"])
def test_accepted_shapes(shape):
    if shape == "resource":
        data = rcg()
    elif shape == "list":
        data = [rcg("a", 200), rcg("b", 300)]
    elif shape == "az-cli-flattened":
        data = rcg(wrap=False)
    elif shape == "bare-properties":
        data = {"name": "rcg", "priority": 300, "ruleCollections": [collection()]}
    else:
        data = {"resources": [{"type": "Microsoft.Network/firewallPolicies", "name": "[parameters('p')]",
                               "resources": [{"type": "ruleCollectionGroups", "name": "rcg",
                                              "properties": rcg()["properties"]}]}]}
    imported = read(data)
    assert imported.groups[0].collections[0].rules[0].target_fqdns == ["pypi.org"]


@pytest.mark.parametrize(("name", "expected"), [
    ("policy/rcg-1", "rcg-1"),
    ("[concat(parameters('policy'), '/rcg-1')]", "rcg-1"),
    ("[format('{0}/{1}', parameters('policy'), 'rcg-1')]", "rcg-1"),
], ids=["slash", "concat", "format"])
def test_group_names_from_expressions(name, expected):
    assert read(rcg(name)).groups[0].name == expected


@pytest.mark.parametrize(("data", "expected"), [
    (rcg(priority=50), "$.properties.priority: priority 50 is outside 100..65000"),
    (rcg(priority="[parameters('p')]"), "$.properties.priority: \"[parameters('p')]\" is not an integer"),
    (rcg(collections=[collection(action="Block")]),
     "$.properties.ruleCollections[0].action: expected {\"type\": \"Allow\"} or {\"type\": \"Deny\"}"),
    (rcg(collections=[collection(name="bad name")]), "$.properties.ruleCollections[0].name: rule collection name "
                                                     "'bad name' is not valid"),
    (rcg(collections=[collection(rules=[app_rule(), app_rule()])]),
     "$.properties.ruleCollections[0].rules[1].name: duplicate rule name 'r1'"),
    (rcg(collections=[collection(rules=[app_rule(fqdns=["a.*.example"])])]),
     "$.properties.ruleCollections[0].rules[0].targetFqdns[0]: target FQDN 'a.*.example'"),
    (rcg(collections=[collection(rules=[app_rule(sources=["10.0.0.300"])])]),
     "$.properties.ruleCollections[0].rules[0].sourceAddresses[0]: '10.0.0.300' is not an IP address"),
    (rcg(collections=[collection(rules=[app_rule(protocols=[("Ftp", 21)])])]),
     "$.properties.ruleCollections[0].rules[0].protocols[0]: protocol Ftp:21 is not Http or Https"),
    (rcg(collections=[collection(rules=[{**app_rule(), "protocols": "Https:443"}])]),
     "$.properties.ruleCollections[0].rules[0].protocols: an application rule needs a list"),
    (rcg(collections=[{**collection(), "ruleCollectionType": "Firewall"}]),
     "$.properties.ruleCollections[0].ruleCollectionType: unknown rule collection type 'Firewall'"),
    ({"type": "Microsoft.Network/virtualNetworks", "name": "vnet"}, "$: no rule collection groups"),
    ({"hello": 1}, "$: not an Azure Firewall resource"),
    ([rcg("same"), rcg("same")], "$[1].name: duplicate rule collection group name 'same'"),
    ("just text", "$: expected a JSON object or list, got str"),
], ids=["priority-range", "priority-expression", "action", "collection-name", "duplicate-rule", "fqdn",
        "source", "protocol", "protocols-type", "collection-type", "no-groups", "not-firewall", "duplicate-group",
        "scalar"])
def test_errors_name_the_json_path(data, expected):
    found = problems(data)
    assert any(p.startswith(expected) for p in found), found


def test_invalid_json_and_missing_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"resources": [}')
    with pytest.raises(ConfigError) as e:
        load_firewall_json(bad)
    (problem,) = e.value.problems
    assert problem.line == 1 and problem.message.startswith("not valid JSON: ")
    with pytest.raises(ConfigError, match="file not found"):
        load_firewall_json(tmp_path / "missing.json")


def test_source_ip_groups_skip_the_rule():
    imported = read(rcg(collections=[collection(rules=[app_rule(sourceIpGroups=["/subscriptions/x/ipGroups/g"]),
                                                       app_rule("r2")])]))
    assert [r.name for r in imported.groups[0].collections[0].rules] == ["r2"]
    assert "sourceIpGroups cannot be resolved offline" in imported.skipped[0]
