"""Smoke tests of benchmarks/: the scripts run and their figures are well formed.

No timing assertions: these only prove that the in-process and loopback
benchmarks work (tiny counts, a few seconds) and that the report is right.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import inprocess  # noqa: E402
import loopback  # noqa: E402
import report  # noqa: E402
import targets  # noqa: E402
import workloads  # noqa: E402

from proxy_addon.policy_loader import policy_from_text  # noqa: E402


def test_generated_policy_has_the_asked_rules_with_azure_semantics():
    policy = policy_from_text(inprocess.policy_yaml(300))
    generated = sum(len(c.rules) for g in policy.groups for c in g.rule_collections
                    if g.name == "DefaultApplicationRuleCollectionGroup")
    assert generated == 300
    assert policy.decide("host-0.corp0.example", 443).rule == "r0"
    assert policy.decide("a.b.svc-1.example", 443).rule == "r1"
    assert not policy.decide("svc-1.example", 443).allowed  # '*.x' never matches x itself
    assert not policy.decide("host-0.corp0.example", 80).allowed  # rules are https:443 only


@pytest.mark.parametrize("unique", [False, True], ids=["repeating hosts", "unique spellings"])
def test_query_mix(unique):
    hosts = inprocess.queries(1000, 3000, random.Random(7), unique)
    policy = policy_from_text(inprocess.policy_yaml(1000))
    allowed = sum(policy.decide(h, 443).allowed for h in hosts) / len(hosts)
    assert 0.6 < allowed < 0.8  # 40 % exact + 30 % wildcard hits
    assert (len(set(hosts)) == len(hosts)) is unique


def test_inprocess_run_reports_every_size():
    results = inprocess.run((100, 500), seconds=0.05)
    assert [r.rules for r in results] == [100, 500]
    for r in results:
        assert r.load_seconds > 0 and r.cached_per_second > r.uncached_per_second > 0
        assert 0.6 < r.allowed_share < 0.8


def test_report_ratios_are_per_repetition_and_targets_are_judged():
    data = {
        "machine": {"cpu": "x", "cores": 2, "kernel": "k", "python": "3", "mitmproxy": "11", "azml-egress": "0",
                    "squid": "none", "load_before": (0.1, 0.1, 0.1), "load_after": (0.2, 0.2, 0.2), "seconds": 1},
        "loopback": {"scale": vars(loopback.Scale(reps=2)), "failures": {}, "notes": [], "values": {
            "tunnel_cpu_ms": {"mitmdump": [2.0, 4.0], "azml-egress": [1.0, 3.0]},
            "denied_cpu_ms": {"mitmdump-deny": [1.0, 1.0], "azml-egress": [0.5, 0.5]},
            "bulk_MB_per_s": {"mitmdump": [100.0, 100.0], "azml-egress": [99.0, 90.0]},
        }},
    }
    text = report.render(data)
    assert "| proxy CPU ms per tunnel | 3.00 [2.00-4.00] | 2.00 [1.00-3.00] | 0.62x [0.50-0.75] |" in text
    assert "| CPU per allowed tunnel <= 0.6x mitmdump | 0.625 [0.50-0.75] | MISS |" in text
    assert "| CPU per denied CONNECT <= 0.4x mitmdump's per tunnel | 0.188 [0.12-0.25] | PASS |" in text
    assert "| bulk throughput >= 0.95x mitmdump | 0.945 [0.90-0.99] | MISS |" in text
    assert "1.00 [1.00-1.00] (script)" in text  # the deny baseline is labelled


def test_interception_fails_the_run(tmp_path):
    """A proxy that intercepts TLS (mitmdump without --ignore-hosts) must stop the benchmark."""

    class Intercepting(targets.Mitmdump):
        def command(self, port):
            return targets.MITMDUMP + ["-q", "--listen-host", "127.0.0.1", "--listen-port", str(port),
                                       "--set", f"confdir={tmp_path / 'confdir'}"]

    async def main():
        ca, cert, key = loopback._pki(tmp_path)
        upstream = subprocess.Popen([sys.executable, str(BENCH / "upstream.py"), cert, key],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        tls_port, http_port = map(int, upstream.stdout.readline().split())
        target = Intercepting("intercepting", tmp_path, tls_port, http_port)
        target.start()
        try:
            target.wait_listening()
            context = workloads.client_context(ca)
            await workloads.one_tunnel(None, tls_port, context)  # direct works
            with pytest.raises(workloads.Intercepted):
                await workloads.one_tunnel(target.proxies[0], tls_port, context)
        finally:
            target.stop()
            upstream.stdin.close()
            upstream.wait(10)
            upstream.stdout.close()

    asyncio.run(main())


def test_tiny_loopback_run_prints_the_table(tmp_path):
    names = ["direct", "mitmdump", "mitmdump-deny", "azml-egress"] + (["squid"] if shutil.which("squid") else [])
    out = tmp_path / "results.json"
    done = subprocess.run([sys.executable, str(BENCH / "run.py"), "--quick", "--only", "loopback", "--targets",
                           ",".join(names), "--json", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "| proxy CPU ms per tunnel |" in done.stdout
    assert "| CPU per allowed tunnel <= 0.6x mitmdump |" in done.stdout
    data = json.loads(out.read_text())
    values = data["loopback"]["values"]
    assert data["loopback"]["failures"] == {}
    for metric in ("tunnel_per_s", "latency_p50_ms", "bulk_MB_per_s", "http_per_s"):
        assert set(values[metric]) >= {"direct", "azml-egress", "mitmdump"}
    assert set(values["denied_cpu_ms"]) >= {"azml-egress", "mitmdump-deny"}
    assert values["start_to_first_tunnel_s"]["azml-egress"][0] > 0
    assert any("(exactly one per decision)" in note for note in data["loopback"]["notes"])
