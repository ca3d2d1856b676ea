"""Reading Azure Firewall rules from JSON exports.

Accepted shapes (field names: Azure/azure-rest-api-specs Microsoft.Network
2024-05-01; classic firewall: example AzureFirewallPut.json @dea509e):

* an ARM template (``resources[]``, nested ``resources`` too) holding
  ``Microsoft.Network/firewallPolicies/ruleCollectionGroups`` (or
  ``Microsoft.Network/azureFirewalls``) resources;
* one resource or a list of resources as the REST API / ``az ... show`` /
  ``az ... list`` return them, with or without the ``properties`` wrapper;
* a classic ``Microsoft.Network/azureFirewalls`` resource with
  ``properties.applicationRuleCollections``.

Application rules are read; what an HTTP proxy cannot simulate (network and
NAT rules, FQDN tags, target URLs, web categories, IP groups, MSSQL) is
reported in ``skipped`` with its JSON path. Mistakes raise
:class:`~proxy_addon.config.ConfigError` naming the file, JSON path and problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError, KeyPath, load_json, read_text
from ..patterns import PatternError, parse_pattern
from .values import ValueReader

RCG_TYPE = "microsoft.network/firewallpolicies/rulecollectiongroups"
POLICY_TYPE = "microsoft.network/firewallpolicies"
CLASSIC_TYPE = "microsoft.network/azurefirewalls"


@dataclass
class ImportedRule:
    name: str
    path: KeyPath
    description: str = ""
    target_fqdns: list[str] = field(default_factory=list)
    protocols: list[str] = field(default_factory=list)
    source_addresses: list[str] = field(default_factory=list)
    destination_addresses: list[str] = field(default_factory=list)


@dataclass
class ImportedCollection:
    name: str
    priority: int
    action: str
    path: KeyPath
    rules: list[ImportedRule] = field(default_factory=list)


@dataclass
class ImportedGroup:
    name: str
    priority: int
    path: KeyPath
    collections: list[ImportedCollection] = field(default_factory=list)


@dataclass
class Imported:
    """The application rules found, plus what was left out and why."""

    file: str
    groups: list[ImportedGroup] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class _Reader(ValueReader):
    def __init__(self, file: str):
        super().__init__(file)
        self.result = Imported(file, skipped=self.skipped)
        self.group_names: set[str] = set()

    def document(self, data: Any) -> None:
        if isinstance(data, list):
            for i, item in enumerate(data):
                self.resource(item, (i,))
        elif isinstance(data, dict) and isinstance(data.get("resources"), list) and "type" not in data:
            self.resources(data["resources"], ("resources",), None)
        elif isinstance(data, dict):
            self.resource(data, ())
        else:
            self.fail((), f"expected a JSON object or list, got {type(data).__name__}")

    def resources(self, items: list, path: KeyPath, parent: str | None) -> None:
        for i, item in enumerate(items):
            self.resource(item, path + (i,), parent)

    def resource(self, obj: Any, path: KeyPath, parent: str | None = None) -> None:
        if not isinstance(obj, dict):
            self.fail(path, f"expected a resource object, got {type(obj).__name__}")
            return
        kind = obj.get("type")
        kind = kind.lower() if isinstance(kind, str) else None
        if kind and parent and "/" not in kind:
            kind = f"{parent}/{kind}"
        props, _ = self.properties(obj, path)
        if kind is None:
            # az CLI output without 'type', or a bare properties object
            if "ruleCollections" in props:
                kind = RCG_TYPE
            elif "applicationRuleCollections" in props:
                kind = CLASSIC_TYPE
        if kind == RCG_TYPE:
            self.rule_collection_group(obj, path)
        elif kind == CLASSIC_TYPE:
            self.classic(obj, path)
        elif kind == POLICY_TYPE:
            pass  # its rule collection groups are separate (child) resources
        elif kind is not None:
            self.skip(path, f"resource of type {obj.get('type')!r} ignored")
        else:
            self.fail(path, "not an Azure Firewall resource: expected 'type' "
                      "Microsoft.Network/firewallPolicies/ruleCollectionGroups or Microsoft.Network/azureFirewalls, "
                      "or 'ruleCollections' / 'applicationRuleCollections'")
        nested = obj.get("resources")
        if isinstance(nested, list):
            self.resources(nested, path + ("resources",), kind)

    def rule_collection_group(self, obj: dict, path: KeyPath) -> None:
        name = self.name(self.resource_name(obj.get("name"), path + ("name",)), path + ("name",),
                         self.group_names, "rule collection group")
        props, ppath = self.properties(obj, path)
        priority = self.priority(props, ppath)
        collections = props.get("ruleCollections", [])
        if not isinstance(collections, list):
            self.fail(ppath + ("ruleCollections",), "expected a list of rule collections")
            return
        group = ImportedGroup(name or "?", priority or 0, path)
        for i, coll in enumerate(collections):
            cpath = ppath + ("ruleCollections", i)
            if not isinstance(coll, dict):
                self.fail(cpath, "expected a rule collection object")
                continue
            kind = coll.get("ruleCollectionType")
            if kind == "FirewallPolicyNatRuleCollection":
                self.skip(cpath, f"NAT rule collection {coll.get('name')!r}: inbound DNAT is not egress")
                continue
            if kind != "FirewallPolicyFilterRuleCollection":
                self.fail(cpath + ("ruleCollectionType",), f"unknown rule collection type {kind!r} (expected "
                          "FirewallPolicyFilterRuleCollection or FirewallPolicyNatRuleCollection)")
                continue
            collection = self.collection(coll, cpath, coll.get("action"), coll.get("rules"), "ruleType")
            if collection:
                group.collections.append(collection)
        self.result.groups.append(group)

    def classic(self, obj: dict, path: KeyPath) -> None:
        name = self.name(self.resource_name(obj.get("name") or "azure-firewall", path + ("name",)),
                         path + ("name",), self.group_names, "firewall") or "azure-firewall"
        props, ppath = self.properties(obj, path)
        group = ImportedGroup(name, 100, path)
        for key in ("networkRuleCollections", "natRuleCollections"):
            for i, coll in enumerate(props.get(key) or []):
                cname = coll.get("name") if isinstance(coll, dict) else None
                self.skip(ppath + (key, i), f"classic {key[:-15]} rule collection {cname!r}: "
                          "an HTTP proxy cannot simulate it")
        collections = props.get("applicationRuleCollections")
        if not isinstance(collections, list):
            self.fail(ppath + ("applicationRuleCollections",), "expected a list of application rule collections")
            return
        for i, coll in enumerate(collections):
            cpath = ppath + ("applicationRuleCollections", i)
            if not isinstance(coll, dict):
                self.fail(cpath, "expected a rule collection object")
                continue
            cprops, cppath = self.properties(coll, cpath)
            merged = {"name": coll.get("name"), **cprops}
            collection = self.collection(merged, cppath, cprops.get("action"), cprops.get("rules"), None)
            if collection:
                group.collections.append(collection)
        self.result.groups.append(group)

    def collection(self, coll: dict, path: KeyPath, action: Any, rules: Any,
                   type_key: str | None) -> ImportedCollection | None:
        name = self.text(coll, "name", path)
        priority = self.priority(coll, path)
        kind = action.get("type") if isinstance(action, dict) else None
        if not isinstance(kind, str) or kind.lower() not in ("allow", "deny"):
            self.fail(path + ("action",), f"expected {{\"type\": \"Allow\"}} or {{\"type\": \"Deny\"}}, got {action!r}")
            return None
        if not isinstance(rules, list):
            self.fail(path + ("rules",), "expected a list of rules")
            return None
        if name is None or priority is None:
            return None
        collection = ImportedCollection(name, priority, kind.lower(), path)
        if self.name(name, path + ("name",), set(), "rule collection") is None:
            return None
        rule_names: set[str] = set()
        for i, rule in enumerate(rules):
            rpath = path + ("rules", i)
            if not isinstance(rule, dict):
                self.fail(rpath, "expected a rule object")
                continue
            rule_type = rule.get(type_key) if type_key else "ApplicationRule"
            if rule_type in ("NetworkRule", "NatRule"):
                self.skip(rpath, f"{rule_type} {rule.get('name')!r} in collection {name!r}: "
                          "an HTTP proxy cannot simulate network rules")
                continue
            if rule_type != "ApplicationRule":
                self.fail(rpath + (type_key or "ruleType",), f"unknown rule type {rule_type!r}")
                continue
            rule_name = rule.get("name")
            if isinstance(rule_name, str) and self.name(rule_name, rpath + ("name",), rule_names, "rule") is None:
                continue
            imported = self.application_rule(rule, rpath, name)
            if imported:
                collection.rules.append(imported)
        return collection

    def application_rule(self, rule: dict, path: KeyPath, collection: str) -> ImportedRule | None:
        name = self.text(rule, "name", path)
        if name is None:
            return None
        where = f"rule {name!r} in collection {collection!r}"
        out = ImportedRule(name, path, description=self.text(rule, "description", path, required=False) or "")
        for i, fqdn in enumerate(self.strings(rule, "targetFqdns", path)):
            fqdn = fqdn.strip().lower()
            fqdn = fqdn[:-1] if fqdn.endswith(".") else fqdn
            try:
                parse_pattern(fqdn)
            except PatternError as e:
                self.fail(path + ("targetFqdns", i), str(e))
                continue
            out.target_fqdns.append(fqdn)
        for key in ("fqdnTags", "targetUrls", "webCategories"):
            if self.strings(rule, key, path):
                self.skip(path + (key,), f"{where}: {key} cannot be simulated (only targetFqdns are)")
        if self.strings(rule, "sourceIpGroups", path):
            self.skip(path, f"{where}: sourceIpGroups cannot be resolved offline; rule not imported")
            return None
        out.source_addresses = self.addresses(rule, "sourceAddresses", path)
        out.destination_addresses = self.addresses(rule, "destinationAddresses", path)
        protocols = rule.get("protocols")
        if not isinstance(protocols, list) or not protocols:
            self.fail(path + ("protocols",), "an application rule needs a list of {protocolType, port}")
            return None
        for i, proto in enumerate(protocols):
            ppath = path + ("protocols", i)
            kind = proto.get("protocolType") if isinstance(proto, dict) else None
            port = proto.get("port") if isinstance(proto, dict) else None
            if isinstance(port, str) and port.isdigit():
                port = int(port)
            if not isinstance(kind, str) or not isinstance(port, int) or isinstance(port, bool):
                self.fail(ppath, f"expected {{\"protocolType\": \"Http\"|\"Https\", \"port\": N}}, got {proto!r}")
                continue
            if kind.lower() == "mssql":
                self.skip(ppath, f"{where}: Mssql:{port} cannot be simulated by an HTTP proxy")
                continue
            if kind.lower() not in ("http", "https") or not 1 <= port <= 65535:
                self.fail(ppath, f"protocol {kind}:{port} is not Http or Https with a port 1-65535")
                continue
            out.protocols.append(f"{kind.lower()}:{port}")
        if not out.target_fqdns and not out.destination_addresses:
            self.skip(path, f"{where}: no targetFqdns to simulate; rule not imported")
            return None
        if not out.protocols:
            self.skip(path, f"{where}: no HTTP/HTTPS protocol left; rule not imported")
            return None
        return out


def read_firewall_json(text: str, file: str) -> Imported:
    """Parse an Azure Firewall JSON export; raises :class:`ConfigError`."""
    data = load_json(text, file)
    reader = _Reader(file)
    reader.document(data)
    if not reader.problems and not reader.result.groups:
        reader.fail((), "no rule collection groups or application rule collections found")
    if reader.problems:
        raise ConfigError(reader.problems)
    return reader.result


def load_firewall_json(path: str | Path) -> Imported:
    """Read and parse a file; raises :class:`ConfigError`."""
    return read_firewall_json(read_text(path), str(path))
