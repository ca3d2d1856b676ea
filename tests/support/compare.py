"""Comparing two policies' decisions on a corpus, the way Azure Firewall logs them."""

from __future__ import annotations

CLIENT = "10.0.0.5:50000"


def log_view(policy, host: str, port: int, protocol: str, client_ip: str = "10.0.0.5") -> tuple:
    """What Azure Firewall would log for the request: action, the log message
    (naming rule collection and rule) and the rule collection group of the
    deciding rule. A host matched on another port is Azure's default deny
    ("No rule matched") whichever rule came closest."""
    d = policy.decide(host, port, protocol, client_ip)
    decided_by_rule = d.reason.value in ("rule_matched", "deny_rule")
    return d.action.value, d.firewall_message(CLIENT), d.rule_collection_group if decided_by_rule else None


def disagreements(a, b, probes, client_ip: str = "10.0.0.5") -> list[tuple]:
    """Probes on which ``a`` and ``b`` log differently, with both views."""
    out = []
    for host, port, protocol in probes:
        va, vb = log_view(a, host, port, protocol, client_ip), log_view(b, host, port, protocol, client_ip)
        if va != vb:
            out.append(((host, port, protocol), va, vb))
    return out
