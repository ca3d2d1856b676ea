"""The answer a client gets for a denied request: status, headers, plain-text body.

The body names the host, port, reason, the Azure ML feature the host belongs
to (or "not an Azure ML host"), how to allow it, and the line Azure Firewall
would log.
"""

from __future__ import annotations

from .audit import DecisionEvent
from .decision import Reason

HEADER_DECISION = "X-Azml-Egress-Decision"
HEADER_REASON = "X-Azml-Egress-Reason"
HEADER_FEATURE = "X-Azml-Egress-Feature"


def status_for(reason: Reason) -> int:
    """403 for policy denials; 400 for requests that contradict themselves."""
    return 400 if reason is Reason.HOST_MISMATCH else 403


def how_to_allow(event: DecisionEvent, policy_source: str | None) -> str:
    d = event.decision
    where = f"the policy ({policy_source})" if policy_source else "the policy"
    if d.reason is Reason.PORT_NOT_ALLOWED:
        return (f"To allow it, add {d.protocol}:{d.port} to the protocols of rule {d.rule!r} "
                f"(rule collection {d.rule_collection!r}) in {where}.")
    if d.reason is Reason.IP_LITERAL:
        return f"Use the host name, or add a rule with destination_addresses covering {d.host} to {where}."
    if d.reason is Reason.DENY_RULE:
        return f"Rule {d.rule!r} of deny rule collection {d.rule_collection!r} in {where} matches it."
    if d.reason in (Reason.INVALID_HOST, Reason.HOST_MISMATCH):
        return "Fix the request: the proxy only forwards well-formed requests to the host they name."
    if d.reason is Reason.INTERNAL_ERROR:
        return "This is a fault of the proxy or its policy, not of the request; see the proxy's log."
    if d.feature and d.feature_enabled is False:
        return f"To allow it, add {d.feature!r} to 'features' in {where}, or add an application rule for {d.host}."
    return f"To allow it, add an application rule with target_fqdns [{d.host}] to {where}."


def deny_text(event: DecisionEvent, policy_source: str | None) -> tuple[int, dict[str, str], str]:
    """``(status, headers, body)`` for a denied request."""
    d = event.decision
    headers = {
        HEADER_DECISION: "deny",
        HEADER_REASON: d.reason.value,
        "Content-Type": "text/plain; charset=utf-8",
        "Connection": "close",
    }
    if d.feature:
        headers[HEADER_FEATURE] = d.feature
    target = f"{d.host}:{d.port}"
    lines = [
        f"azml-egress denied {event.method} {target} ({d.reason.value}).",
        f"{d.detail}." if d.detail and not d.detail.endswith(".") else d.detail,
        f"Azure ML feature: {d.describe_feature()}.",
        how_to_allow(event, policy_source),
        f"Azure Firewall would log: {d.firewall_message(event.client)}",
    ]
    return status_for(d.reason), headers, "\n".join(line for line in lines if line) + "\n"
