"""Squid export: ``acl`` lines plus ``http_access`` lines to ``include`` in squid.conf.

Squid 5.7 semantics (squid.conf.documented, "acl" and "http_access"):
``dstdomain .x`` matches ``x`` itself and every name below it, ``dstdomain x``
only ``x``; ``-n`` skips the reverse DNS lookup for IP-literal URLs;
``dstdom_regex`` matches the URL's host name; ``http_access`` lines are
checked top-down and the first line whose ACLs all match decides.

Azure Firewall's ``*.x`` must not match the apex ``x``, so each ``*.x`` becomes
``dstdomain -n .x`` combined with ``!`` an exact-apex ACL on the same line;
``*x`` (no dot) becomes ``dstdom_regex -n -i x$``. One ``http_access`` line is
written per rule, pattern and protocol, in the policy's evaluation order, so
deny collections and priorities keep their effect; HTTPS rules match
``CONNECT`` requests, HTTP rules the other methods. The snippet ends with
``http_access deny all`` (Azure Firewall's default deny).
"""

from __future__ import annotations

import re

from ..patterns import Kind, parse_pattern
from .model import AppRule, ExportModel

PREFIX = "azml_"


class _Acls:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[tuple[str, ...], str] = {}

    def get(self, kind: str, values: tuple[str, ...], hint: str) -> str:
        key = (kind, *values)
        if key not in self.names:
            name = PREFIX + re.sub(r"[^A-Za-z0-9_.-]", "_", hint)
            if name in self.names.values():
                name = f"{name}_{len(self.names)}"
            self.names[key] = name
            self.lines.append(f"acl {name} {kind} {' '.join(values)}")
        return self.names[key]


def _pattern_acls(acls: _Acls, text: str) -> list[str]:
    """ACL terms (``name`` or ``!name``) that match exactly the names ``text`` matches."""
    pattern = parse_pattern(text)
    if pattern.kind is Kind.EXACT:
        return [acls.get("dstdomain -n", (pattern.base,), pattern.base)]
    if pattern.kind is Kind.SUBDOMAINS:
        below = acls.get("dstdomain -n", ("." + pattern.base,), "below." + pattern.base)
        apex = acls.get("dstdomain -n", (pattern.base,), pattern.base)
        return [below, "!" + apex]
    return [acls.get("dstdom_regex -n -i", (re.escape(pattern.base) + "$",), "suffix." + pattern.base)]


def _port_terms(acls: _Acls, rule: AppRule) -> list[list[str]]:
    connect = acls.get("method", ("CONNECT",), "connect")
    terms = []
    for proto, method_term in (("https", connect), ("http", "!" + connect)):
        ports = sorted({n for p, n in rule.protocols if p == proto})
        if ports:
            ports_acl = acls.get("port", tuple(map(str, ports)), f"port_{'_'.join(map(str, ports))}")
            terms.append([method_term, ports_acl])
    return terms


def render(model: ExportModel) -> str:
    """The squid.conf snippet text."""
    acls = _Acls()
    access: list[str] = []
    notes: list[str] = []
    for group, collection in model.collections():
        action = collection.action.lower()
        access.append(f"# {group.name} (priority {group.priority}) / {collection.name} "
                      f"(priority {collection.priority}, {action})")
        if collection.kind != "application":
            for rule in collection.rules:
                notes.append(f"{group.name}/{collection.name}/{rule.name}: network rule "
                             f"{' '.join(rule.ip_protocols)} {','.join(rule.destination_ports)} to "
                             f"{' '.join(rule.destination_fqdns)}: an HTTP proxy does not carry it")
            access.append("#   (network rules: not expressible, see the header)")
            continue
        for rule in collection.rules:
            assert isinstance(rule, AppRule)
            source = []
            if rule.source_addresses:
                source = [acls.get("src", rule.source_addresses, f"src_{rule.name}")]
            destination = []
            if rule.destination_addresses:
                destination = [acls.get("dst", rule.destination_addresses, f"dst_{rule.name}")]
                access.append(f"#   rule {rule.name}: destination addresses (dst makes squid resolve names)")
                for ports in _port_terms(acls, rule):
                    access.append(f"http_access {action} {' '.join(ports + source + destination)}")
            for text in rule.target_fqdns:
                terms = _pattern_acls(acls, text)
                for ports in _port_terms(acls, rule):
                    access.append(f"http_access {action} {' '.join(ports + source + terms)}")
    notes += [str(u) for u in model.unexpressed]
    out = [f"# {line}" for line in model.header("squid")]
    out += ["# Include from squid.conf before any other http_access line (Squid 5 syntax)."]
    if notes:
        out += ["# NOT EXPRESSED by these lines (add them by other means):"] + [f"#   {n}" for n in notes]
    out += ["", *acls.lines, "", *access, "", "# Azure Firewall's default action", "http_access deny all"]
    return "\n".join(out) + "\n"
