"""The decision value: one per connection event, immutable, read by every sink.

Log wording follows Azure Firewall's application-rule log (``msg`` of
``AzureFirewallApplicationRuleLog``; MicrosoftDocs/azure-docs
articles/firewall/logs-and-metrics.md @0083fbd and log-analytics-samples.md
@0399249)::

    HTTPS request from 10.1.0.5:55640 to pypi.org:443. Action: Allow. Rule Collection: python. Rule: pypi
    HTTPS request from 10.1.0.5:55640 to x.example:443. Action: Deny. No rule matched. Proceeding with default action
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass


class Action(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"


class Reason(enum.StrEnum):
    """The fixed set of decision reasons (label values of metrics too)."""

    RULE_MATCHED = "rule_matched"
    """An allow rule matched host, protocol, port and source."""
    NO_RULE_MATCHED = "no_rule_matched"
    """No rule matched the host: Azure Firewall's default deny."""
    DENY_RULE = "deny_rule"
    """A rule of a deny rule collection matched first."""
    PORT_NOT_ALLOWED = "port_not_allowed"
    """A rule matched the host but not the protocol/port."""
    SOURCE_NOT_ALLOWED = "source_not_allowed"
    """A rule matched host, protocol and port, but not the client's source address."""
    IP_LITERAL = "ip_literal"
    """The target is an IP address and no destination-address rule allows it."""
    INVALID_HOST = "invalid_host"
    """The host or port is not a valid FQDN, IP literal or port."""
    HOST_MISMATCH = "host_mismatch"
    """A plain-HTTP request whose Host header names another host than its target."""
    SNI_MISMATCH = "sni_mismatch"
    """The TLS SNI names another host than the CONNECT target."""
    SNI_MISSING = "sni_missing"
    """A tunnelled TLS ClientHello without SNI."""
    PRIVATE_ADDRESS = "private_address"
    """The name resolves to a loopback, link-local, private, ... address the policy does not list."""
    DNS_FAILURE = "dns_failure"
    """The name does not resolve."""
    UPSTREAM_ERROR = "upstream_error"
    """The upstream connection failed (refused, timed out, reset)."""
    PROXY_AUTH_REQUIRED = "proxy_auth_required"
    """The client did not authenticate to the proxy (407)."""
    INVALID_REQUEST = "invalid_request"
    """Not a request the proxy understands (TLS to the proxy port, malformed or incomplete request)."""
    TOO_MANY_CONNECTIONS = "too_many_connections"
    """The proxy's connection limit was reached."""
    INTERNAL_ERROR = "internal_error"
    """An unexpected error in the decision path; the proxy fails closed."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What the firewall does with one request.

    ``host`` is the normalised FQDN (or address text; for ``invalid_host`` an
    escaped form of the raw input), ``port`` a TCP port (0 when unparseable),
    ``protocol`` ``"http"`` or ``"https"``. ``feature``/``feature_title``/
    ``group`` come from the matching rule or, for any other host, from the
    catalogs (``None`` when no catalog knows the host); ``feature_enabled``
    says whether the active policy enables that feature. ``catalog_pattern``
    is the catalog host pattern that covers the host. ``detail`` is a short
    human explanation used in deny responses.
    """

    action: Action
    reason: Reason
    protocol: str
    host: str
    port: int
    rule: str | None = None
    rule_collection: str | None = None
    rule_collection_group: str | None = None
    feature: str | None = None
    feature_title: str | None = None
    group: str | None = None
    feature_enabled: bool | None = None
    catalog: str | None = None
    catalog_pattern: str | None = None
    detail: str = ""

    @property
    def allowed(self) -> bool:
        return self.action is Action.ALLOW

    def firewall_message(self, client: str) -> str:
        """The Azure-Firewall-worded log message for a request from ``client``."""
        head = f"{self.protocol.upper()} request from {client} to {self.host}:{self.port}."
        if self.reason is Reason.SNI_MISSING:
            return f"{self.protocol.upper()} request from {client} was denied. Reason: SNI TLS extension was missing."
        if self.reason in (Reason.RULE_MATCHED, Reason.DENY_RULE):
            action = "Allow" if self.allowed else "Deny"
            return f"{head} Action: {action}. Rule Collection: {self.rule_collection}. Rule: {self.rule}"
        if self.reason in (Reason.NO_RULE_MATCHED, Reason.PORT_NOT_ALLOWED, Reason.SOURCE_NOT_ALLOWED):
            return f"{head} Action: Deny. No rule matched. Proceeding with default action"
        return f"{head} Action: Deny. Reason: {self.detail or self.reason.value}"

    def fields(self) -> dict[str, object]:
        """The decision as plain JSON-able data (enums as their values)."""
        data = asdict(self)
        data["action"] = self.action.value
        data["reason"] = self.reason.value
        return data

    def describe_feature(self) -> str:
        """``"pip package downloads (pip-downloads, Python), not enabled"`` or
        ``"not an Azure ML host"``."""
        if not self.feature:
            return "not an Azure ML host"
        text = f"{self.feature_title or self.feature} ({self.feature}, {self.group})"
        if self.feature_enabled is False:
            text += ", not enabled in this policy"
        return text
