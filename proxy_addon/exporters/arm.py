"""ARM template export: ``Microsoft.Network/firewallPolicies/ruleCollectionGroups``.

Shape (Azure/azure-rest-api-specs, Microsoft.Network stable 2024-05-01,
example FirewallPolicyRuleCollectionGroupWithHttpHeadersToInsert.json @db023b4):
``properties.priority`` and ``properties.ruleCollections[]`` of
``FirewallPolicyFilterRuleCollection`` (``name``, ``priority``,
``action.type``, ``rules[]``); ``ApplicationRule`` rules carry
``protocols[{protocolType, port}]``, ``sourceAddresses``, ``targetFqdns``;
``NetworkRule`` rules ``ipProtocols``, ``destinationFqdns``, ``destinationPorts``.

The template adds rule collection groups to an existing firewall policy
(parameter ``firewallPolicyName``); groups are deployed one after the other
(``dependsOn``), since a firewall policy accepts one group update at a time.
Entries the rules cannot express are listed in the template's ``metadata``.
"""

from __future__ import annotations

import json
from typing import Any

from .model import AppRule, Collection, ExportModel, Group, NetRule

API_VERSION = "2024-05-01"
RCG_TYPE = "Microsoft.Network/firewallPolicies/ruleCollectionGroups"
POLICY_PARAMETER = "firewallPolicyName"
SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"


def _sources(addresses: tuple[str, ...]) -> list[str]:
    return list(addresses) or ["*"]


def rule_json(rule: AppRule | NetRule) -> dict[str, Any]:
    """One rule in REST/ARM field names."""
    if isinstance(rule, AppRule):
        data: dict[str, Any] = {
            "ruleType": "ApplicationRule", "name": rule.name, "description": rule.description,
            "protocols": [{"protocolType": p.capitalize(), "port": n} for p, n in rule.protocols],
            "sourceAddresses": _sources(rule.source_addresses),
            "targetFqdns": list(rule.target_fqdns),
        }
        if rule.destination_addresses:
            data["destinationAddresses"] = list(rule.destination_addresses)
        return data
    return {
        "ruleType": "NetworkRule", "name": rule.name, "description": rule.description,
        "ipProtocols": list(rule.ip_protocols), "sourceAddresses": _sources(rule.source_addresses),
        "destinationFqdns": list(rule.destination_fqdns), "destinationPorts": list(rule.destination_ports),
    }


def collection_json(collection: Collection) -> dict[str, Any]:
    return {
        "ruleCollectionType": "FirewallPolicyFilterRuleCollection",
        "name": collection.name,
        "priority": collection.priority,
        "action": {"type": collection.action},
        "rules": [rule_json(r) for r in collection.rules],
    }


def group_properties(group: Group) -> dict[str, Any]:
    """``properties`` of one ``ruleCollectionGroups`` resource."""
    return {"priority": group.priority, "ruleCollections": [collection_json(c) for c in group.collections]}


def _resource_id(group: Group) -> str:
    return f"[resourceId('{RCG_TYPE}', parameters('{POLICY_PARAMETER}'), '{group.name}')]"


def template(model: ExportModel) -> dict[str, Any]:
    """The ARM deployment template as data."""
    resources = []
    previous: Group | None = None
    for group in model.groups:
        resource: dict[str, Any] = {
            "type": RCG_TYPE,
            "apiVersion": API_VERSION,
            "name": f"[format('{{0}}/{{1}}', parameters('{POLICY_PARAMETER}'), '{group.name}')]",
        }
        if previous is not None:
            resource["dependsOn"] = [_resource_id(previous)]
        resource["properties"] = group_properties(group)
        resources.append(resource)
        previous = group
    return {
        "$schema": SCHEMA,
        "contentVersion": "1.0.0.0",
        "metadata": {
            "generator": " ".join(model.header("arm")),
            "notExpressed": [str(u) for u in model.unexpressed],
        },
        "parameters": {
            POLICY_PARAMETER: {
                "type": "string",
                "metadata": {"description": "Name of the existing Azure Firewall Policy that gets these rule collection groups"},
            },
        },
        "resources": resources,
    }


def render(model: ExportModel) -> str:
    """The template as indented JSON text."""
    return json.dumps(template(model), indent=2) + "\n"
