"""A policy that allows what a learning run saw and nothing more.

:func:`suggest` turns learn data into allow rules, one rule collection per
Azure ML feature plus ``learned-other-hosts`` and ``learned-addresses``:

* a host a catalog covers gets a rule on the catalog's pattern for it (the
  placeholder filled when the policy's ``workspace`` parameters are known, e.g.
  ``contosoml.blob.core.windows.net``, else the documented wildcard such as
  ``*.blob.core.windows.net``) with ``feature:`` set. Whole features are never
  enabled: a feature lists more hosts than were seen;
* any other name gets an exact rule, except that ``min_siblings`` or more
  names under one registrable domain become one ``*.parent`` rule (the deepest
  parent that gathers them). The registrable domain comes from the Public
  Suffix List *including its private section*: ``blob.core.windows.net``,
  ``azurewebsites.net`` or ``github.io`` count as public suffixes, because
  their subdomains belong to different owners. A wildcard is never at or
  above a public suffix: many storage accounts never become
  ``*.core.windows.net`` (nor ``*.blob.core.windows.net`` from this rule;
  that one comes only from the catalog);
* IP literals get a ``destination_addresses`` rule;
* ``exact=True`` writes exact names only (no catalog or sibling wildcards).

Protocols are the (protocol, port) pairs seen; no source addresses are set.
Not suggested: invalid host names, and hosts an explicit deny rule of the
policy denies (listed in the file header instead). Pure: no mitmproxy.
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import publicsuffixlist
from publicsuffixlist import PublicSuffixList

from .catalog import builtin_catalogs
from .decision import Reason
from .hostnames import InvalidHost, normalise_host, printable
from .learn_report import decide, human_bytes
from .learnfile import HostRecord, LearnData, earlier, later
from .patterns import parse_pattern, pattern_warnings
from .policy import Policy
from .policy_loader import rule_name_for

DEFAULT_MIN_SIBLINGS = 3
OTHER_HOSTS = "learned-other-hosts"
ADDRESSES = "learned-addresses"

_PSL: PublicSuffixList | None = None


def public_suffix_list() -> PublicSuffixList:
    """The Public Suffix List (ICANN and private sections) shipped with ``publicsuffixlist``."""
    global _PSL
    if _PSL is None:
        _PSL = PublicSuffixList()
    return _PSL


@functools.lru_cache(maxsize=1)
def suffix_ancestors() -> frozenset[str]:
    """Every domain that has a Public Suffix List entry below it (e.g.
    ``core.windows.net`` above ``blob.core.windows.net``; ``net``): a wildcard
    over such a domain would span names of different owners. Read from the
    list file shipped with ``publicsuffixlist`` (``publicsuffixlist.PSLFILE``)."""
    out: set[str] = set()
    with open(publicsuffixlist.PSLFILE, encoding="utf-8") as f:
        for line in f:
            words = line.split()
            if not words or words[0].startswith("//"):
                continue
            rule = words[0].lstrip("!")
            wildcard = rule.startswith("*.")
            rule = rule.removeprefix("*.")
            try:
                rule = publicsuffixlist.encode_idn(rule) if not rule.isascii() else rule
            except UnicodeError:
                continue
            labels = rule.split(".")
            out.update(".".join(labels[i:]) for i in range(0 if wildcard else 1, len(labels)))
    return frozenset(out)


def wildcard_allowed(base: str) -> bool:
    """Whether ``*.base`` stays within one owner's names: ``base`` is no public
    suffix (private section included) and no public suffix lies below it."""
    return not public_suffix_list().is_public(base) and base not in suffix_ancestors()


def sibling_wildcards(names: list[str], min_siblings: int = DEFAULT_MIN_SIBLINGS) -> dict[str, str]:
    """Map each name that a sibling wildcard covers to that wildcard.

    Names are grouped by registrable domain (public suffix plus one label;
    private-section suffixes count). Within a group, parents are tried
    deepest first: a parent with ``min_siblings`` or more names below it that
    no deeper wildcard covers yet becomes ``*.parent``, unless
    :func:`wildcard_allowed` refuses the parent. A registrable domain itself
    (the apex) is never covered by ``*.`` and stays exact.
    """
    psl = public_suffix_list()
    if min_siblings < 2:
        raise ValueError("min_siblings must be at least 2")
    by_domain: dict[str, list[str]] = defaultdict(list)
    for name in sorted(set(names)):
        domain = psl.privatesuffix(name)
        if domain and domain != name:
            by_domain[domain].append(name)
    covered: dict[str, str] = {}
    for domain, members in by_domain.items():
        if len(members) < min_siblings:
            continue
        parents = {".".join(n.split(".")[i:]) for n in members for i in range(1, n.count(".") + 1)}
        parents = {p for p in parents if p == domain or p.endswith("." + domain)}
        for parent in sorted(parents, key=lambda p: (-p.count("."), p)):
            below = [n for n in members if n not in covered and n.endswith("." + parent)]
            if len(below) >= min_siblings and wildcard_allowed(parent):
                covered.update((n, "*." + parent) for n in below)
    return covered


@dataclass
class SuggestedRule:
    """One allow rule and the learned entries that justify it."""

    name: str
    target: str
    is_address: bool
    feature: str | None
    evidence: list[HostRecord] = field(default_factory=list)
    catalog_pattern: bool = False

    @property
    def protocols(self) -> list[str]:
        pairs = sorted({(r.protocol, r.port) for r in self.evidence})
        return [f"{p}:{n}" for p, n in pairs]


@dataclass
class Suggestion:
    """Rule collections (name -> rules, in output order) plus what was left out."""

    collections: dict[str, list[SuggestedRule]]
    skipped: list[tuple[HostRecord, str]]
    titles: dict[str, str] = field(default_factory=dict)
    """collection name -> a human title (feature title)."""

    @property
    def rules(self) -> list[SuggestedRule]:
        return [r for rules in self.collections.values() for r in rules]


def _address_name(text: str) -> str:
    return "address-" + text.replace(":", "-").strip("-")


def suggest(data: LearnData, policy: Policy, exact: bool = False,
            min_siblings: int = DEFAULT_MIN_SIBLINGS) -> Suggestion:
    """Build the suggestion (see the module docstring). ``policy`` gives the
    catalogs, workspace parameters and explicit deny rules."""
    skipped: list[tuple[HostRecord, str]] = []
    by_target: dict[tuple[str, str], SuggestedRule] = {}
    plain: list[HostRecord] = []
    for record in data.hosts.values():
        try:
            host = normalise_host(record.host)
        except InvalidHost as e:
            skipped.append((record, f"not a valid host name ({e})"))
            continue
        if host.name != record.host or not 1 <= record.port <= 65535:
            skipped.append((record, "not a normalised host name and port"))
            continue
        if record.reasons.get(Reason.PRIVATE_ADDRESS.value):
            skipped.append((record, "resolved to an address the proxy refuses (private_address); no host rule "
                                    "allows it - list its range in options.private_ranges_allowed if intended"))
            continue
        if record.reasons.get(Reason.DNS_FAILURE.value, 0) >= record.count:
            skipped.append((record, "never resolved (dns_failure); nothing to allow"))
            continue
        decision = decide(policy, record)
        if decision.reason is Reason.DENY_RULE:
            skipped.append((record, f"denied by rule {decision.rule!r} (rule collection {decision.rule_collection!r}) "
                                    "of the policy; remove that rule first if this host is needed"))
            continue
        if host.ip is not None:
            rule = by_target.setdefault((ADDRESSES, host.name), SuggestedRule(_address_name(host.name), host.name,
                                                                              True, None))
            rule.evidence.append(record)
            continue
        attribution = policy.attributor.attribute(host.name)
        if attribution is None:
            plain.append(record)
            continue
        feature = attribution.feature
        pattern = host.name if exact else attribution.pattern
        rule = by_target.setdefault((feature.id, pattern), SuggestedRule(
            rule_name_for(pattern), pattern, False, feature.id, catalog_pattern=pattern == attribution.pattern))
        rule.evidence.append(record)
    wildcards = {} if exact else sibling_wildcards([r.host for r in plain], min_siblings)
    for record in plain:
        pattern = wildcards.get(record.host, record.host)
        rule = by_target.setdefault((OTHER_HOSTS, pattern), SuggestedRule(rule_name_for(pattern), pattern, False, None))
        rule.evidence.append(record)

    order = {fid: i for i, fid in enumerate(policy.features_by_id)}
    collections: dict[str, list[SuggestedRule]] = {}
    titles: dict[str, str] = {}
    keys = sorted({k for k, _ in by_target}, key=lambda k: (k in (OTHER_HOSTS, ADDRESSES), k == ADDRESSES,
                                                            order.get(k, len(order)), k))
    for key in keys:
        name = key if key in (OTHER_HOSTS, ADDRESSES) else f"learned-{key}"
        feature = policy.feature(key)
        titles[name] = (f"{feature.title} ({feature.id}, {feature.group})" if feature
                        else "hosts no catalog knows" if key == OTHER_HOSTS else "IP addresses")
        rules = sorted((r for (k, _), r in by_target.items() if k == key), key=lambda r: r.target)
        used: set[str] = set()
        for rule in rules:
            base, n = rule.name, 2
            while rule.name in used:
                rule.name, n = f"{base[:76]}-{n}", n + 1
            used.add(rule.name)
        collections[name] = rules
    return Suggestion(collections, skipped, titles)


# -- YAML output -------------------------------------------------------------------

def _q(text: str) -> str:
    """A double-quoted YAML scalar (JSON string syntax is valid YAML)."""
    return json.dumps(text, ensure_ascii=True)


def _c(text: str) -> str:
    """Text safe inside a YAML comment (one line, escaped)."""
    return printable(text, 300).replace("\n", " ")


def evidence_text(records: list[HostRecord]) -> str:
    """``"3 requests, first ..., last ..., 1.2 kB"`` over ``records``."""
    count = sum(r.count for r in records)
    first = last = None
    for r in records:
        first, last = earlier(first, r.first_seen), later(last, r.last_seen)
    size = human_bytes(sum(r.bytes_total for r in records))
    return f"{count} request{'s' if count != 1 else ''}, first {first}, last {last}, {size}"


def catalog_reference(policy: Policy) -> str:
    """What to write for ``catalog:``: a built-in id, else the catalog file's absolute path."""
    builtin = {c.id: c for c in builtin_catalogs()}
    if builtin.get(policy.catalog.id) is policy.catalog:
        return policy.catalog.id
    return str(Path(policy.catalog.path).resolve())


def render_yaml(s: Suggestion, data: LearnData, policy: Policy, name: str = "learned", generated: str = "") -> str:
    """The suggested policy file, every rule line with its evidence as a comment."""
    out = [
        f"# Suggested by 'azml-egress learn suggest'{' on ' + generated if generated else ''} from "
        f"{len(data.files)} learn file(s): {_c(', '.join(data.files))}",
        f"# Learned {data.started} to {data.updated}; {len(data.hosts)} (host, port, protocol) entries; "
        f"policy for catalog and workspace: {_c(policy.name)} ({_c(policy.source)}).",
        "# Every rule allows what was seen: the hosts and the (protocol, port) pairs listed in its comments.",
        "# Review it, then: azml-egress validate --config THIS_FILE; azml-egress run --config THIS_FILE",
    ]
    if data.overflow and data.overflow.count:
        out.append(f"# WARNING: {data.overflow.count} decisions for hosts beyond the learn file's bound "
                   f"({data.max_hosts} hosts) were only counted; their hosts are missing here.")
    for record, why in s.skipped:
        out.append(f"# not suggested: {_c(record.host)}:{record.port} ({record.protocol}): {_c(why)}")
    out += ["version: 1", f"name: {_q(name)}", "mode: enforce", f"catalog: {_q(catalog_reference(policy))}"]
    if policy.workspace:
        out.append("workspace:")
        out.extend(f"  {key}: {_q(value)}" for key, value in sorted(policy.workspace.items()))
    if policy.options:
        out.append("options:")
        for key, value in policy.options.items():
            if isinstance(value, list):
                out.append(f"  {key}: [{', '.join(_q(str(v)) for v in value)}]")
            else:
                out.append(f"  {key}: {_q(str(value))}")
    out.append("rule_collections:" if s.collections else "rule_collections: []")
    for i, (cname, rules) in enumerate(s.collections.items()):
        out += [f"  # {_c(s.titles.get(cname, cname))}", f"  - name: {_q(cname)}",
                f"    priority: {100 + 10 * i}", "    action: allow", "    rules:"]
        for rule in rules:
            if len(rule.evidence) > 1 or rule.evidence[0].host != rule.target:
                for r in rule.evidence:
                    out.append(f"      # seen {_c(r.host)} {r.protocol}:{r.port}: {evidence_text([r])}")
            what = f"feature {rule.feature}" if rule.feature else "no Azure ML feature"
            if rule.feature and rule.catalog_pattern:
                what += f", catalog pattern {rule.target}"
            if not rule.is_address and any("public suffix" in w for w in pattern_warnings(parse_pattern(rule.target))):
                what += " (a wildcard over a public suffix, as the catalog documents it; --exact lists the hosts)"
            hosts = len({r.host for r in rule.evidence})
            seen = f"{hosts} host{'s' if hosts != 1 else ''}, {evidence_text(rule.evidence)}"
            key = "destination_addresses" if rule.is_address else "target_fqdns"
            out += [f"      - name: {_q(rule.name)}  # {_c(what)}",
                    f"        {key}: [{_q(rule.target)}]  # {_c(seen)}",
                    f"        protocols: [{', '.join(_q(p) for p in rule.protocols)}]  # as seen"]
            feature = policy.feature(rule.feature)
            if feature is not None:
                out.append(f"        feature: {_q(feature.id)}  # {_c(feature.title)}")
    return "\n".join(out) + "\n"

