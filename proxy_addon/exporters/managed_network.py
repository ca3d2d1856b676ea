"""Azure ML managed virtual network export: FQDN outbound rules.

Shape (MicrosoftDocs/azure-ai-docs articles/machine-learning/how-to-managed-network.md,
ms.date 2025-05-23): a workspace YAML for ``az ml workspace create|update
--file`` with ``managed_network.isolation_mode: allow_only_approved_outbound``
and ``outbound_rules: [{name, type: fqdn, destination, category}]``.

FQDN outbound rules allow HTTP/HTTPS on ports 80 and 443 only and have no
action, source or order, so deny rules, source restrictions, other ports and
network rules are listed as comments instead.
"""

from __future__ import annotations

import re

import yaml

from .model import AppRule, ExportModel

MANAGED_PORTS = {("http", 80), ("https", 443)}


def rule_name(fqdn: str) -> str:
    """``*.azureml.ms`` -> ``wildcard-azureml-ms`` (lower case, digits and ``-``)."""
    name = fqdn.replace("*.", "wildcard.").replace("*", "wildcard-")
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:80].rstrip("-")


def render(model: ExportModel) -> str:
    """The workspace YAML text."""
    rules: dict[str, dict[str, str]] = {}
    notes: list[str] = []
    for group, collection in model.collections():
        for rule in collection.rules:
            where = f"{group.name}/{collection.name}/{rule.name}"
            if not isinstance(rule, AppRule):
                notes.append(f"{where}: {rule.summary()}")
                continue
            if collection.action == "Deny":
                notes.append(f"{where}: DENY {' '.join(rule.target_fqdns)}: outbound rules cannot deny")
                continue
            if rule.source_addresses:
                notes.append(f"{where}: the source restriction {' '.join(rule.source_addresses)} is not kept")
            other = [f"{p}:{n}" for p, n in rule.protocols if (p, n) not in MANAGED_PORTS]
            if other:
                notes.append(f"{where}: ports {' '.join(other)} of {' '.join(rule.target_fqdns)}: "
                             "FQDN outbound rules carry 80/443 only")
            if len(other) == len(rule.protocols):
                continue
            for fqdn in rule.target_fqdns:
                if fqdn not in rules:
                    used = {r["name"] for r in rules.values()}
                    name, n = rule_name(fqdn), 2
                    while name in used:
                        name, n = f"{rule_name(fqdn)[:76]}-{n}", n + 1
                    rules[fqdn] = {"name": name, "type": "fqdn", "destination": fqdn, "category": "user_defined"}
    notes += [str(u) for u in model.unexpressed]
    header = [f"# {line}" for line in model.header("aml-managed-network")]
    header.append("# Use with: az ml workspace update --file THIS_FILE (managed virtual network, FQDN outbound rules).")
    if notes:
        header += ["# NOT EXPRESSED by these outbound rules:"] + [f"#   {n}" for n in notes]
    body = {"managed_network": {"isolation_mode": "allow_only_approved_outbound",
                                "outbound_rules": list(rules.values())}}
    return "\n".join(header) + "\n" + yaml.safe_dump(body, sort_keys=False, width=1000)
