"""A shared corpus of (host, port, protocol) probes for comparing deciders.

Built from every shipped catalog: each pattern's exact name, a subdomain and a
deeper subdomain of each wildcard, the apex of each wildcard, lookalikes
(``evil`` + name, name + ``.evil.example``), on ports 443/80 and some others.
"""

from __future__ import annotations

from proxy_addon.catalog import builtin_catalogs
from proxy_addon.patterns import Kind, parse_pattern

EXTRA_HOSTS = [
    "example.com", "evil.example", "test.pypi.org", "evilpypi.org", "pypi.org.evil.example",
    "files.pythonhosted.org", "windows.net", "core.windows.net", "a.b.c.blob.core.windows.net",
]


def hosts_for(text: str) -> list[str]:
    pattern = parse_pattern(text)
    base = pattern.base
    if pattern.kind is Kind.EXACT:
        return [base, "evil" + base, base + ".evil.example", "x." + base]
    if pattern.kind is Kind.SUBDOMAINS:
        return ["a." + base, "a.b." + base, base, "evil" + base, base + ".evil.example"]
    return [base, "x" + base, "x." + base]


def corpus(policies=()) -> list[tuple[str, int, str]]:
    """Sorted, distinct (host, port, protocol) probes; patterns of ``policies``
    (resolved with their workspace parameters) are added to the catalogs'."""
    patterns: dict[str, None] = {}
    for catalog in builtin_catalogs():
        for feature in catalog.features:
            for endpoint in feature.hosts:
                patterns.setdefault(endpoint.resolve(), None)
    for policy in policies:
        for placement in policy.placements():
            for pattern in placement.rule.target_fqdns:
                patterns.setdefault(pattern.text, None)
    hosts: dict[str, None] = dict.fromkeys(EXTRA_HOSTS)
    for text in patterns:
        for host in hosts_for(text):
            hosts.setdefault(host, None)
    probes = set()
    for i, host in enumerate(hosts):
        probes.add((host, 443, "https"))
        probes.add((host, 80, "http"))
        other = (8787, 18881, 8080, 445)[i % 4]
        probes.add((host, other, "https"))
    return sorted(probes)
