"""Bicep export: the same ``ruleCollectionGroups`` resources as :mod:`.arm`.

Bicep syntax (Azure/bicep docs): ``param``, an ``existing`` parent resource,
child resources with ``parent:`` and ``dependsOn``, single-quoted strings
(escapes ``\\\\``, ``\\'``, ``\\${``), object keys as identifiers or quoted.
"""

from __future__ import annotations

import re
from typing import Any

from .arm import API_VERSION, POLICY_PARAMETER, RCG_TYPE, group_properties
from .model import ExportModel

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def string(text: str) -> str:
    """A Bicep string literal."""
    escaped = (text.replace("\\", "\\\\").replace("'", "\\'").replace("${", "\\${")
               .replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t"))
    return f"'{escaped}'"


def value(data: Any, indent: int = 0) -> str:
    """Bicep text for JSON-like data (dict, list, str, int, bool)."""
    pad = "  " * indent
    if isinstance(data, bool):
        return "true" if data else "false"
    if isinstance(data, int):
        return str(data)
    if isinstance(data, str):
        return string(data)
    if isinstance(data, list):
        if not data:
            return "[]"
        items = "".join(f"{pad}  {value(item, indent + 1)}\n" for item in data)
        return f"[\n{items}{pad}]"
    if isinstance(data, dict):
        if not data:
            return "{}"
        lines = []
        for key, item in data.items():
            shown = key if _IDENT.match(key) else string(key)
            lines.append(f"{pad}  {shown}: {value(item, indent + 1)}\n")
        return "{\n" + "".join(lines) + pad + "}"
    raise TypeError(f"cannot write {type(data).__name__} as Bicep")


def identifier(name: str, used: set[str]) -> str:
    """A unique Bicep symbolic name for a resource named ``name``."""
    base = "rcg_" + re.sub(r"[^A-Za-z0-9_]", "_", name)
    ident, n = base, 2
    while ident in used:
        ident, n = f"{base}_{n}", n + 1
    used.add(ident)
    return ident


def render(model: ExportModel) -> str:
    """The Bicep file text."""
    out = [f"// {line}" for line in model.header("bicep") + model.unexpressed_lines()]
    out += [
        "",
        "@description('Name of the existing Azure Firewall Policy that gets these rule collection groups')",
        f"param {POLICY_PARAMETER} string",
        "",
        f"resource firewallPolicy 'Microsoft.Network/firewallPolicies@{API_VERSION}' existing = {{",
        f"  name: {POLICY_PARAMETER}",
        "}",
    ]
    used: set[str] = {"firewallPolicy"}
    previous = None
    for group in model.groups:
        ident = identifier(group.name, used)
        out += ["", f"resource {ident} '{RCG_TYPE}@{API_VERSION}' = {{", "  parent: firewallPolicy",
                f"  name: {string(group.name)}"]
        if previous:
            out += ["  dependsOn: [", f"    {previous}", "  ]"]
        out.append(f"  properties: {value(group_properties(group), 1)}")
        out.append("}")
        previous = ident
    return "\n".join(out) + "\n"
