"""Turning imported Azure Firewall rules into an azml-egress policy file.

The result keeps rule collection group, collection and rule names,
priorities, actions, source addresses and ports as written (README "Policy
file"), so ``azml-egress run --config`` simulates that firewall with the same
evaluation order and log wording. Each rule gets the ``feature:`` of the
catalog feature its target FQDNs belong to (one feature for all of them;
otherwise the proxy attributes host by host at run time). ``features`` is
empty unless asked for. What could not be imported is written as comments.
"""

from __future__ import annotations

from typing import Any, Iterable

import yaml

from ..catalog import Attributor, Catalog, builtin_catalogs, find_catalog
from ..patterns import Kind, PatternError, parse_pattern
from ..policy_loader import CLOUD_CATALOGS, policy_from_text
from .azure_firewall import Imported, ImportedRule
from .values import json_path

PROBE_LABEL = "azml-egress-probe"


def _probe(pattern_text: str) -> str | None:
    """A host name that ``pattern_text`` matches (for attribution)."""
    try:
        pattern = parse_pattern(pattern_text)
    except PatternError:
        return None
    if pattern.kind is Kind.SUBDOMAINS:
        return f"{PROBE_LABEL}.{pattern.base}"
    return pattern.base


class FeatureFinder:
    """Attributes imported FQDN patterns to catalog features.

    An explicit ``Azure ML feature ID`` at the start of the rule description
    (as ``azml-egress export`` writes it) wins; then a hint - the collection
    name - when that feature's hosts cover the pattern; otherwise
    :class:`~proxy_addon.catalog.Attributor` over every catalog, the active one first.
    """

    def __init__(self, catalog: Catalog):
        self.catalogs = [catalog, *(c for c in builtin_catalogs() if c.id != catalog.id)]
        self.attributor = Attributor(self.catalogs)
        self._by_feature: dict[str, Attributor] = {}

    def _covers(self, feature_id: str, host: str) -> bool:
        if feature_id not in self._by_feature:
            for catalog in self.catalogs:
                feature = catalog.feature(feature_id)
                if feature is not None:
                    self._by_feature[feature_id] = Attributor([Catalog(
                        catalog.id, catalog.title, catalog.cloud, catalog.revision, catalog.sources, "",
                        (feature,), catalog.path)])
                    break
            else:
                return False
        return self._by_feature[feature_id].attribute(host) is not None

    def known(self, feature_id: str) -> bool:
        return any(c.feature(feature_id) for c in self.catalogs)

    def feature(self, pattern_text: str, hints: Iterable[str], explicit: str | None = None) -> str | None:
        """The feature of ``pattern_text``: ``explicit`` if it is a known
        feature id, else a covering hint, else the catalogs' attribution."""
        if explicit and self.known(explicit):
            return explicit
        host = _probe(pattern_text)
        if host is None:
            return None
        for hint in hints:
            if hint and self._covers(hint, host):
                return hint
        attribution = self.attributor.attribute(host)
        return attribution.feature.id if attribution else None


def _marker(rule: ImportedRule) -> str | None:
    """The feature id in a description ``Azure ML feature ID ...`` (as exported)."""
    words = rule.description.replace(";", " ").replace("(", " ").split()
    if words[:3] == ["Azure", "ML", "feature"] and len(words) > 3:
        return words[3]
    return None


def policy_data(imported: Imported, catalog: Catalog, name: str,
                features: list[str] | None = None, cloud: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """(policy file data, notes on attribution) for ``imported``."""
    finder = FeatureFinder(catalog)
    notes: list[str] = []
    data: dict[str, Any] = {"version": 1, "name": name, "mode": "enforce"}
    if cloud:
        data["cloud"] = cloud
    if not cloud or CLOUD_CATALOGS.get(cloud) != catalog.id:
        data["catalog"] = catalog.id
    data["features"] = list(features or [])
    groups = []
    collection_names: set[str] = set()
    for group in sorted(imported.groups, key=lambda g: g.priority):
        out_collections = []
        for collection in group.collections:
            cname = collection.name
            n = 2
            while cname in collection_names:
                cname, n = f"{collection.name[:76]}-{n}", n + 1
            if cname != collection.name:
                notes.append(f"{json_path(collection.path)}: collection {collection.name!r} renamed {cname!r} "
                             "(azml-egress needs collection names unique in the policy)")
            collection_names.add(cname)
            rules = []
            for rule in collection.rules:
                out: dict[str, Any] = {"name": rule.name}
                if rule.description:
                    out["description"] = rule.description
                if rule.target_fqdns:
                    out["target_fqdns"] = rule.target_fqdns
                if rule.destination_addresses:
                    out["destination_addresses"] = rule.destination_addresses
                out["protocols"] = rule.protocols
                if rule.source_addresses:
                    out["source_addresses"] = rule.source_addresses
                marker = _marker(rule)
                found = {f: finder.feature(f, [collection.name], marker) for f in rule.target_fqdns}
                distinct = {v for v in found.values() if v}
                if len(distinct) == 1 and all(found.values()):
                    out["feature"] = distinct.pop()
                elif distinct:
                    notes.append(f"{json_path(rule.path)}: rule {rule.name!r} spans features "
                                 + ", ".join(f"{k} -> {v or 'none'}" for k, v in found.items())
                                 + "; the proxy attributes host by host")
                rules.append(out)
            out_collections.append({"name": cname, "priority": collection.priority, "action": collection.action,
                                    "rules": rules})
        groups.append({"name": group.name, "priority": group.priority, "rule_collections": out_collections})
    data["rule_collection_groups"] = groups
    return data, notes


def policy_yaml(imported: Imported, name: str, catalog_id: str | None = None, cloud: str | None = None,
                features: list[str] | None = None) -> tuple[str, list[str]]:
    """The policy file text for ``imported`` and the warnings to show.

    The text is checked by loading it; raises
    :class:`~proxy_addon.config.ConfigError` if it would not load (e.g. a
    target FQDN azml-egress does not accept), or ``ValueError`` for an unknown catalog.
    """
    catalog = find_catalog(catalog_id or CLOUD_CATALOGS.get(cloud or "AzureCloud", "azureml"))
    data, notes = policy_data(imported, catalog, name, features, cloud)
    warnings = [*imported.skipped, *notes]
    header = [f"# Imported by 'azml-egress import' from {imported.file}.",
              "# Names, priorities, actions, sources and ports are as in the Azure Firewall export;",
              "# 'feature' attributes each rule to a catalog feature where one matches."]
    if imported.skipped:
        header.append("# NOT IMPORTED (an HTTP proxy cannot simulate these):")
        header += [f"#   {s}" for s in imported.skipped]
    if notes:
        header += ["# Notes:"] + [f"#   {n}" for n in notes]
    text = "\n".join(header) + "\n" + yaml.safe_dump(data, sort_keys=False, width=1000, allow_unicode=False)
    policy_from_text(text, f"<import of {imported.file}>")
    return text, warnings
