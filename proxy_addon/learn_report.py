"""What a learning run tells about a policy: the gap, unused rules, features.

:func:`analyse` replays every learned (host, port, protocol) against a policy
(``Policy.decide`` for each recorded client address, so source-address rules
count) and returns an :class:`Analysis`:

* ``gaps``: hosts used but not allowed - what would break under enforce -
  each with its Azure ML feature or "not an Azure ML host";
* ``mismatches``: hosts whose traffic was denied whatever the host rules say
  (SNI or Host header naming another host, no SNI, invalid host names,
  names resolving to private addresses);
* ``unused_rules``: rules no learned traffic matched (candidates to remove);
* ``features``: the Azure ML features exercised, with hosts, requests, bytes;
* ``required_unseen``: required features of the policy's catalog never seen.

Renderers for text, Markdown and JSON live here, HTML in
:mod:`proxy_addon.learn_html`. Pure: no mitmproxy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .catalog import Feature
from .decision import Decision, Reason
from .learnfile import HostRecord, LearnData, Overflow
from .policy import Policy

MISMATCH_REASONS = ("sni_mismatch", "host_mismatch", "sni_missing", "invalid_host", "private_address")
"""Recorded reasons no host rule can turn into an allow (``private_address``
needs ``options.private_ranges_allowed``)."""
NOT_AZURE_ML = "not an Azure ML host"


@dataclass
class HostUse:
    """One learned entry and the policy's decision for it (the first deny over
    its recorded clients, else the allow)."""

    record: HostRecord
    decision: Decision

    @property
    def allowed(self) -> bool:
        return self.decision.allowed

    @property
    def feature(self) -> str | None:
        return self.decision.feature or self.record.feature

    @property
    def mismatch_reasons(self) -> list[str]:
        return [r for r in MISMATCH_REASONS if self.record.reasons.get(r)]


@dataclass
class FeatureUse:
    """Traffic of one feature (``id`` ``None``: hosts no catalog knows)."""

    id: str | None
    title: str
    group: str
    enabled: bool | None
    hosts: int = 0
    requests: int = 0
    bytes: int = 0
    allowed_hosts: int = 0


@dataclass(frozen=True)
class UnusedRule:
    group: str
    collection: str
    rule: str
    action: str
    targets: tuple[str, ...]
    feature: str | None


@dataclass
class Analysis:
    policy: Policy
    data: LearnData
    hosts: list[HostUse]
    gaps: list[HostUse]
    mismatches: list[HostUse]
    unused_rules: list[UnusedRule]
    features: list[FeatureUse]
    required_unseen: list[Feature]
    totals: dict[str, int] = field(default_factory=dict)

    @property
    def overflow(self) -> Overflow | None:
        return self.data.overflow

    def feature_label(self, feature_id: str | None) -> str:
        """``"pip package downloads (pip-downloads, Python)"`` or ``"not an Azure ML host"``."""
        feature = self.policy.feature(feature_id)
        if feature is None:
            return NOT_AZURE_ML if feature_id is None else feature_id
        return f"{feature.title} ({feature.id}, {feature.group})"

    def grouped(self, uses: list[HostUse]) -> list[tuple[str | None, list[HostUse]]]:
        """``uses`` grouped by feature: Azure ML features in catalog order, then other hosts."""
        order = {f.id: i for i, f in enumerate(self.policy.features_by_id.values())}
        groups: dict[str | None, list[HostUse]] = {}
        for use in uses:
            groups.setdefault(use.feature, []).append(use)
        return sorted(groups.items(), key=lambda kv: (kv[0] is None, order.get(kv[0], len(order)), kv[0] or ""))


def decide(policy: Policy, record: HostRecord) -> Decision:
    """The policy's decision for ``record``: the first deny over its recorded
    clients (any client when none is recorded), else the allow."""
    decisions = [policy.decide(record.host, record.port, record.protocol, client) for client in record.clients or [None]]
    return next((d for d in decisions if not d.allowed), decisions[0])


def analyse(data: LearnData, policy: Policy) -> Analysis:
    """Replay ``data`` against ``policy``; see the module docstring."""
    hosts = [HostUse(record, decide(policy, record)) for record in data.hosts.values()]
    used_rules: set[tuple[str | None, str | None, str | None]] = set()
    features: dict[str | None, FeatureUse] = {}
    for use in hosts:
        d = use.decision
        if d.reason in (Reason.RULE_MATCHED, Reason.DENY_RULE):
            used_rules.add((d.rule_collection_group, d.rule_collection, d.rule))
        feature = policy.feature(use.feature)
        fid = feature.id if feature else None
        fu = features.get(fid)
        if fu is None:
            fu = features[fid] = FeatureUse(
                fid, feature.title if feature else NOT_AZURE_ML, feature.group if feature else "",
                (fid in policy.enabled_features) if feature else None)
        fu.hosts += 1
        fu.requests += use.record.count
        fu.bytes += use.record.bytes_total
        fu.allowed_hosts += int(use.allowed)
    unused = [
        UnusedRule(p.group.name, p.collection.name, p.rule.name, p.collection.action.value,
                   tuple(str(t) for t in p.rule.target_fqdns) + tuple(str(n) for n in p.rule.destination_addresses),
                   p.rule.feature)
        for p in policy.placements() if (p.group.name, p.collection.name, p.rule.name) not in used_rules
    ]
    seen_features = {fid for fid in features if fid}
    required_unseen = [f for f in policy.catalog.features if f.required and f.id not in seen_features]
    gaps = [u for u in hosts if not u.allowed]
    mismatches = [u for u in hosts if u.mismatch_reasons]
    totals = {
        "hosts": len(hosts), "requests": sum(u.record.count for u in hosts),
        "bytes": sum(u.record.bytes_total for u in hosts), "gaps": len(gaps),
        "unused_rules": len(unused), "rules": policy.rule_count,
    }
    ordered = sorted(features.values(), key=lambda f: (f.id is None, -f.bytes, -f.requests, f.id or ""))
    return Analysis(policy, data, hosts, gaps, mismatches, unused, ordered, required_unseen, totals)


# -- renderers ------------------------------------------------------------------

def human_bytes(n: int) -> str:
    """``1536`` -> ``"1.5 kB"`` (decimal units)."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"  # pragma: no cover


def target(record: HostRecord) -> str:
    host = f"[{record.host}]" if ":" in record.host else record.host
    return f"{host}:{record.port}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def summary(a: Analysis) -> str:
    t = a.totals
    span = f", {a.data.started} to {a.data.updated}" if a.data.started else ""
    return (f"{_plural(len(a.data.files), 'learn file')}: {_plural(t['hosts'], 'host')}, "
            f"{_plural(t['requests'], 'request')}, {human_bytes(t['bytes'])} tunnelled{span}")


def host_dict(use: HostUse) -> dict[str, Any]:
    r, d = use.record, use.decision
    return {
        "host": r.host, "port": r.port, "protocol": r.protocol, "count": r.count, "first_seen": r.first_seen,
        "last_seen": r.last_seen, "bytes_sent": r.bytes_sent, "bytes_received": r.bytes_received,
        "clients": list(r.clients), "feature": use.feature, "catalog_pattern": d.catalog_pattern or r.catalog_pattern,
        "action": d.action.value, "reason": d.reason.value, "rule": d.rule, "rule_collection": d.rule_collection,
        "recorded_reasons": dict(r.reasons),
    }


def to_json(a: Analysis) -> dict[str, Any]:
    """The analysis as JSON-able data."""
    return {
        "policy": {"name": a.policy.name, "source": a.policy.source, "catalog": a.policy.catalog.id},
        "files": list(a.data.files), "started": a.data.started, "updated": a.data.updated,
        "totals": dict(a.totals),
        "gaps": [host_dict(u) for u in a.gaps],
        "mismatches": [host_dict(u) for u in a.mismatches],
        "unused_rules": [asdict(r) | {"targets": list(r.targets)} for r in a.unused_rules],
        "features": [asdict(f) for f in a.features],
        "required_unseen": [{"id": f.id, "title": f.title, "group": f.group} for f in a.required_unseen],
        "hosts": [host_dict(u) for u in a.hosts],
        "overflow": asdict(a.overflow) if a.overflow else None,
    }


def _host_line(use: HostUse) -> str:
    r = use.record
    return (f"{target(r)} {r.protocol}  {use.decision.reason.value}  {_plural(r.count, 'request')}  "
            f"{human_bytes(r.bytes_total)}  first {r.first_seen}  last {r.last_seen}")


def to_text(a: Analysis) -> str:
    """A plain-text report for a terminal."""
    out = [f"Learn report: {summary(a)}", f"Policy: {a.policy.name} ({a.policy.source})", ""]
    out.append(f"Used but not allowed by the policy (denied under enforce): {len(a.gaps)}")
    for fid, uses in a.grouped(a.gaps):
        enabled = "" if fid is None or fid in a.policy.enabled_features else " - feature not enabled in this policy"
        out.append(f"  {a.feature_label(fid)}{enabled}")
        out.extend(f"    {_host_line(u)}" for u in uses)
    if a.mismatches:
        out += ["", f"Denied whatever the host rules say: {len(a.mismatches)}"]
        out.extend(f"  {target(u.record)} {u.record.protocol}  {', '.join(u.mismatch_reasons)}" for u in a.mismatches)
    out += ["", f"Rules nothing used (candidates to remove): {len(a.unused_rules)} of {a.totals['rules']}"]
    for r in a.unused_rules:
        feature = f"  feature {r.feature}" if r.feature else ""
        out.append(f"  {r.group} / {r.collection} / {r.rule} ({r.action}): {', '.join(r.targets)}{feature}")
    out += ["", f"Features exercised: {sum(1 for f in a.features if f.id)}"]
    for f in a.features:
        state = "" if f.enabled is None else ("  enabled" if f.enabled else "  not enabled")
        out.append(f"  {f.id or '-'}  {f.title}{' (' + f.group + ')' if f.group else ''}: "
                   f"{_plural(f.hosts, 'host')}, {_plural(f.requests, 'request')}, {human_bytes(f.bytes)}{state}")
    out += ["", f"Required features of catalog {a.policy.catalog.id} never seen: {len(a.required_unseen)}"]
    out.extend(f"  {f.id}  {f.title} ({f.group})" for f in a.required_unseen)
    out += ["", "All hosts seen:"]
    for fid, uses in a.grouped(a.hosts):
        out.append(f"  {a.feature_label(fid)}")
        out.extend(f"    {'ALLOW' if u.allowed else 'DENY '} {_host_line(u)}" for u in uses)
    if a.overflow:
        out += ["", f"Overflow: {_plural(a.overflow.count, 'decision')} for hosts beyond the learn file's bound "
                    f"({a.data.max_hosts} hosts) were only counted"]
    return "\n".join(out) + "\n"


def md(text: object) -> str:
    """``text`` safe inside a Markdown table cell (no HTML, no cell breaks)."""
    s = str(text)
    for ch, rep in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|"), ("`", "\\`"), ("*", "\\*"),
                    ("_", "\\_"), ("[", "\\["), ("]", "\\]"), ("\n", " "), ("\r", " ")):
        s = s.replace(ch, rep)
    return s


def _md_table(headers: list[str], rows: list[list[object]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out.extend("| " + " | ".join(md(c) for c in row) + " |" for row in rows)
    return out + [""]


def _host_row(u: HostUse) -> list[object]:
    r = u.record
    return [target(r), r.protocol, u.decision.reason.value, r.count, human_bytes(r.bytes_total), r.first_seen,
            r.last_seen]


HOST_HEADERS = ["host", "protocol", "reason", "requests", "bytes", "first seen", "last seen"]


def to_markdown(a: Analysis) -> str:
    """A Markdown report (GitHub tables)."""
    out = ["# Learn report", "", md(summary(a)), "", f"Policy: **{md(a.policy.name)}** ({md(a.policy.source)})", ""]
    out += [f"## Used but not allowed by the policy ({len(a.gaps)})", ""]
    for fid, uses in a.grouped(a.gaps):
        out += [f"### {md(a.feature_label(fid))}", ""] + _md_table(HOST_HEADERS, [_host_row(u) for u in uses])
    if a.mismatches:
        out += [f"## Denied whatever the host rules say ({len(a.mismatches)})", ""]
        out += _md_table(["host", "protocol", "reasons"],
                         [[target(u.record), u.record.protocol, ", ".join(u.mismatch_reasons)] for u in a.mismatches])
    out += [f"## Rules nothing used ({len(a.unused_rules)} of {a.totals['rules']})", ""]
    out += _md_table(["group", "collection", "rule", "action", "targets", "feature"],
                     [[r.group, r.collection, r.rule, r.action, ", ".join(r.targets), r.feature or ""]
                      for r in a.unused_rules])
    out += [f"## Features exercised ({sum(1 for f in a.features if f.id)})", ""]
    out += _md_table(["feature", "title", "group", "enabled", "hosts", "requests", "bytes"],
                     [[f.id or "-", f.title, f.group, "" if f.enabled is None else ("yes" if f.enabled else "no"),
                       f.hosts, f.requests, human_bytes(f.bytes)] for f in a.features])
    out += [f"## Required features never seen ({len(a.required_unseen)})", ""]
    out += _md_table(["feature", "title", "group"], [[f.id, f.title, f.group] for f in a.required_unseen])
    out += [f"## All hosts seen ({len(a.hosts)})", ""]
    for fid, uses in a.grouped(a.hosts):
        out += [f"### {md(a.feature_label(fid))}", ""]
        out += _md_table(["action"] + HOST_HEADERS, [[u.decision.action.value] + _host_row(u) for u in uses])
    if a.overflow:
        out += [f"Overflow: {a.overflow.count} decisions for hosts beyond {a.data.max_hosts} were only counted.", ""]
    return "\n".join(out)
