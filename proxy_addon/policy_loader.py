"""Building a :class:`~proxy_addon.policy.Policy` from a policy file.

File format: ``schemas/policy.schema.json`` (README "Policy file"). Catalog
features the policy enables become one allow rule collection per feature (named
after the feature id) in the rule collection group ``azureml-features``
(priority ``features_priority``, default 1000); ``rule_collections`` at the top
level go to ``DefaultApplicationRuleCollectionGroup`` (priority 300, as in Azure
Firewall Policy); ``rule_collection_groups`` are taken as written.

Every mistake raises :class:`~proxy_addon.config.ConfigError` naming the file,
key path and line; the policy is never partially built.
"""

from __future__ import annotations

import hashlib
import ipaddress
from pathlib import Path
from typing import Any

from .catalog import Attributor, Catalog, builtin_catalogs, data_dir, find_catalog, parse_protocol
from .config import ConfigError, KeyPath, Problem, Source, load_schema, load_yaml, parse_yaml, suggest, validate_schema
from .decision import Action
from .hostnames import InvalidHost, normalise_host
from .patterns import PatternError, parse_pattern, pattern_warnings
from .policy import MODES, IPNetwork, Policy, Rule, RuleCollection, RuleCollectionGroup

CLOUD_CATALOGS = {"AzureCloud": "azureml", "AzureUSGovernment": "azureml-usgov", "AzureChinaCloud": "azureml-china"}
FEATURES_GROUP = "azureml-features"
DEFAULT_FEATURES_PRIORITY = 1000
DEFAULT_GROUP = ("DefaultApplicationRuleCollectionGroup", 300)
DEFAULT_PROTOCOLS = frozenset({("http", 80), ("https", 443)})


def builtin_policy_path(name: str = "default") -> Path:
    """Path of a shipped policy (``default``, ``azureml-2020-04``)."""
    return data_dir() / "policies" / f"{name}.yaml"


def resolve_policy_path(name_or_path: str | None) -> Path:
    """``None`` -> the default policy; a built-in policy name; or a file path."""
    if not name_or_path:
        return builtin_policy_path()
    if "/" not in name_or_path and not name_or_path.endswith((".yaml", ".yml")) and len(name_or_path) < 200:
        candidate = builtin_policy_path(name_or_path)
        if candidate.is_file():
            return candidate
    return Path(name_or_path)


def load_policy(name_or_path: str | None = None, mode: str | None = None) -> Policy:
    """Load and validate a policy file (``None``: the built-in default).

    ``mode`` overrides the file's ``mode``. Raises :class:`ConfigError`.
    """
    return policy_from_source(load_yaml(resolve_policy_path(name_or_path)), mode)


def policy_from_text(text: str, file: str = "<policy>", mode: str | None = None) -> Policy:
    """Like :func:`load_policy`, from YAML text (for tests and tools)."""
    return policy_from_source(parse_yaml(text, file), mode)


def rule_name_for(pattern: str) -> str:
    """A valid Azure rule name for a target FQDN: ``*.azureml.ms`` -> ``wildcard.azureml.ms``."""
    if pattern.startswith("*."):
        name = "wildcard." + pattern[2:]
    elif pattern.startswith("*"):
        name = "wildcard-" + pattern[1:]
    else:
        name = pattern
    return name[:80].rstrip(".-")


class _Builder:
    def __init__(self, src: Source):
        self.src = src
        self.problems: list[Problem] = []
        self.warnings: list[str] = []
        self.notes: list[str] = []

    def fail(self, path: KeyPath, message: str) -> None:
        self.problems.append(self.src.problem(path, message))

    def note(self, message: str) -> None:
        """Something the policy enables that a proxy cannot enforce (shown by validate)."""
        self.notes.append(message)

    def warn(self, path: KeyPath, message: str) -> None:
        self.warnings.append(str(self.src.problem(path, message)))

    # -- parts ------------------------------------------------------------------

    def catalog(self, data: dict[str, Any]) -> Catalog | None:
        cloud = data.get("cloud")
        name = data.get("catalog") or CLOUD_CATALOGS.get(cloud or "AzureCloud", "azureml")
        try:
            catalog = find_catalog(name)
        except ConfigError as e:
            self.problems.extend(e.problems)
            return None
        except ValueError as e:
            self.fail(("catalog",), str(e) + suggest(name, [c.id for c in builtin_catalogs()]))
            return None
        if cloud and catalog.cloud != cloud:
            self.fail(("cloud",), f"cloud {cloud!r} does not match catalog {catalog.id!r} (cloud {catalog.cloud}); "
                      f"use catalog {CLOUD_CATALOGS[cloud]!r} or drop 'catalog'")
        return catalog

    def workspace(self, data: dict[str, Any]) -> dict[str, str]:
        workspace = {}
        for key, value in (data.get("workspace") or {}).items():
            path = ("workspace", key)
            try:
                host = normalise_host(value)
            except InvalidHost as e:
                self.fail(path, f"{e}; write a single DNS label such as 'contosoml'")
                continue
            if host.name != value or "." in value or host.ip is not None:
                self.fail(path, f"{value!r} must be one lower-case DNS label (no dots), e.g. {host.name.split('.')[0]!r}")
                continue
            workspace[key] = value
        return workspace

    def features(self, data: dict[str, Any], catalog: Catalog) -> list[str]:
        enabled: dict[str, None] = {}
        ids = [f.id for f in catalog.features]
        for i, entry in enumerate(data.get("features") or []):
            path = ("features", i)
            if entry == "all":
                chosen = ids
            elif entry == "required":
                chosen = [f.id for f in catalog.features if f.required]
            elif entry.startswith("group:"):
                group = entry[len("group:"):].strip()
                chosen = [f.id for f in catalog.features if f.group.lower() == group.lower()]
                if not chosen:
                    self.fail(path, f"catalog {catalog.id!r} has no group {group!r}{suggest(group, catalog.groups)} "
                              f"(groups: {', '.join(catalog.groups)})")
            elif entry in ids:
                chosen = [entry]
            else:
                elsewhere = [c.id for c in builtin_catalogs() if c.feature(entry) and c.id != catalog.id]
                hint = f"; it is a feature of catalog {elsewhere[0]!r}" if elsewhere else suggest(entry, ids)
                self.fail(path, f"unknown feature {entry!r} in catalog {catalog.id!r}{hint} "
                          "(write a feature id, 'required', 'all' or 'group:NAME'; list them with 'azml-egress catalog')")
                chosen = []
            for feature_id in chosen:
                enabled[feature_id] = None
        return [f.id for f in catalog.features if f.id in enabled]

    def feature_group(self, catalog: Catalog, enabled: list[str], workspace: dict[str, str], priority: int) -> RuleCollectionGroup:
        collections = []
        for i, feature_id in enumerate(enabled):
            feature = catalog.feature(feature_id)
            assert feature is not None
            rules: list[Rule] = []
            names: set[str] = set()
            for endpoint in feature.hosts:
                resolved = endpoint.resolve(workspace)
                if endpoint.path:
                    self.note(f"feature {feature.id!r}: {endpoint.pattern}{endpoint.path} is a URL with a "
                              "path; an application rule on target FQDNs cannot express it, so it is not allowed here")
                    continue
                if endpoint.network_protocols:
                    ports = ", ".join(f"{p}:{n}" for p, n in endpoint.network_protocols)
                    self.note(f"feature {feature.id!r}: {resolved} also needs {ports}, which an HTTP proxy "
                              "cannot carry; Azure Firewall needs a network rule for it (see 'azml-egress export')")
                name = rule_name_for(resolved)
                base, n = name, 2
                while name in names:
                    name, n = f"{base[:77]}-{n}", n + 1
                names.add(name)
                rules.append(Rule(
                    name=name, target_fqdns=(parse_pattern(resolved),),
                    protocols=frozenset(endpoint.application_protocols),
                    feature=feature.id, description=f"{feature.title} ({feature.source}: {feature.citation})",
                    network_protocols=endpoint.network_protocols,
                ))
            collections.append(RuleCollection(feature.id, 100 + 10 * i, Action.ALLOW, tuple(rules)))
        return RuleCollectionGroup(FEATURES_GROUP, priority, tuple(collections))

    def networks(self, values: list[str], path: KeyPath, what: str) -> tuple[IPNetwork, ...]:
        nets = []
        for i, value in enumerate(values):
            if value == "*":
                return ()
            try:
                nets.append(ipaddress.ip_network(value, strict=False))
            except ValueError:
                self.fail(path + (i,), f"{value!r} is not an IP address or CIDR ({what}; write e.g. 10.0.0.0/24 or '*')")
        return tuple(nets)

    def rule(self, data: dict[str, Any], path: KeyPath, feature_ids: set[str]) -> Rule | None:
        patterns = []
        for i, text in enumerate(data.get("target_fqdns") or []):
            try:
                pattern = parse_pattern(text)
            except PatternError as e:
                self.fail(path + ("target_fqdns", i), str(e))
                continue
            for warning in pattern_warnings(pattern):
                self.warn(path + ("target_fqdns", i), warning)
            patterns.append(pattern)
        destinations = self.networks(data.get("destination_addresses") or [], path + ("destination_addresses",),
                                     "destination addresses")
        if not data.get("target_fqdns") and not data.get("destination_addresses"):
            self.fail(path, "a rule needs 'target_fqdns' or 'destination_addresses'")
        protocols = DEFAULT_PROTOCOLS
        if "protocols" in data:
            parsed = set()
            for i, text in enumerate(data["protocols"]):
                try:
                    parsed.add(parse_protocol(text))
                except ValueError as e:
                    self.fail(path + ("protocols", i), str(e))
            protocols = frozenset(parsed)
        feature = data.get("feature")
        if feature is not None and feature not in feature_ids:
            self.fail(path + ("feature",), f"unknown feature {feature!r}{suggest(feature, feature_ids)}")
        return Rule(
            name=data["name"], target_fqdns=tuple(patterns), protocols=protocols,
            source_addresses=self.networks(data.get("source_addresses") or [], path + ("source_addresses",),
                                           "source addresses"),
            destination_addresses=destinations, feature=feature, description=data.get("description", ""),
        )

    def collection(self, data: dict[str, Any], path: KeyPath, feature_ids: set[str]) -> RuleCollection:
        rules = []
        names: set[str] = set()
        for i, rule_data in enumerate(data["rules"]):
            if rule_data["name"] in names:
                self.fail(path + ("rules", i, "name"), f"duplicate rule name {rule_data['name']!r} in this collection")
            names.add(rule_data["name"])
            rule = self.rule(rule_data, path + ("rules", i), feature_ids)
            if rule is not None:
                rules.append(rule)
        return RuleCollection(data["name"], data["priority"], Action(data["action"]), tuple(rules))

    def groups(self, data: dict[str, Any], feature_ids: set[str], reserve_features_group: bool = True) -> list[RuleCollectionGroup]:
        groups = []
        raw_groups = [(g, ("rule_collection_groups", i)) for i, g in enumerate(data.get("rule_collection_groups") or [])]
        if data.get("rule_collections"):
            name, priority = DEFAULT_GROUP
            raw_groups.append(({"name": name, "priority": priority, "rule_collections": data["rule_collections"]}, ()))
        collection_names: set[str] = set()
        # an imported Azure Firewall policy may use the name itself when it enables no features
        group_names: set[str] = {FEATURES_GROUP} if reserve_features_group else set()
        for group, path in raw_groups:
            if group["name"] in group_names:
                self.fail(path + ("name",), f"rule collection group name {group['name']!r} is already used")
            group_names.add(group["name"])
            collections = []
            for j, c in enumerate(group["rule_collections"]):
                cpath = path + ("rule_collections", j)
                if c["name"] in collection_names:
                    self.fail(cpath + ("name",), f"rule collection name {c['name']!r} is already used in this policy")
                collection_names.add(c["name"])
                collections.append(self.collection(c, cpath, feature_ids))
            groups.append(RuleCollectionGroup(group["name"], group["priority"], tuple(collections)))
        return groups


def policy_from_source(src: Source, mode: str | None = None) -> Policy:
    """Validate ``src`` and build the policy; raises :class:`ConfigError`."""
    validate_schema(src, load_schema("policy"))
    data: dict[str, Any] = src.data
    builder = _Builder(src)
    catalog = builder.catalog(data)
    workspace = builder.workspace(data)
    if catalog is None:
        raise ConfigError(builder.problems)
    enabled = builder.features(data, catalog)
    all_features = {f.id: f for c in builtin_catalogs() for f in c.features}
    all_features.update({f.id: f for f in catalog.features})
    groups = builder.groups(data, set(all_features), reserve_features_group=bool(enabled))
    if builder.problems:
        raise ConfigError(builder.problems)
    if enabled or all(g.name != FEATURES_GROUP for g in groups):
        groups.append(builder.feature_group(catalog, enabled, workspace,
                                            data.get("features_priority", DEFAULT_FEATURES_PRIORITY)))
    if mode is not None and mode not in MODES:
        raise ConfigError([Problem(src.file, ("mode",), None, f"mode {mode!r} is not one of {', '.join(MODES)}")])
    options = dict(data.get("options") or {})
    private = builder.networks(options.get("private_ranges_allowed") or [], ("options", "private_ranges_allowed"),
                               "private ranges the proxy may connect to")
    for i, net in enumerate(private):
        for sensitive, what in (("169.254.169.254", "the cloud metadata endpoint"), ("127.0.0.1", "loopback")):
            address = ipaddress.ip_address(sensitive)
            if net.version == address.version and address in net:
                builder.warn(("options", "private_ranges_allowed", i),
                             f"{net} includes {sensitive} ({what}); list only the ranges of your private endpoints")
    if builder.problems:
        raise ConfigError(builder.problems)
    others = [c for c in builtin_catalogs() if c.id != catalog.id]
    return Policy(
        groups=tuple(groups),
        catalog=catalog,
        attributor=Attributor([catalog, *others], workspace),
        enabled_features=frozenset(enabled),
        mode=mode or data.get("mode", "enforce"),
        name=data.get("name") or Path(src.file).stem,
        source=src.file,
        sha256=hashlib.sha256(src.text.encode("utf-8")).hexdigest(),
        workspace=workspace,
        options=options,
        warnings=tuple(builder.warnings),
        notes=tuple(builder.notes),
        features_by_id=all_features,
        private_ranges_allowed=private,
    )
