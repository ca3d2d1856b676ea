"""Render benchmark results as Markdown tables: medians with spread, ratios, targets.

Every loopback value is the median over repetitions with ``[min-max]``;
a ratio is computed per repetition (both figures measured back to back) and
its median and spread are shown.
"""

from __future__ import annotations

import statistics

SUBJECT = "azml-egress"
COLUMNS = ["direct", "mitmdump", "azml-egress", "azml-egress-mitmdump", "core-floor", "squid"]
METRICS = [
    ("tunnel_per_s", "tunnels/s (CONNECT+TLS+GET, concurrent)", "higher"),
    ("tunnel_cpu_ms", "proxy CPU ms per tunnel", "lower"),
    ("latency_p50_ms", "sequential tunnel p50 ms", "lower"),
    ("latency_p99_ms", "sequential tunnel p99 ms", "lower"),
    ("bulk_MB_per_s", "bulk MB/s through one tunnel", "higher"),
    ("denied_per_s", "denied CONNECTs/s", "higher"),
    ("denied_cpu_ms", "proxy CPU ms per denied CONNECT", "lower"),
    ("http_per_s", "plain-HTTP requests/s (keep-alive)", "higher"),
    ("http_cpu_ms", "proxy CPU ms per plain-HTTP request", "lower"),
    ("rss_base_MiB", "RSS at start, MiB", "lower"),
    ("rss_per_idle_tunnel_KiB", "RSS per idle tunnel, KiB", "lower"),
    ("start_to_first_tunnel_s", "start to first working tunnel, s", "lower"),
]
DENY_BASELINE = "mitmdump-deny"


def _fmt(x: float) -> str:
    if x >= 1000:
        return f"{x:,.0f}"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return _fmt(med)
    return f"{_fmt(med)} [{_fmt(min(values))}-{_fmt(max(values))}]"


def ratios(a: list[float], b: list[float]) -> list[float]:
    return [x / y for x, y in zip(a, b) if y]


def ratio_text(a: list[float], b: list[float]) -> str:
    r = ratios(a, b)
    if not r:
        return "-"
    med = statistics.median(r)
    return f"{med:.2f}x" if len(r) == 1 else f"{med:.2f}x [{min(r):.2f}-{max(r):.2f}]"


def loopback_table(values: dict[str, dict[str, list[float]]]) -> list[str]:
    present = [c for c in COLUMNS if any(c in v for v in values.values())]
    baselines = [b for b in ("direct", "mitmdump", "squid") if b in present]
    head = ["metric", *present, *(f"{SUBJECT} / {b}" for b in baselines)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label, _ in METRICS:
        row = values.get(key, {})
        if not row:
            continue
        cells = [spread(row.get(c, [])) for c in present]
        if key.startswith("denied") and DENY_BASELINE in row:
            cells[present.index("mitmdump")] = spread(row[DENY_BASELINE]) + " (script)"
        rats = []
        for b in baselines:
            base = row.get(DENY_BASELINE if key.startswith("denied") and b == "mitmdump" else b, [])
            rats.append(ratio_text(row.get(SUBJECT, []), base))
        lines.append("| " + " | ".join([label, *cells, *rats]) + " |")
    return lines


def targets(data: dict) -> list[str]:
    """The issue's targets, each with its measured ratio and PASS/MISS."""
    out = ["| target | measured | result |", "|---|---|---|"]
    v = data.get("loopback", {}).get("values", {})

    def med(metric: str, target: str) -> list[float]:
        return v.get(metric, {}).get(target, [])

    def check(label: str, r: list[float], limit: float, higher: bool) -> None:
        if not r:
            return
        m = statistics.median(r)
        ok = m >= limit if higher else m <= limit
        out.append(f"| {label} | {m:.3f} [{min(r):.2f}-{max(r):.2f}] | {'PASS' if ok else 'MISS'} |")

    check("CPU per allowed tunnel <= 0.6x mitmdump", ratios(med("tunnel_cpu_ms", SUBJECT), med("tunnel_cpu_ms", "mitmdump")), 0.6, False)
    check("CPU per denied CONNECT <= 0.4x mitmdump's per tunnel",
          ratios(med("denied_cpu_ms", SUBJECT), med("tunnel_cpu_ms", "mitmdump")), 0.4, False)
    check("bulk throughput >= 0.95x mitmdump", ratios(med("bulk_MB_per_s", SUBJECT), med("bulk_MB_per_s", "mitmdump")), 0.95, True)
    check("RSS per idle tunnel <= 1.2x mitmdump",
          ratios(med("rss_per_idle_tunnel_KiB", SUBJECT), med("rss_per_idle_tunnel_KiB", "mitmdump")), 1.2, False)
    check("start to first tunnel <= 1.5 s", med("start_to_first_tunnel_s", SUBJECT), 1.5, False)
    def info(label: str, r: list[float]) -> None:
        if r:
            out.append(f"| (info) {label} | {statistics.median(r):.2f} [{min(r):.2f}-{max(r):.2f}] | - |")

    info("CPU per tunnel, azml-egress run / the same addon in mitmdump -s",
         ratios(med("tunnel_cpu_ms", SUBJECT), med("tunnel_cpu_ms", "azml-egress-mitmdump")))
    info("CPU per tunnel, mitmproxy core floor / mitmdump",
         ratios(med("tunnel_cpu_ms", "core-floor"), med("tunnel_cpu_ms", "mitmdump")))
    info("tunnels/s, 2 azml-egress processes / 1", ratios(med("tunnel_per_s", "azml-egress-x2"), med("tunnel_per_s", SUBJECT)))
    info("CPU per tunnel, 2 azml-egress processes / 1",
         ratios(med("tunnel_cpu_ms", "azml-egress-x2"), med("tunnel_cpu_ms", SUBJECT)))
    rows = {r["rules"]: r for r in data.get("inprocess", [])}
    if rows:
        small, large = rows[min(rows)], rows[max(rows)]
        for kind in ("cached", "uncached"):
            check(f"{kind} decisions/s at {large['rules']:,} rules >= 0.8x at {small['rules']:,}",
                  [large[f"{kind}_per_second"] / small[f"{kind}_per_second"]], 0.8, True)
        for kind in ("cached", "uncached"):
            rate = large[f"{kind}_per_second"]
            out.append(f"| {kind} decisions/s at {large['rules']:,} rules >= 300,000 | {rate:,.0f} | "
                       f"{'PASS' if rate >= 300_000 else 'MISS'} |")
    return out


def render(data: dict) -> str:
    m = data["machine"]
    lines = [f"machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}; Python {m['python']}, "
             f"mitmproxy {m['mitmproxy']}, azml-egress {m['azml-egress']}, {m['squid']}",
             f"load average before {tuple(round(x, 2) for x in m['load_before'])}, "
             f"after {tuple(round(x, 2) for x in m.get('load_after', ()))}; {m.get('seconds', '?')} s", ""]
    if data.get("inprocess"):
        lines += ["| rules | policy load s | cached decisions/s | uncached decisions/s |", "|---|---|---|---|"]
        for r in data["inprocess"]:
            lines.append(f"| {r['rules']:,} | {r['load_seconds']:.2f} | {r['cached_per_second']:,.0f} | "
                         f"{r['uncached_per_second']:,.0f} |")
        lines.append("")
    if data.get("loopback"):
        lb = data["loopback"]
        s = lb["scale"]
        reps = max((len(v) for row in lb["values"].values() for v in row.values()), default=0)
        lines += [f"loopback: median [min-max] of {reps} repetitions; {s['tunnels']} tunnels and "
                  f"{s['denied']} denied CONNECTs with {s['concurrency']} concurrent clients, {s['latency']} sequential "
                  f"tunnels, {s['bulk_mib']} MiB bulk (best of {s.get('bulk_tries', 1)}), {s['http']} plain-HTTP "
                  f"requests, {s['idle']} idle tunnels", ""]
        lines += loopback_table(lb["values"]) + [""]
        for name, n in lb["failures"].items():
            lines.append(f"failures: {name}: {n}")
        lines += [f"note: {n}" for n in lb["notes"]]
        lines.append("")
    lines += targets(data)
    return "\n".join(lines)
