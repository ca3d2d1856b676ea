"""Loopback benchmarks: every proxy side by side, interleaved in each repetition.

Per repetition, for each workload, every target runs in turn (the order
rotates with the repetition, so background noise hits them alike):

* ``tunnels``: N tunnels (CONNECT + verified TLS + small GET) with C concurrent
  clients: rate and proxy CPU per tunnel;
* ``latency``: sequential tunnels: p50 and p99;
* ``bulk``: a download of S MiB through one tunnel, best of T tries: MB/s;
* ``denied``: N refused CONNECTs with C concurrent clients: rate and CPU each;
* ``http``: N proxied plain-HTTP GETs over C keep-alive connections;
* ``fresh``: a new process: seconds from exec to the first working tunnel,
  then RSS growth with K idle tunnels open.

Only 127.0.0.1 is contacted; every load is bounded in count.
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import trustme

import workloads as w
from targets import HERE, Target, make_targets


@dataclass
class Scale:
    tunnels: int = 1500
    concurrency: int = 50
    latency: int = 200
    bulk_mib: int = 256
    bulk_tries: int = 2
    denied: int = 1500
    http: int = 1500
    idle: int = 1000
    reps: int = 5
    budget_s: float = 420.0
    """No repetition starts that would end after this many seconds (estimated from the last one)."""


QUICK = Scale(tunnels=40, concurrency=10, latency=5, bulk_mib=2, bulk_tries=1, denied=40, http=40, idle=20, reps=1)

WORKLOADS = ("tunnels", "latency", "bulk", "denied", "http", "fresh")
APPLIES = {
    "denied": {"mitmdump-deny", "azml-egress", "azml-egress-mitmdump", "squid"},
    "fresh": {"mitmdump", "azml-egress", "squid"},
    "latency": {"direct", "mitmdump", "azml-egress", "squid"},
    "bulk": {"direct", "mitmdump", "azml-egress", "squid"},
    "tunnels": {"direct", "mitmdump", "azml-egress", "azml-egress-x2", "azml-egress-mitmdump", "core-floor", "squid"},
    "http": {"direct", "mitmdump", "azml-egress", "squid"},
}
"""Which targets run which workload."""


@dataclass
class Results:
    """``values[metric][target]`` is the list of per-repetition values."""

    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, metric: str, target: str, value: float) -> None:
        self.values.setdefault(metric, {}).setdefault(target, []).append(value)


def applies(workload: str, target: str) -> bool:
    return target in APPLIES[workload]


def _pki(workdir: Path) -> tuple[str, str, str]:
    ca = trustme.CA()
    cert = ca.issue_cert(w.SNI)
    paths = [workdir / "ca.pem", workdir / "server.pem", workdir / "server.key"]
    ca.cert_pem.write_to_path(str(paths[0]))
    cert.cert_chain_pems[0].write_to_path(str(paths[1]))
    cert.private_key_pem.write_to_path(str(paths[2]))
    return tuple(str(p) for p in paths)


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 16384), hard), hard))


class Bench:
    def __init__(self, names: list[str], scale: Scale, workdir: Path, log=print):
        self.scale, self.workdir, self.log = scale, workdir, log
        self.results = Results()
        self.names = names
        self.decisions: dict[str, int] = {}
        """Decisions asked of each long-running azml-egress target (for the line count check)."""
        self.fresh_count = 0

    async def _measure(self, target: Target, job, count: int, metric: str) -> None:
        """Run ``job()`` (a :class:`workloads.Counts` coroutine) and record rate and CPU per item."""
        cpu0, t0 = target.cpu(), time.perf_counter()
        counts = await job()
        elapsed, cpu = time.perf_counter() - t0, target.cpu() - cpu0
        self._asked(target, counts.ok)
        if counts.failed:
            self.results.failures[f"{metric}/{target.name}"] = self.results.failures.get(f"{metric}/{target.name}", 0) + counts.failed
            self.log(f"  {target.name} {metric}: {counts.failed} of {count} failed ({counts.last_error})")
        self.results.add(f"{metric}_per_s", target.name, counts.ok / elapsed)
        if target.processes:
            self.results.add(f"{metric}_cpu_ms", target.name, 1000 * cpu / max(counts.ok, 1))

    def _asked(self, target: Target, n: int) -> None:
        self.decisions[target.name] = self.decisions.get(target.name, 0) + n

    async def workload(self, name: str, target: Target) -> None:
        s, ctx, tls, http = self.scale, self.context, self.tls_port, self.http_port
        proxies = target.proxies
        proxy = proxies[0] if proxies else None
        if name == "tunnels":
            if proxies and len(proxies) > 1:
                share = s.tunnels // len(proxies)
                per = max(1, s.concurrency // len(proxies))

                async def split():
                    parts = await asyncio.gather(*(w.tunnels(p, tls, ctx, share, per) for p in proxies))
                    return w.Counts(sum(c.ok for c in parts), sum(c.failed for c in parts),
                                    next((c.last_error for c in parts if c.last_error), ""))

                await self._measure(target, split, s.tunnels, "tunnel")
            else:
                await self._measure(target, lambda: w.tunnels(proxy, tls, ctx, s.tunnels, s.concurrency),
                                    s.tunnels, "tunnel")
        elif name == "latency":
            times = sorted(await w.latencies(proxy, tls, ctx, s.latency))
            self._asked(target, len(times))
            self.results.add("latency_p50_ms", target.name, 1000 * statistics.median(times))
            self.results.add("latency_p99_ms", target.name, 1000 * times[min(len(times) - 1, int(0.99 * len(times)))])
        elif name == "bulk":
            seconds = min([await w.bulk(proxy, tls, ctx, s.bulk_mib << 20) for _ in range(s.bulk_tries)])
            self._asked(target, s.bulk_tries)
            self.results.add("bulk_MB_per_s", target.name, (s.bulk_mib << 20) / seconds / 1e6)
        elif name == "denied":
            await self._measure(target, lambda: w.denied(proxy, s.denied, s.concurrency), s.denied, "denied")
        elif name == "http":
            await self._measure(target, lambda: w.plain_http(proxy, http, s.http, s.concurrency), s.http, "http")
        elif name == "fresh":
            await self.fresh(target)

    async def fresh(self, long_running: Target) -> None:
        """Start a new process: time to first tunnel, then RSS per idle tunnel."""
        self.fresh_count += 1
        target = make_targets([long_running.name], self.workdir, self.tls_port, self.http_port,
                              suffix=f"-fresh{self.fresh_count}")[0]
        started = target.start()
        try:
            done = await w.first_tunnel(target.proxies[0], self.tls_port, self.context, started + 30)
            self.results.add("start_to_first_tunnel_s", target.name, done - started)
            await asyncio.sleep(0.2)
            before = target.rss()
            writers = await w.open_idle(target.proxies[0], self.tls_port, self.context, self.scale.idle)
            await asyncio.sleep(0.5)
            after = target.rss()
            await w.close_all(writers)
            self.results.add("rss_base_MiB", target.name, before / 2**20)
            self.results.add("rss_per_idle_tunnel_KiB", target.name, (after - before) / 1024 / self.scale.idle)
        finally:
            target.stop()

    async def run(self) -> Results:
        _raise_fd_limit()
        ca, cert, key = _pki(self.workdir)
        self.context = w.client_context(ca)
        upstream = subprocess.Popen([sys.executable, str(HERE / "upstream.py"), cert, key],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.tls_port, self.http_port = map(int, upstream.stdout.readline().split())
        targets = make_targets(self.names, self.workdir, self.tls_port, self.http_port)
        try:
            for t in targets:
                t.start()
            for t in targets:
                t.wait_listening()
                if t.name != "mitmdump-deny":  # warm up: imports, caches, first connections
                    for proxy in t.proxies or [None]:
                        await w.tunnels(proxy, self.tls_port, self.context, 20, 5)
            lines0 = {t.name: t.decision_lines() for t in targets if hasattr(t, "decision_lines")}
            self.decisions = {}
            started = last = time.monotonic()
            for rep in range(self.scale.reps):
                now = time.monotonic()
                if rep and now + (now - last) - started > self.scale.budget_s:
                    self.results.notes.append(f"stopped after {rep} of {self.scale.reps} repetitions to stay within "
                                              f"{self.scale.budget_s:.0f} s")
                    self.log(self.results.notes[-1])
                    break
                last = now
                self.log(f"repetition {rep + 1}/{self.scale.reps}")
                for workload in WORKLOADS:
                    order = targets[rep % len(targets):] + targets[:rep % len(targets)]
                    for t in order:
                        if applies(workload, t.name):
                            await self.workload(workload, t)
            await asyncio.sleep(0.5)
            for t in targets:
                if hasattr(t, "decision_lines"):
                    written = t.decision_lines() - lines0[t.name]
                    asked = self.decisions.get(t.name, 0)
                    failed = sum(n for k, n in self.results.failures.items() if k.endswith("/" + t.name))
                    self.results.notes.append(f"{t.name}: {written} decision lines for {asked} completed requests"
                                              + (f" and {failed} failed ones" if failed else "")
                                              + (" (exactly one per decision)" if written == asked and not failed else ""))
        finally:
            for t in targets:
                t.stop()
            upstream.stdin.close()
            upstream.wait(10)
            upstream.stdout.close()
        return self.results
