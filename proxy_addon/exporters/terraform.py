"""Terraform export: ``azurerm_firewall_policy_rule_collection_group`` resources.

Block and argument names follow the azurerm provider documentation
(hashicorp/terraform-provider-azurerm website/docs/r/
firewall_policy_rule_collection_group.html.markdown @0a830d4):
``application_rule_collection { name, priority, action, rule { name,
description, protocols { type, port }, source_addresses, destination_fqdns } }``
and ``network_rule_collection { ... rule { protocols, source_addresses,
destination_fqdns, destination_ports } }``.
"""

from __future__ import annotations

import re

from .model import AppRule, Collection, ExportModel, NetRule

RESOURCE = "azurerm_firewall_policy_rule_collection_group"


def string(text: str) -> str:
    """An HCL string literal (escapes ``\\``, ``"``, newlines, ``${`` and ``%{``)."""
    escaped = (text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
               .replace("\t", "\\t").replace("${", "$${").replace("%{", "%%{"))
    return f'"{escaped}"'


def strings(items: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(string(i) for i in items) + "]"


def label(name: str, used: set[str]) -> str:
    """A unique Terraform resource label for a group named ``name``."""
    base = re.sub(r"[^A-Za-z0-9_-]", "_", name)
    if not re.match(r"^[A-Za-z_]", base):
        base = "rcg_" + base
    result, n = base, 2
    while result in used:
        result, n = f"{base}_{n}", n + 1
    used.add(result)
    return result


def _rule(rule: AppRule | NetRule) -> list[str]:
    lines = ["    rule {", f"      name = {string(rule.name)}"]
    if rule.description:
        lines.append(f"      description = {string(rule.description)}")
    lines.append(f"      source_addresses = {strings(list(rule.source_addresses) or ['*'])}")
    if isinstance(rule, AppRule):
        lines.append(f"      destination_fqdns = {strings(rule.target_fqdns)}")
        if rule.destination_addresses:
            lines.append(f"      destination_addresses = {strings(rule.destination_addresses)}")
        for proto, port in rule.protocols:
            lines += ["      protocols {", f"        type = {string(proto.capitalize())}", f"        port = {port}",
                      "      }"]
    else:
        lines.append(f"      protocols = {strings(rule.ip_protocols)}")
        lines.append(f"      destination_fqdns = {strings(rule.destination_fqdns)}")
        lines.append(f"      destination_ports = {strings(rule.destination_ports)}")
    lines.append("    }")
    return lines


def _collection(collection: Collection) -> list[str]:
    block = "application_rule_collection" if collection.kind == "application" else "network_rule_collection"
    lines = ["", f"  {block} {{", f"    name = {string(collection.name)}", f"    priority = {collection.priority}",
             f"    action = {string(collection.action)}"]
    for rule in collection.rules:
        lines += _rule(rule)
    lines.append("  }")
    return lines


def render(model: ExportModel) -> str:
    """The Terraform configuration text."""
    out = [f"# {line}" for line in model.header("terraform") + model.unexpressed_lines()]
    out += ["", 'variable "firewall_policy_id" {', "  type = string",
            '  description = "ID of the existing Azure Firewall Policy that gets these rule collection groups"', "}"]
    used: set[str] = set()
    previous = None
    for group in model.groups:
        name = label(group.name, used)
        out += ["", f'resource "{RESOURCE}" "{name}" {{', f"  name = {string(group.name)}",
                "  firewall_policy_id = var.firewall_policy_id", f"  priority = {group.priority}"]
        if previous:
            out.append(f"  depends_on = [{RESOURCE}.{previous}]")
        for collection in group.collections:
            out += _collection(collection)
        out.append("}")
        previous = name
    return "\n".join(out) + "\n"
