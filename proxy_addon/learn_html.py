"""The learn report as one self-contained HTML page (no scripts, no external files).

Sections (each an ``<section id=...>``): ``summary`` (counts), ``gaps`` (hosts
used but not allowed, one table per feature), ``mismatches``, ``traffic`` (an
inline SVG bar chart of tunnelled bytes per feature, or requests when no bytes
were counted), ``unused-rules``, ``features``, ``required-unseen`` and
``hosts`` (every host, one table per feature). Every text that reaches the page
goes through :func:`html.escape`: host names come from the network.
"""

from __future__ import annotations

import html

from .learn_report import HOST_HEADERS, Analysis, FeatureUse, HostUse, _host_row, human_bytes, summary

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;color:#1b1f23}
h1{margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:2px solid #e1e4e8;padding-bottom:.2rem}
h3{margin:1.2rem 0 .4rem;font-size:1rem}
.muted{color:#586069}
.cards{display:flex;flex-wrap:wrap;gap:.8rem;margin:1rem 0}
.card{border:1px solid #e1e4e8;border-radius:6px;padding:.5rem .9rem;min-width:8rem}
.card b{display:block;font-size:1.6rem}
.card.bad b{color:#b31d28}.card.good b{color:#22863a}
table{border-collapse:collapse;width:100%;margin-bottom:.8rem}
th,td{border:1px solid #e1e4e8;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.host{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;word-break:break-all}
.deny{color:#b31d28;font-weight:600}.allow{color:#22863a}
.none{color:#586069;font-style:italic}
svg text{font:12px system-ui,sans-serif}
"""


def e(text: object) -> str:
    """Escape anything for HTML text or attribute values."""
    return html.escape(str(text), quote=True)


def _table(headers: list[str], rows: list[list[object]], cls: str = "", numeric: tuple[int, ...] = (),
           host_col: int | None = None) -> str:
    if not rows:
        return '<p class="none">none</p>'
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            klass = "num" if i in numeric else ("host" if i == host_col else "")
            if str(cell) in ("allow", "deny") and headers[i] == "action":
                klass = str(cell)
            cells.append(f'<td class="{klass}">{e(cell)}</td>' if klass else f"<td>{e(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    attr = f' class="{e(cls)}"' if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _host_tables(a: Analysis, uses: list[HostUse], with_action: bool) -> str:
    parts = []
    headers = (["action"] if with_action else []) + HOST_HEADERS
    offset = 1 if with_action else 0
    for fid, group in a.grouped(uses):
        label = a.feature_label(fid)
        note = ""
        if fid is not None and fid not in a.policy.enabled_features:
            note = ' <span class="muted">(not enabled in this policy)</span>'
        rows = [([u.decision.action.value] if with_action else []) + _host_row(u) for u in group]
        parts.append(f"<h3>{e(label)}{note} <span class=\"muted\">{len(group)}</span></h3>")
        parts.append(_table(headers, rows, "hosts", numeric=(offset + 3, offset + 4), host_col=offset))
    return "".join(parts) or '<p class="none">none</p>'


def bar_chart(features: list[FeatureUse], width: int = 720) -> str:
    """An inline SVG bar chart of bytes per feature (requests when no bytes were counted)."""
    if not features:
        return '<p class="none">no traffic</p>'
    use_bytes = any(f.bytes for f in features)
    values = [(f.id or "other hosts", f.title, f.bytes if use_bytes else f.requests) for f in features]
    top = max(v for _, _, v in values) or 1
    label_w, bar_h, gap = 210, 18, 6
    bar_w = width - label_w - 110
    height = len(values) * (bar_h + gap) + gap
    rows = []
    for i, (name, title, value) in enumerate(values):
        y = gap + i * (bar_h + gap)
        w = max(1, round(bar_w * value / top)) if value else 0
        shown = human_bytes(value) if use_bytes else f"{value} requests"
        rows.append(
            f'<g><title>{e(title)}: {e(shown)}</title>'
            f'<text x="{label_w - 8}" y="{y + 13}" text-anchor="end">{e(name)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w}" height="{bar_h}" fill="{"#0366d6" if name != "other hosts" else "#959da5"}"/>'
            f'<text x="{label_w + w + 6}" y="{y + 13}">{e(shown)}</text></g>'
        )
    unit = "tunnelled bytes" if use_bytes else "requests"
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{e(unit)} per feature" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">{"".join(rows)}</svg>')


def _card(label: str, value: object, cls: str = "") -> str:
    return f'<div class="card {e(cls)}"><b>{e(value)}</b>{e(label)}</div>'


def to_html(a: Analysis) -> str:
    """The whole page as a string."""
    t = a.totals
    cards = "".join([
        _card("hosts seen", t["hosts"]), _card("requests", t["requests"]), _card("tunnelled", human_bytes(t["bytes"])),
        _card("not allowed", t["gaps"], "bad" if t["gaps"] else "good"),
        _card("unused rules", f"{t['unused_rules']} / {t['rules']}"),
        _card("features exercised", sum(1 for f in a.features if f.id)),
    ])
    overflow = ""
    if a.overflow:
        overflow = (f'<p class="deny">{e(a.overflow.count)} decisions for hosts beyond the bound of '
                    f"{e(a.data.max_hosts)} hosts were only counted, not listed.</p>")
    unused_rows = [[r.group, r.collection, r.rule, r.action, ", ".join(r.targets), r.feature or ""]
                   for r in a.unused_rules]
    feature_rows = [[f.id or "-", f.title, f.group, "" if f.enabled is None else ("yes" if f.enabled else "no"),
                     f.hosts, f.requests, human_bytes(f.bytes)] for f in a.features]
    mismatch_rows = [[f"{u.record.host}:{u.record.port}", u.record.protocol, ", ".join(u.mismatch_reasons)]
                     for u in a.mismatches]
    sections = [
        f'<section id="summary"><div class="cards">{cards}</div>{overflow}</section>',
        f'<section id="gaps"><h2>Used but not allowed by the policy ({len(a.gaps)})</h2>'
        f'<p class="muted">What would be denied under enforce.</p>{_host_tables(a, a.gaps, False)}</section>',
    ]
    if a.mismatches:
        sections.append(f'<section id="mismatches"><h2>Denied whatever the host rules say ({len(a.mismatches)})</h2>'
                        f'{_table(["host", "protocol", "reasons"], mismatch_rows, "mismatches", host_col=0)}</section>')
    sections += [
        f'<section id="traffic"><h2>Traffic per feature</h2>{bar_chart(a.features)}</section>',
        f'<section id="unused-rules"><h2>Rules nothing used ({len(a.unused_rules)} of {t["rules"]})</h2>'
        f'<p class="muted">Candidates to remove.</p>'
        f'{_table(["group", "collection", "rule", "action", "targets", "feature"], unused_rows, "unused-rules")}'
        "</section>",
        f'<section id="features"><h2>Features exercised</h2>'
        f'{_table(["feature", "title", "group", "enabled", "hosts", "requests", "bytes"], feature_rows, "features", numeric=(4, 5, 6))}'
        "</section>",
        f'<section id="required-unseen"><h2>Required features never seen ({len(a.required_unseen)})</h2>'
        f'{_table(["feature", "title", "group"], [[f.id, f.title, f.group] for f in a.required_unseen], "required-unseen")}'
        "</section>",
        f'<section id="hosts"><h2>All hosts seen ({len(a.hosts)})</h2>{_host_tables(a, a.hosts, True)}</section>',
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>azml-egress learn report: {e(a.policy.name)}</title><style>{CSS}</style></head><body>"
        f"<h1>Learn report</h1><p class=\"muted\">{e(summary(a))}<br>Policy <b>{e(a.policy.name)}</b> "
        f"({e(a.policy.source)}), catalog {e(a.policy.catalog.id)}</p>"
        + "".join(sections) + "</body></html>\n"
    )
