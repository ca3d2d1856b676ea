"""In-process benchmark of the policy engine: load time and decisions per second.

Policies of N rules (half exact names, half ``*.domain`` wildcards, 100 rules
per rule collection, on top of the built-in catalog's required features) are
generated as YAML and loaded with :func:`proxy_addon.policy_loader.policy_from_text`,
so load time includes YAML parsing and schema validation.

Queries mix 40 % exact hits, 30 % wildcard hits (subdomains of a wildcard
rule) and 30 % misses, spread over every rule:

* **cached**: 10,000 distinct hosts decided over and over, as a proxy sees
  them (``Policy.decide`` caches per host, port and protocol);
* **uncached**: every query is a host spelling never seen before (random
  letter case for exact names, fresh labels under wildcards, fresh misses),
  so each one is normalised, matched and attributed from scratch.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from proxy_addon.policy_loader import policy_from_text

RULES_PER_COLLECTION = 100


@dataclass
class InProcessResult:
    rules: int
    load_seconds: float
    cached_per_second: float
    uncached_per_second: float
    allowed_share: float
    """Share of uncached queries that were allowed (sanity check of the mix)."""


def policy_yaml(rules: int) -> str:
    """YAML of a policy with ``rules`` generated rules (see module docstring)."""
    lines = ["version: 1", f"name: bench-{rules}", "mode: enforce", "features: [required]", "rule_collections:"]
    for c in range(0, rules, RULES_PER_COLLECTION):
        lines += [f"  - name: c{c // RULES_PER_COLLECTION}", f"    priority: {100 + c // RULES_PER_COLLECTION % 60000}",
                  "    action: allow", "    rules:"]
        for i in range(c, min(c + RULES_PER_COLLECTION, rules)):
            target = f"host-{i}.corp{i % 97}.example" if i % 2 == 0 else f"*.svc-{i}.example"
            lines += [f"      - name: r{i}", f"        target_fqdns: ['{target}']", "        protocols: [https:443]"]
    return "\n".join(lines) + "\n"


def _random_case(rng: random.Random, name: str) -> str:
    return "".join(ch.upper() if rng.random() < 0.5 else ch for ch in name)


def queries(rules: int, count: int, rng: random.Random, unique: bool) -> list[str]:
    """``count`` hosts: 40 % exact hits, 30 % wildcard hits, 30 % misses."""
    out = []
    for k in range(count):
        i = rng.randrange(rules)
        kind = rng.random()
        if kind < 0.4:
            i -= i % 2  # an exact rule
            name = f"host-{i}.corp{i % 97}.example"
            out.append(_random_case(rng, name) if unique else name)
        elif kind < 0.7:
            i |= 1  # a wildcard rule
            if i >= rules:
                i -= 2
            out.append(f"a{k if unique else k % 7}.svc-{i}.example")
        else:
            out.append(f"miss-{k if unique else i}.corp{i % 97}.example")
    return out


def _rate(policy, hosts: list[str], min_seconds: float) -> float:
    decide = policy.decide
    done, start = 0, time.perf_counter()
    while True:
        for host in hosts:
            decide(host, 443, "https", "10.0.0.1")
        done += len(hosts)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed


def run_one(rules: int, seconds: float = 1.0, seed: int = 1) -> InProcessResult:
    """Load a policy of ``rules`` rules and measure its decision rates."""
    rng = random.Random(seed)
    text = policy_yaml(rules)
    start = time.perf_counter()
    policy = policy_from_text(text, f"bench-{rules}.yaml")
    load_seconds = time.perf_counter() - start

    cached_hosts = queries(rules, 10_000, rng, unique=False)
    for host in cached_hosts:  # warm the cache
        policy.decide(host, 443, "https", "10.0.0.1")
    cached = _rate(policy, cached_hosts, seconds)

    # unique spellings: a fresh batch per pass, far more than any pass needs
    uncached_hosts = queries(rules, 40_000, rng, unique=True)
    allowed = 0
    start = time.perf_counter()
    for host in uncached_hosts:
        allowed += policy.decide(host, 443, "https", "10.0.0.1").allowed
    uncached = len(uncached_hosts) / (time.perf_counter() - start)
    return InProcessResult(rules, load_seconds, cached, uncached, allowed / len(uncached_hosts))


def run(sizes: tuple[int, ...] = (100, 10_000, 100_000), seconds: float = 1.0) -> list[InProcessResult]:
    return [run_one(n, seconds) for n in sizes]


if __name__ == "__main__":
    for r in run():
        print(r)
