"""Differences between two policies, or a policy and a catalog.

A side is a built-in policy name, a policy file, or ``catalog:ID`` (a built-in
catalog id or catalog file, taken with every feature enabled). Compared per
target FQDN pattern: the action of the first rule naming it (evaluation
order) and the union of its ports over the rules with that action. For a
pattern only on one side, the other side's decision for a host the pattern
matches tells whether another pattern still covers it (e.g. ``*.pythonhosted.org``
covering ``files.pythonhosted.org``).

Pure: no mitmproxy import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from .patterns import Kind, Pattern
from .policy import Policy
from .policy_loader import load_policy, policy_from_text

CATALOG_PREFIX = "catalog:"
PROBE_LABEL = "azml-egress-probe"


def load_side(spec: str) -> Policy:
    """A policy from ``spec``; raises :class:`~proxy_addon.config.ConfigError`."""
    if spec.startswith(CATALOG_PREFIX):
        catalog = spec[len(CATALOG_PREFIX):]
        text = yaml.safe_dump({"version": 1, "name": spec, "catalog": catalog, "features": ["all"]})
        return policy_from_text(text, spec)
    return load_policy(spec)


@dataclass(frozen=True)
class Entry:
    """One pattern of a policy: ``ports`` like ``https:443``/``udp:5831``."""

    pattern: str
    action: str
    ports: tuple[str, ...]
    features: tuple[str, ...]
    rules: tuple[str, ...]

    def describe(self) -> str:
        feats = f" [{', '.join(self.features)}]" if self.features else ""
        return f"{self.pattern} {self.action} {' '.join(self.ports) or '-'}{feats}"


def entries(policy: Policy) -> dict[str, Entry]:
    """Pattern text -> :class:`Entry`, in evaluation order."""
    found: dict[str, dict[str, Any]] = {}
    for placement in policy.placements():
        rule = placement.rule
        action = placement.collection.action.value
        ports = {f"{p}:{n}" for p, n in rule.protocols} | {f"{p}:{n}" for p, n in rule.network_protocols}
        for pattern in rule.target_fqdns:
            slot = found.setdefault(pattern.text, {"action": action, "ports": set(), "features": {}, "rules": {}})
            if slot["action"] != action:
                continue
            slot["ports"] |= ports
            if rule.feature:
                slot["features"][rule.feature] = None
            slot["rules"][f"{placement.group.name}/{placement.collection.name}/{rule.name}"] = None
    return {
        text: Entry(text, s["action"], tuple(sorted(s["ports"], key=_port_key)), tuple(s["features"]), tuple(s["rules"]))
        for text, s in found.items()
    }


def _port_key(text: str) -> tuple[int, str]:
    proto, _, port = text.partition(":")
    return int(port), proto


def probe_host(pattern: Pattern) -> str:
    """A host name the pattern matches."""
    return f"{PROBE_LABEL}.{pattern.base}" if pattern.kind is Kind.SUBDOMAINS else pattern.base


@dataclass
class PolicyDiff:
    a: str
    b: str
    features_only_in_a: list[str] = field(default_factory=list)
    features_only_in_b: list[str] = field(default_factory=list)
    only_in_a: list[dict[str, Any]] = field(default_factory=list)
    only_in_b: list[dict[str, Any]] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.features_only_in_a or self.features_only_in_b or self.only_in_a or self.only_in_b
                    or self.changed)

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a, "b": self.b, "same": self.empty,
            "features_only_in_a": self.features_only_in_a, "features_only_in_b": self.features_only_in_b,
            "only_in_a": self.only_in_a, "only_in_b": self.only_in_b, "changed": self.changed,
        }


def _coverage(entry: Entry, pattern: Pattern, other: Policy) -> dict[str, Any] | None:
    """How ``other`` decides a host ``pattern`` matches, on the entry's first application port."""
    app = [p for p in entry.ports if p.split(":")[0] in ("http", "https")]
    if not app:
        return None
    proto, _, port = ("https:443" if "https:443" in app else app[0]).partition(":")
    host = probe_host(pattern)
    decision = other.decide(host, int(port), proto)
    return {
        "host": host, "port": int(port), "protocol": proto, "action": decision.action.value,
        "reason": decision.reason.value, "rule": decision.rule, "rule_collection": decision.rule_collection,
    }


def _side(entry: Entry, pattern: Pattern, other: Policy) -> dict[str, Any]:
    return {"pattern": entry.pattern, "action": entry.action, "ports": list(entry.ports),
            "features": list(entry.features), "rules": list(entry.rules),
            "other_side": _coverage(entry, pattern, other)}


def diff_policies(a: Policy, b: Policy, a_label: str = "A", b_label: str = "B") -> PolicyDiff:
    """The differences between ``a`` and ``b``."""
    result = PolicyDiff(a_label, b_label)
    result.features_only_in_a = [f for f in sorted(a.enabled_features) if f not in b.enabled_features]
    result.features_only_in_b = [f for f in sorted(b.enabled_features) if f not in a.enabled_features]
    ea, eb = entries(a), entries(b)
    patterns = {p.text: p for pl in [*a.placements(), *b.placements()] for p in pl.rule.target_fqdns}
    for text, entry in ea.items():
        if text not in eb:
            result.only_in_a.append(_side(entry, patterns[text], b))
        elif (entry.action, entry.ports) != (eb[text].action, eb[text].ports):
            other = eb[text]
            result.changed.append({
                "pattern": text,
                "a": {"action": entry.action, "ports": list(entry.ports), "rules": list(entry.rules)},
                "b": {"action": other.action, "ports": list(other.ports), "rules": list(other.rules)},
            })
    for text, entry in eb.items():
        if text not in ea:
            result.only_in_b.append(_side(entry, patterns[text], a))
    return result


def _covered(side: dict[str, Any]) -> str:
    other = side["other_side"]
    if other is None:
        return "(not an HTTP entry)"
    if other["action"] == "allow":
        return f"still allowed there ({other['host']}:{other['port']} by rule {other['rule']} in {other['rule_collection']})"
    return f"denied there ({other['host']}:{other['port']}: {other['reason']})"


def format_text(result: PolicyDiff) -> str:
    """The human-readable report."""
    out = [f"--- A: {result.a}", f"+++ B: {result.b}"]
    if result.empty:
        return "\n".join(out + ["no differences"]) + "\n"
    if result.features_only_in_a or result.features_only_in_b:
        out.append("")
        out.append(f"features only in A ({len(result.features_only_in_a)}): {', '.join(result.features_only_in_a) or '-'}")
        out.append(f"features only in B ({len(result.features_only_in_b)}): {', '.join(result.features_only_in_b) or '-'}")
    for title, items, mark in (("hosts only in A", result.only_in_a, "-"), ("hosts only in B", result.only_in_b, "+")):
        if items:
            out += ["", f"{title} ({len(items)}):"]
            for side in items:
                feats = f" [{', '.join(side['features'])}]" if side["features"] else ""
                out.append(f"  {mark} {side['pattern']}  {side['action']} {' '.join(side['ports'])}{feats}  "
                           f"-> {_covered(side)}")
    if result.changed:
        out += ["", f"rules that differ ({len(result.changed)}):"]
        for change in result.changed:
            out.append(f"  ~ {change['pattern']}: A {change['a']['action']} {' '.join(change['a']['ports'])}  "
                       f"B {change['b']['action']} {' '.join(change['b']['ports'])}")
    return "\n".join(out) + "\n"
