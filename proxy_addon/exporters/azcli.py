"""Azure CLI export: a bash script of ``az network firewall ...`` commands.

Firewall Policy (default): ``az network firewall policy rule-collection-group
create`` per group, ``... collection add-filter-collection`` for the first rule
of each collection and ``... collection rule add`` for the others (argument
names from the azure-firewall CLI extension, Azure/azure-cli-extensions
src/azure-firewall/azext_firewall/_params.py).

Classic rules (``classic=True``): ``az network firewall application-rule
create`` / ``network-rule create`` (MicrosoftDocs/azure-docs
articles/firewall/deploy-cli.md @b0d95be). A classic firewall has no rule
collection groups, so collections keep the policy's evaluation order with
priorities renumbered 100, 110, ... per rule type.
"""

from __future__ import annotations

import shlex

from .model import AppRule, Collection, ExportModel, Group, NetRule

POLICY_BASE = "az network firewall policy rule-collection-group"
SCOPE = '--resource-group "$RESOURCE_GROUP"'


def _q(text: str) -> str:
    return shlex.quote(text)


def _list(items: list[str] | tuple[str, ...]) -> str:
    return " ".join(_q(i) for i in items)


def rule_args(rule: AppRule | NetRule) -> list[str]:
    """The rule-specific arguments shared by the policy commands and classic commands."""
    args = []
    if rule.description:
        args += ["--description", _q(rule.description)]
    args += ["--source-addresses", _list(list(rule.source_addresses) or ["*"])]
    if isinstance(rule, AppRule):
        args += ["--protocols", _list([f"{p.capitalize()}={n}" for p, n in rule.protocols])]
        if rule.target_fqdns:
            args += ["--target-fqdns", _list(rule.target_fqdns)]
        if rule.destination_addresses:
            args += ["--destination-addresses", _list(rule.destination_addresses)]
    else:
        args += ["--destination-fqdns", _list(rule.destination_fqdns),
                 "--destination-ports", _list(rule.destination_ports)]
    return args


def _policy_commands(group: Group, collection: Collection) -> list[str]:
    rule_type = "ApplicationRule" if collection.kind == "application" else "NetworkRule"
    lines = []
    for i, rule in enumerate(collection.rules):
        proto = ["--ip-protocols", _list(rule.ip_protocols)] if isinstance(rule, NetRule) else []
        common = [SCOPE, '--policy-name "$FIREWALL_POLICY"', "--rule-collection-group-name", _q(group.name)]
        if i == 0:
            args = [f"{POLICY_BASE} collection add-filter-collection", *common, "--name", _q(collection.name),
                    "--collection-priority", str(collection.priority), "--action", collection.action,
                    "--rule-name", _q(rule.name), "--rule-type", rule_type, *proto, *rule_args(rule)]
        else:
            args = [f"{POLICY_BASE} collection rule add", *common, "--collection-name", _q(collection.name),
                    "--name", _q(rule.name), "--rule-type", rule_type, *proto, *rule_args(rule)]
        lines.append(" ".join(args))
    return lines


def _classic_commands(collection: Collection, priority: int) -> list[str]:
    kind = "application-rule" if collection.kind == "application" else "network-rule"
    lines = []
    for i, rule in enumerate(collection.rules):
        args = [f"az network firewall {kind} create", SCOPE, '--firewall-name "$FIREWALL_NAME"',
                "--collection-name", _q(collection.name), "--name", _q(rule.name)]
        if isinstance(rule, NetRule):
            args += ["--protocols", _list(rule.ip_protocols)]
        args += rule_args(rule)
        if i == 0:
            args += ["--priority", str(priority), "--action", collection.action]
        lines.append(" ".join(args))
    return lines


def render(model: ExportModel, classic: bool = False) -> str:
    """The script text (``classic`` for a firewall with classic rules)."""
    out = ["#!/usr/bin/env bash"]
    out += [f"# {line}" for line in model.header("az-cli" + (" --classic" if classic else ""))
            + model.unexpressed_lines()]
    out += ["set -euo pipefail", ': "${RESOURCE_GROUP:?set RESOURCE_GROUP to the resource group of the firewall}"']
    if classic:
        out.append(': "${FIREWALL_NAME:?set FIREWALL_NAME to the name of the Azure Firewall (classic rules)}"')
        next_priority = {"application": 100, "network": 100}
        for group, collection in model.collections():
            out += ["", f"# rule collection group {group.name} (priority {group.priority}), "
                        f"collection {collection.name} (priority {collection.priority})"]
            out += _classic_commands(collection, next_priority[collection.kind])
            next_priority[collection.kind] += 10
        return "\n".join(out) + "\n"
    out.append(': "${FIREWALL_POLICY:?set FIREWALL_POLICY to the name of the Azure Firewall Policy}"')
    for group in model.groups:
        out += ["", f"# rule collection group {group.name}",
                f"{POLICY_BASE} create {SCOPE} --policy-name \"$FIREWALL_POLICY\" --name {_q(group.name)} "
                f"--priority {group.priority}"]
        for collection in group.collections:
            out += _policy_commands(group, collection)
    return "\n".join(out) + "\n"
