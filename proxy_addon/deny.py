"""The answer a client gets for a denied request: status, headers, plain-text body.

The body names the host, port, reason, the Azure ML feature the host belongs
to (or "not an Azure ML host"), how to allow it, and the line Azure Firewall
would log.
"""

from __future__ import annotations

from pathlib import Path

from .audit import DecisionEvent
from .catalog import data_dir
from .decision import Reason
from .policy_loader import FEATURES_GROUP

HEADER_DECISION = "X-Azml-Egress-Decision"
HEADER_REASON = "X-Azml-Egress-Reason"
HEADER_FEATURE = "X-Azml-Egress-Feature"


def status_for(reason: Reason) -> int:
    """403 for policy denials; 400 for requests that contradict themselves."""
    return 400 if reason is Reason.HOST_MISMATCH else 403


def _where(policy_source: str | None) -> str:
    """How to name the policy file in advice; the built-in policies ship inside
    the package, so the advice is to copy one and run with ``--config``."""
    if not policy_source:
        return "the policy"
    if Path(policy_source).resolve().is_relative_to(data_dir().resolve()):
        return (f"a copy of the built-in policy {Path(policy_source).name} "
                "(run it with --config)")
    return f"the policy ({policy_source})"


def how_to_allow(event: DecisionEvent, policy_source: str | None) -> str:
    d = event.decision
    where = _where(policy_source)
    rule = f"target_fqdns [{d.host}], protocols [{d.protocol}:{d.port}]"
    if d.reason in (Reason.PORT_NOT_ALLOWED, Reason.SOURCE_NOT_ALLOWED):
        what = "source_addresses" if d.reason is Reason.SOURCE_NOT_ALLOWED else "protocols"
        if d.rule_collection_group == FEATURES_GROUP:
            return (f"Rule {d.rule!r} comes from catalog feature {d.rule_collection!r}; to allow this, add a rule "
                    f"with {rule} under rule_collections in {where}.")
        return (f"To allow it, extend the {what} of rule {d.rule!r} (rule collection {d.rule_collection!r}) "
                f"in {where}.")
    if d.reason is Reason.IP_LITERAL:
        return f"Use the host name, or add a rule with destination_addresses covering {d.host} to {where}."
    if d.reason is Reason.DENY_RULE:
        return f"Rule {d.rule!r} of deny rule collection {d.rule_collection!r} in {where} matches it."
    if d.reason in (Reason.INVALID_HOST, Reason.HOST_MISMATCH, Reason.INVALID_REQUEST):
        return "Fix the request: the proxy only forwards well-formed requests to the host they name."
    if d.reason is Reason.PRIVATE_ADDRESS:
        return f"If this private address is intended (a private endpoint), list its range in options.private_ranges_allowed in {where}."
    if d.reason is Reason.PROXY_AUTH_REQUIRED:
        return "Authenticate to the proxy (http://USER:PASS@proxy:port), or connect from loopback."
    if d.reason is Reason.INTERNAL_ERROR:
        return "This is a fault of the proxy or its policy, not of the request; see the proxy's log."
    if d.feature and d.feature_enabled is False and d.catalog:
        return (f"To allow it, add {d.feature!r} to 'features' in {where} (catalog {d.catalog!r}), "
                f"or add a rule with {rule}.")
    return f"To allow it, add a rule with {rule} under rule_collections in {where}."


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
