"""A format-neutral view of a policy for the exporters.

:func:`build_model` turns a loaded :class:`~proxy_addon.policy.Policy` into
rule collection groups, rule collections and rules the way Azure Firewall
Policy wants them (MicrosoftDocs/azure-docs articles/firewall/policy-rule-sets.md
@017654d; REST shape of ``Microsoft.Network/firewallPolicies/ruleCollectionGroups``,
Azure/azure-rest-api-specs 2024-05-01):

* HTTP/HTTPS entries become ``ApplicationRule``s in filter rule collections;
* TCP/UDP entries of the catalog (``Rule.network_protocols``: SMB 445, UDP 5831)
  become ``NetworkRule``s in a separate collection ``<collection>-network``
  (a filter rule collection holds rules of one type only) - but network rules
  take no wildcard FQDNs (articles/firewall/fqdn-filtering-network-rules.md
  @0aa2b14), so a wildcard entry is listed in ``unexpressed`` instead;
* catalog entries with a URL path need TLS inspection and target URLs
  (Premium) and are listed in ``unexpressed`` too.

Nothing is dropped silently: every format renders ``unexpressed`` as comments.
This module imports neither mitmproxy nor prometheus_client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Iterator

from ..decision import Action
from ..policy import Policy, Rule, RuleCollection, RuleCollectionGroup
from ..policy_loader import FEATURES_GROUP

COLLECT_BY = ("feature", "group")
NAME_MAX = 80
_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?$")


def is_azure_name(name: str) -> bool:
    """Whether ``name`` is a valid Azure Firewall rule/collection/group name:
    letters, digits, ``_ . -``, starting with a letter or digit, ending with a
    letter, digit or ``_``, at most 80 characters (articles/firewall/rule-processing.md)."""
    return bool(_NAME_RE.match(name))


def azure_name(text: str, fallback: str = "rule") -> str:
    """A valid Azure name from any text, deterministically: other characters
    become ``-``, ``*`` becomes ``wildcard``, length is cut to 80."""
    name = text.replace("*.", "wildcard.").replace("*", "wildcard-")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", name)
    name = name.lstrip("_.-")[:NAME_MAX].rstrip(".-")
    return name if is_azure_name(name) else fallback


def unique_name(name: str, used: set[str]) -> str:
    """``name``, or ``name-2``, ``name-3``... (still at most 80 characters), added to ``used``."""
    candidate, n = name, 2
    while candidate in used:
        suffix = f"-{n}"
        candidate = name[: NAME_MAX - len(suffix)].rstrip(".-") + suffix
        n += 1
    used.add(candidate)
    return candidate


@dataclass(frozen=True, slots=True)
class AppRule:
    """An Azure Firewall ``ApplicationRule``. ``protocols`` are ``(protocol,
    port)`` with protocol ``http``/``https``; empty ``source_addresses`` is any (``*``)."""

    name: str
    description: str
    target_fqdns: tuple[str, ...]
    protocols: tuple[tuple[str, int], ...]
    source_addresses: tuple[str, ...] = ()
    destination_addresses: tuple[str, ...] = ()
    feature: str | None = None


@dataclass(frozen=True, slots=True)
class NetRule:
    """An Azure Firewall ``NetworkRule`` to exact FQDNs (``ip_protocols`` ``TCP``/``UDP``)."""

    name: str
    description: str
    destination_fqdns: tuple[str, ...]
    ip_protocols: tuple[str, ...]
    destination_ports: tuple[str, ...]
    source_addresses: tuple[str, ...] = ()
    feature: str | None = None

    def summary(self) -> str:
        """``network rule TCP 445 to a.example``: how text outputs mention it."""
        return (f"network rule {' '.join(self.ip_protocols)} {','.join(self.destination_ports)} "
                f"to {' '.join(self.destination_fqdns)}")


@dataclass(frozen=True, slots=True)
class Collection:
    """A filter rule collection: ``kind`` ``application`` or ``network``, ``action`` ``Allow``/``Deny``."""

    name: str
    priority: int
    action: str
    kind: str
    rules: tuple[AppRule | NetRule, ...]


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    priority: int
    collections: tuple[Collection, ...]


@dataclass(frozen=True, slots=True)
class Unexpressed:
    """An entry of the policy that a firewall rule of this kind cannot carry."""

    where: str
    entry: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.entry}: {self.reason}"


@dataclass(frozen=True)
class ExportModel:
    """Everything an exporter needs; ``groups`` in evaluation order."""

    policy_name: str
    policy_source: str
    catalog: str
    catalog_revision: str
    cloud: str
    groups: tuple[Group, ...]
    unexpressed: tuple[Unexpressed, ...] = field(default=())

    def collections(self) -> Iterator[tuple[Group, Collection]]:
        """Every collection in evaluation order (group priority, then collection priority)."""
        for group in self.groups:
            for collection in group.collections:
                yield group, collection

    def header(self, fmt: str) -> list[str]:
        """Comment lines (without comment markers) describing the export."""
        return [
            f"Generated by 'azml-egress export --format {fmt}' from policy {self.policy_name!r} ({self.policy_source}).",
            f"Catalog {self.catalog} (revision {self.catalog_revision}), cloud {self.cloud}.",
        ]

    def unexpressed_lines(self) -> list[str]:
        if not self.unexpressed:
            return []
        return ["NOT EXPRESSED by these rules (add them by other means):"] + [f"  {u}" for u in self.unexpressed]


def _description(policy: Policy, group: RuleCollectionGroup, rule: Rule) -> str:
    feature = policy.feature(rule.feature)
    if group.name != FEATURES_GROUP and rule.description:
        return rule.description
    if feature is None:
        return rule.description
    return (f"Azure ML feature {feature.id} ({feature.title}); "
            f"source {feature.source}: {feature.citation or feature.catalog}")


def _network_rules(rule: Rule, description: str, where: str,
                   unexpressed: list[Unexpressed]) -> list[NetRule]:
    fqdns = [p.text for p in rule.target_fqdns]
    exact = tuple(f for f in fqdns if not f.startswith("*"))
    ports = ", ".join(f"{p}:{n}" for p, n in rule.network_protocols)
    for wildcard in (f for f in fqdns if f.startswith("*")):
        unexpressed.append(Unexpressed(
            where, f"{wildcard} {ports}",
            "a network rule takes no wildcard FQDN; set the policy's workspace parameters to get an exact name, "
            "or allow the service tag (e.g. AzureMachineLearning) in a network rule"))
    if not exact:
        return []
    by_protocol: dict[str, list[str]] = {}
    for proto, port in rule.network_protocols:
        by_protocol.setdefault(proto.upper(), []).append(str(port))
    out = []
    for proto, port_list in by_protocol.items():
        name = rule.name if len(by_protocol) == 1 else azure_name(f"{rule.name}-{proto.lower()}")
        out.append(NetRule(name, description, exact, (proto,), tuple(port_list),
                           tuple(str(n) for n in rule.source_addresses), rule.feature))
    return out


def _convert_collection(policy: Policy, group: RuleCollectionGroup, collection: RuleCollection, name: str,
                        priority: int, used_priorities: set[int], unexpressed: list[Unexpressed]) -> list[Collection]:
    app: list[AppRule] = []
    net: list[NetRule] = []
    for rule in collection.rules:
        description = _description(policy, group, rule)
        where = f"{group.name}/{name}/{rule.name}"
        if rule.protocols:
            app.append(AppRule(
                rule.name, description, tuple(p.text for p in rule.target_fqdns), tuple(sorted(rule.protocols)),
                tuple(str(n) for n in rule.source_addresses), tuple(str(n) for n in rule.destination_addresses),
                rule.feature,
            ))
        if rule.network_protocols:
            net.extend(_network_rules(rule, description, where, unexpressed))
    action = "Allow" if collection.action is Action.ALLOW else "Deny"
    out = []
    if app:
        out.append(Collection(name, priority, action, "application", tuple(app)))
    if net:
        net_priority = priority + 1
        while net_priority in used_priorities and net_priority < 65000:
            net_priority += 1
        used_priorities.add(net_priority)
        out.append(Collection(azure_name(f"{name[:72]}-network"), net_priority, action, "network", tuple(net)))
    return out


def _by_catalog_group(policy: Policy, group: RuleCollectionGroup) -> list[tuple[str, int, RuleCollection]]:
    """The features group regrouped by catalog group: one collection per group of features."""
    merged: dict[str, list[Rule]] = {}
    for collection in sorted(group.rule_collections, key=lambda c: c.priority):
        feature = policy.feature(collection.name)
        label = feature.group if feature else collection.name
        merged.setdefault(label, []).extend(collection.rules)
    out = []
    used_collections: set[str] = set()
    for i, (label, rules) in enumerate(merged.items()):
        used_rules: set[str] = set()
        renamed = tuple(replace(r, name=unique_name(r.name, used_rules)) for r in rules)
        name = unique_name(azure_name(label, "features"), used_collections)
        out.append((name, 100 + 10 * i, RuleCollection(name, 100 + 10 * i, Action.ALLOW, renamed)))
    return out


def build_model(policy: Policy, collect_by: str = "feature") -> ExportModel:
    """The export model of ``policy``: its rule collection groups in evaluation
    order; the features group with one collection per feature (``collect_by``
    ``"feature"``) or per catalog group (``"group"``). Raises ``ValueError`` for
    an unknown ``collect_by``."""
    if collect_by not in COLLECT_BY:
        raise ValueError(f"collect_by must be one of {', '.join(COLLECT_BY)}, not {collect_by!r}")
    unexpressed: list[Unexpressed] = []
    groups = []
    for group in sorted(policy.groups, key=lambda g: g.priority):
        if group.name == FEATURES_GROUP and collect_by == "group":
            sources = _by_catalog_group(policy, group)
        else:
            sources = [(c.name, c.priority, c) for c in sorted(group.rule_collections, key=lambda c: c.priority)]
        used = {priority for _, priority, _ in sources}
        collections = []
        for name, priority, collection in sources:
            collections.extend(_convert_collection(policy, group, collection, name, priority, used, unexpressed))
        if collections:
            groups.append(Group(group.name, group.priority, tuple(sorted(collections, key=lambda c: c.priority))))
    for feature in (f for f in policy.catalog.features if f.id in policy.enabled_features):
        for endpoint in feature.hosts:
            if endpoint.path:
                unexpressed.append(Unexpressed(
                    f"{FEATURES_GROUP}/{feature.id}", endpoint.resolve(policy.workspace) + endpoint.path,
                    "a URL path needs TLS inspection and target URLs (Azure Firewall Premium); "
                    "an application rule on target FQDNs cannot express it"))
    return ExportModel(
        policy_name=policy.name, policy_source=policy.source, catalog=policy.catalog.id,
        catalog_revision=policy.catalog.revision, cloud=policy.catalog.cloud, groups=tuple(groups),
        unexpressed=tuple(unexpressed),
    )
