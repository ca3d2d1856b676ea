"""Plain-text export: one target FQDN pattern per line.

The allowed patterns of the policy in evaluation order, each once. Ports,
sources and deny rules have no place in this format; they are listed in the
``#`` comment header so nothing is lost silently.
"""

from __future__ import annotations

from .model import AppRule, ExportModel


def render(model: ExportModel) -> str:
    """The text: comment lines, then one pattern per line."""
    patterns: dict[str, None] = {}
    notes: list[str] = []
    for group, collection in model.collections():
        for rule in collection.rules:
            where = f"{group.name}/{collection.name}/{rule.name}"
            if not isinstance(rule, AppRule):
                notes.append(f"{where}: {rule.summary()}")
                continue
            ports = " ".join(f"{p}:{n}" for p, n in rule.protocols)
            if collection.action == "Deny":
                notes.append(f"{where}: DENY {' '.join(rule.target_fqdns)} ({ports}) - evaluated before "
                             "later allow rules; a plain list cannot say so")
                continue
            if rule.source_addresses:
                notes.append(f"{where}: only from {' '.join(rule.source_addresses)}")
            if ports not in ("http:80 https:443", "https:443"):
                notes.append(f"{where}: ports {ports}")
            for fqdn in rule.target_fqdns:
                patterns.setdefault(fqdn, None)
    notes += [str(u) for u in model.unexpressed]
    out = [f"# {line}" for line in model.header("text")]
    out.append("# One Azure Firewall target FQDN pattern per line ('*.x' = names below x, not x itself).")
    if notes:
        out += ["# Not expressed by this list:"] + [f"#   {n}" for n in notes]
    return "\n".join(out + list(patterns)) + "\n"
