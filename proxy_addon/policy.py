"""The policy engine: rule collection groups, rule collections, rules and ``decide()``.

Evaluation follows Azure Firewall Policy (MicrosoftDocs/azure-docs
articles/firewall/rule-processing.md, 2026-03-23; policy-rule-sets.md @017654d):
rule collection groups by priority (lower first), then rule collections by
priority within a group, then rules top-down; the first rule that matches host,
protocol/port and source decides, with its collection's action; no match is the
default deny.

This module imports neither mitmproxy nor prometheus_client.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from typing import Iterator

from .catalog import Attributor, Catalog, Feature
from .decision import Action, Decision, Reason
from .hostnames import Host, InvalidHost, normalise_host, printable
from .patterns import Pattern, PatternIndex

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MODES = ("enforce", "simulate", "learn")
CACHE_SIZE = 65536


@dataclass(frozen=True, slots=True)
class Rule:
    """An application rule. ``protocols`` are ``(protocol, port)`` pairs with
    protocol ``http`` or ``https``; empty ``source_addresses`` means any source.
    ``network_protocols`` holds TCP/UDP ports from the catalog that only a
    network rule can express (kept for exporters, never enforced here)."""

    name: str
    target_fqdns: tuple[Pattern, ...] = ()
    protocols: frozenset[tuple[str, int]] = frozenset({("http", 80), ("https", 443)})
    source_addresses: tuple[IPNetwork, ...] = ()
    destination_addresses: tuple[IPNetwork, ...] = ()
    feature: str | None = None
    description: str = ""
    network_protocols: tuple[tuple[str, int], ...] = ()

    def source_matches(self, client_ip: str | None) -> bool:
        if not self.source_addresses:
            return True
        if client_ip is None:
            return False
        try:
            address = ipaddress.ip_address(client_ip.split("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in net for net in self.source_addresses)


@dataclass(frozen=True, slots=True)
class RuleCollection:
    name: str
    priority: int
    action: Action
    rules: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class RuleCollectionGroup:
    name: str
    priority: int
    rule_collections: tuple[RuleCollection, ...]


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a rule sits: its evaluation order and its parents."""

    order: int
    group: RuleCollectionGroup
    collection: RuleCollection
    rule: Rule


@dataclass
class Policy:
    """A loaded, validated policy. Build with :mod:`proxy_addon.policy_loader`.

    ``catalog`` is the active catalog, ``enabled_features`` the feature ids the
    policy enables, ``attributor`` attributes any host to a feature across all
    catalogs. :meth:`decide` is pure and thread-safe (its cache is a plain dict).
    """

    groups: tuple[RuleCollectionGroup, ...]
    catalog: Catalog
    attributor: Attributor
    enabled_features: frozenset[str] = frozenset()
    mode: str = "enforce"
    name: str = ""
    source: str = ""
    sha256: str = ""
    workspace: dict[str, str] = field(default_factory=dict)
    options: dict[str, object] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    """Risky but valid entries (lookalike wildcards, public suffixes), with file and line."""
    notes: tuple[str, ...] = ()
    """Enabled catalog entries an HTTP proxy cannot enforce (UDP, SMB, URL paths)."""
    features_by_id: dict[str, Feature] = field(default_factory=dict)
    private_ranges_allowed: tuple[IPNetwork, ...] = ()
    """Destination networks exempt from the private-address refusal."""

    def __post_init__(self) -> None:
        self._index: PatternIndex[tuple[Pattern, Placement]] = PatternIndex()
        self._address_rules: list[Placement] = []
        self._has_source_rules = False
        self._cache: dict[tuple[object, ...], Decision] = {}
        for placement in self.placements():
            for pattern in placement.rule.target_fqdns:
                self._index.add(pattern, (pattern, placement))
            if placement.rule.destination_addresses:
                self._address_rules.append(placement)
            if placement.rule.source_addresses:
                self._has_source_rules = True

    def placements(self) -> Iterator[Placement]:
        """Every rule in evaluation order."""
        order = 0
        for group in sorted(self.groups, key=lambda g: g.priority):
            for collection in sorted(group.rule_collections, key=lambda c: c.priority):
                for rule in collection.rules:
                    yield Placement(order, group, collection, rule)
                    order += 1

    @property
    def rule_count(self) -> int:
        return sum(len(c.rules) for g in self.groups for c in g.rule_collections)

    @property
    def pattern_count(self) -> int:
        return len(self._index)

    def feature(self, feature_id: str | None) -> Feature | None:
        if feature_id is None:
            return None
        return self.features_by_id.get(feature_id)

    # -- deciding -----------------------------------------------------------

    def decide(self, host: str, port: int, protocol: str = "https", client_ip: str | None = None) -> Decision:
        """Decide one request to ``host`` (raw text: name or IP literal, not
        normalised yet) on TCP ``port`` with ``protocol`` ``"http"`` or
        ``"https"`` from ``client_ip``.

        Never raises: an unexpected error yields a deny with reason
        ``internal_error`` (fail closed).
        """
        key = (host, port, protocol, client_ip if self._has_source_rules else None)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        try:
            decision = self._decide(host, port, protocol, client_ip)
        except Exception as e:  # noqa: BLE001 - fail closed, and say why
            return Decision(
                Action.DENY, Reason.INTERNAL_ERROR, protocol, printable(host), port if isinstance(port, int) else 0,
                detail=f"internal error while deciding: {type(e).__name__}: {e}",
            )
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[key] = decision
        return decision

    def _decide(self, raw_host: str, port: int, protocol: str, client_ip: str | None) -> Decision:
        if not isinstance(port, int) or not 1 <= port <= 65535:
            return Decision(Action.DENY, Reason.INVALID_HOST, protocol, printable(raw_host), 0,
                            detail=f"port {printable(port)!r} is not a TCP port")
        try:
            host = normalise_host(raw_host)
        except InvalidHost as e:
            return Decision(Action.DENY, Reason.INVALID_HOST, protocol, printable(raw_host), port, detail=str(e))
        if host.ip is not None:
            return self._decide_address(host, port, protocol, client_ip)
        return self._decide_name(host.name, port, protocol, client_ip)

    def _decide_name(self, name: str, port: int, protocol: str, client_ip: str | None) -> Decision:
        near_miss: Placement | None = None
        near_pattern: Pattern | None = None
        for pattern, placement in self._index.lookup(name):
            rule = placement.rule
            if (protocol, port) in rule.protocols and rule.source_matches(client_ip):
                return self._matched(placement, name, port, protocol)
            # the most specific rule that matched the host names the feature
            if near_pattern is None or pattern.specificity < near_pattern.specificity:
                near_miss, near_pattern = placement, pattern
        if near_miss is not None:
            wrong_source = (protocol, port) in near_miss.rule.protocols
            return self._with_feature(
                Decision(
                    Action.DENY, Reason.SOURCE_NOT_ALLOWED if wrong_source else Reason.PORT_NOT_ALLOWED,
                    protocol, name, port,
                    rule=near_miss.rule.name, rule_collection=near_miss.collection.name,
                    rule_collection_group=near_miss.group.name,
                    detail=self._near_miss_detail(near_miss.rule, protocol, port, client_ip),
                ),
                name, near_miss.rule.feature,
            )
        return self._with_feature(
            Decision(Action.DENY, Reason.NO_RULE_MATCHED, protocol, name, port,
                     detail="no rule matched; proceeding with default action"),
            name, None,
        )

    @staticmethod
    def _near_miss_detail(rule: Rule, protocol: str, port: int, client_ip: str | None) -> str:
        allowed = ", ".join(f"{p}:{n}" for p, n in sorted(rule.protocols))
        if not rule.protocols:
            network = ", ".join(f"{p}:{n}" for p, n in rule.network_protocols) or "no HTTP(S) port"
            return (f"rule {rule.name!r} matches the host but only for {network}, which needs an Azure Firewall "
                    "network rule; an HTTP proxy cannot carry it")
        if (protocol, port) in rule.protocols:
            return f"rule {rule.name!r} matches the host but not the source address {client_ip}"
        return f"rule {rule.name!r} matches the host but allows only {allowed}, not {protocol}:{port}"

    def _decide_address(self, host: Host, port: int, protocol: str, client_ip: str | None) -> Decision:
        assert host.ip is not None
        for placement in self._address_rules:
            rule = placement.rule
            if (
                any(host.ip in net for net in rule.destination_addresses)
                and (protocol, port) in rule.protocols
                and rule.source_matches(client_ip)
            ):
                return self._matched(placement, host.name, port, protocol)
        return Decision(
            Action.DENY, Reason.IP_LITERAL, protocol, host.name, port,
            detail="the target is an IP address; only a rule with destination_addresses can allow it",
        )

    def _matched(self, placement: Placement, name: str, port: int, protocol: str) -> Decision:
        action = placement.collection.action
        decision = Decision(
            action, Reason.RULE_MATCHED if action is Action.ALLOW else Reason.DENY_RULE, protocol, name, port,
            rule=placement.rule.name, rule_collection=placement.collection.name,
            rule_collection_group=placement.group.name,
            detail="" if action is Action.ALLOW else f"denied by rule {placement.rule.name!r}",
        )
        return self._with_feature(decision, name, placement.rule.feature)

    def _with_feature(self, decision: Decision, name: str, feature_id: str | None) -> Decision:
        attribution = self.attributor.attribute(name)
        feature = self.feature(feature_id) or (attribution.feature if attribution else None)
        if feature is None:
            return decision
        return replace(
            decision,
            feature=feature.id, feature_title=feature.title, group=feature.group,
            feature_enabled=feature.catalog == self.catalog.id and feature.id in self.enabled_features,
            catalog=feature.catalog,
            catalog_pattern=attribution.pattern if attribution and attribution.feature.id == feature.id else None,
        )
