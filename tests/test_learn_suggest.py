"""Suggesting a policy from learn data: catalog patterns, exact names, sibling
wildcards that stop at public suffixes, and a suggestion that validates and
allows exactly what was seen."""

from __future__ import annotations

import pytest

from proxy_addon.learn_suggest import render_yaml, sibling_wildcards, suggest
from proxy_addon.learnfile import HostRecord, LearnData
from proxy_addon.policy_loader import load_policy, policy_from_text

T = "2026-11-29T10:00:00.000Z"

BLOBS = [f"acct{i}.blob.core.windows.net" for i in range(5)]


@pytest.mark.parametrize(("names", "expected"), [
    (["a.cdn.example.com", "b.cdn.example.com", "c.cdn.example.com"],
     {n: "*.cdn.example.com" for n in ("a.cdn.example.com", "b.cdn.example.com", "c.cdn.example.com")}),
    (["a.cdn.example.com", "b.cdn.example.com"], {}),
    (["a.x.example.com", "b.x.example.com", "c.y.example.com"],
     {n: "*.example.com" for n in ("a.x.example.com", "b.x.example.com", "c.y.example.com")}),
    (["a.cdn.example.com", "b.cdn.example.com", "c.cdn.example.com", "www.example.com", "api.example.com"],
     {n: "*.cdn.example.com" for n in ("a.cdn.example.com", "b.cdn.example.com", "c.cdn.example.com")}),
    (["example.com", "www.example.com", "api.example.com"], {}),
    (BLOBS, {}),
    ([f"acct{i}.table.core.windows.net" for i in range(3)] + BLOBS[:3],
     {f"acct{i}.table.core.windows.net": "*.table.core.windows.net" for i in range(3)}),
    (["a.table.core.windows.net", "b.queue.core.windows.net", "c.dfs.core.windows.net"], {}),
    (["a.s3.amazonaws.com", "b.ec2.amazonaws.com", "c.sqs.amazonaws.com"], {}),
    (["a.github.io", "b.github.io", "c.github.io"], {}),
    (["x.foo.github.io", "y.foo.github.io", "z.foo.github.io"],
     {n: "*.foo.github.io" for n in ("x.foo.github.io", "y.foo.github.io", "z.foo.github.io")}),
    (["a.example.co.uk", "b.example.co.uk", "c.example.co.uk"],
     {n: "*.example.co.uk" for n in ("a.example.co.uk", "b.example.co.uk", "c.example.co.uk")}),
    (["a.co.uk", "b.co.uk", "c.co.uk"], {}),
    (["a.b.c.d.internal", "e.b.c.d.internal", "f.b.c.d.internal"],
     {n: "*.b.c.d.internal" for n in ("a.b.c.d.internal", "e.b.c.d.internal", "f.b.c.d.internal")}),
], ids=[
    "three siblings make a wildcard", "two are not several", "deepest common parent at the registrable domain",
    "deeper cluster wins, the rest stays exact", "apex is never covered by *.",
    "storage accounts: private-section suffix blob.core.windows.net, never *.core.windows.net",
    "table accounts (no PSL entry) may share a wildcard, blob accounts never",
    "never *.core.windows.net: a public suffix lies below it", "never over a domain with public suffixes below", "github.io pages are different owners",
    "below a private-section suffix a wildcard is fine", "ICANN two-label suffix", "never a wildcard over co.uk",
    "unknown TLD counts as a public suffix of one label",
])
def test_sibling_wildcards(names, expected):
    assert sibling_wildcards(names, 3) == expected


def test_sibling_wildcards_never_reach_a_public_suffix_for_many_storage_accounts():
    names = [f"a{i}.blob.core.windows.net" for i in range(200)] + [f"t{i}.table.core.windows.net" for i in range(50)]
    wildcards = set(sibling_wildcards(names, 2).values())
    assert wildcards == {"*.table.core.windows.net"}, "blob accounts stay exact, nothing above the suffixes"


def test_min_siblings_below_two_is_refused():
    with pytest.raises(ValueError):
        sibling_wildcards(["a.example.com"], 1)


def rec(host, port=443, protocol="https", count=1, clients=("10.0.0.1",)):
    return HostRecord(host, port, protocol, T, T, count=count, clients=list(clients))


def learned(*records):
    data = LearnData(started=T, updated=T, files=["learn.json"])
    for r in records:
        data.hosts[r.key] = r
    return data


WORKSPACE_POLICY = """
version: 1
name: contoso
catalog: azureml
workspace: {storage_account: contosoml, region: westeurope}
features: [pip-index]
options: {sni_missing: allow}
rule_collections:
  - name: block
    priority: 100
    action: deny
    rules:
      - name: no-test-pypi
        target_fqdns: [test.pypi.org]
"""


@pytest.fixture(scope="module")
def workspace_policy():
    return policy_from_text(WORKSPACE_POLICY, "contoso.yaml")


def targets(suggestion):
    return {(cname, r.target, tuple(r.protocols), r.feature) for cname, rules in suggestion.collections.items()
            for r in rules}


def test_catalog_hosts_use_catalog_patterns_with_workspace_placeholders_filled(workspace_policy):
    data = learned(rec("pypi.org"), rec("files.pythonhosted.org"), rec("contosoml.blob.core.windows.net"),
                   rec("other1.blob.core.windows.net"), rec("other2.blob.core.windows.net"),
                   rec("westeurope.data.mcr.microsoft.com"), rec("ci1.westeurope.instances.azureml.ms", 8787))
    s = suggest(data, workspace_policy)
    assert targets(s) == {
        ("learned-pip-index", "pypi.org", ("https:443",), "pip-index"),
        ("learned-pip-downloads", "files.pythonhosted.org", ("https:443",), "pip-downloads"),
        ("learned-workspace-storage", "contosoml.blob.core.windows.net", ("https:443",), "workspace-storage"),
        ("learned-microsoft-storage", "*.blob.core.windows.net", ("https:443",), "microsoft-storage"),
        ("learned-container-images", "*.data.mcr.microsoft.com", ("https:443",), "container-images"),
        ("learned-compute-instance", "*.instances.azureml.ms", ("https:8787",), "compute-instance"),
    }
    assert not any(r.target == "*.core.windows.net" for r in s.rules)


def test_exact_mode_lists_hosts_only(workspace_policy):
    data = learned(rec("other1.blob.core.windows.net"), rec("other2.blob.core.windows.net"),
                   *[rec(f"{c}.cdn.example.com") for c in "abc"])
    s = suggest(data, workspace_policy, exact=True)
    assert sorted(r.target for r in s.rules) == sorted(
        ["other1.blob.core.windows.net", "other2.blob.core.windows.net"] + [f"{c}.cdn.example.com" for c in "abc"])
    assert {r.feature for r in s.rules if "blob" in r.target} == {"microsoft-storage"}


def test_other_hosts_addresses_and_skipped_entries(workspace_policy):
    data = learned(*[rec(f"{c}.cdn.example.com") for c in "abc"], rec("www.example.com", 80, "http"),
                   rec("www.example.com", 8443), rec("203.0.113.7"), rec("2001:db8::10", 8443),
                   rec("test.pypi.org"), rec("x<y>.evil"))
    s = suggest(data, workspace_policy)
    assert targets(s) == {
        ("learned-other-hosts", "*.cdn.example.com", ("https:443",), None),
        ("learned-other-hosts", "www.example.com", ("http:80", "https:8443"), None),
        ("learned-addresses", "203.0.113.7", ("https:443",), None),
        ("learned-addresses", "2001:db8::10", ("https:8443",), None),
    }
    assert list(s.collections)[-2:] == ["learned-other-hosts", "learned-addresses"]
    skipped = {r.host: why for r, why in s.skipped}
    assert set(skipped) == {"test.pypi.org", "x<y>.evil"}
    assert "denied by rule 'no-test-pypi'" in skipped["test.pypi.org"]
    assert "not a valid host name" in skipped["x<y>.evil"]


def test_rendered_policy_validates_and_allows_exactly_what_was_seen(workspace_policy):
    seen = [rec("pypi.org"), rec("files.pythonhosted.org", count=4), rec("contosoml.blob.core.windows.net"),
            rec("other1.blob.core.windows.net"), *[rec(f"{c}.cdn.example.com") for c in "abc"],
            rec("www.example.com", 80, "http"), rec("203.0.113.7", 8443), rec("ci1.westeurope.instances.azureml.ms", 8787)]
    data = learned(*seen)
    text = render_yaml(suggest(data, workspace_policy), data, workspace_policy, name="contoso-learned")
    policy = policy_from_text(text, "suggested.yaml")
    assert policy.name == "contoso-learned" and policy.workspace == {"storage_account": "contosoml",
                                                                       "region": "westeurope"}
    assert policy.options == {"sni_missing": "allow"}
    assert policy.enabled_features == frozenset(), "whole features are never enabled"
    for r in seen:
        d = policy.decide(r.host, r.port, r.protocol, "10.0.0.1")
        assert d.allowed, (r.host, d.reason)
    for host, port, protocol in [("test.pypi.org", 443, "https"), ("pypi.org", 80, "http"), ("www.example.com", 443,
                                 "https"), ("example.com", 443, "https"), ("203.0.113.8", 8443, "https"),
                                 ("ci1.westeurope.instances.azureml.ms", 443, "https"), ("evil.example", 443, "https")]:
        assert not policy.decide(host, port, protocol, "10.0.0.1").allowed, host


def test_every_rule_line_carries_its_evidence(workspace_policy):
    data = learned(rec("pypi.org", count=12), rec("a.cdn.example.com"), rec("b.cdn.example.com"),
                   rec("c.cdn.example.com"))
    text = render_yaml(suggest(data, workspace_policy), data, workspace_policy)
    rule_lines = [line for line in text.splitlines()
                  if line.lstrip().startswith(("- name:", "target_fqdns:", "protocols:", "feature:"))
                  and line.startswith("      ")]
    assert rule_lines and all("  # " in line for line in rule_lines)
    assert any(line.strip().startswith("target_fqdns") and "12 requests" in line and f"first {T}" in line
               for line in text.splitlines())
    assert "# seen b.cdn.example.com https:443: 1 request" in text
    assert "feature pip-index, catalog pattern pypi.org" in text
    assert "# not suggested: test.pypi.org" not in text


def test_public_suffix_catalog_wildcards_are_flagged(workspace_policy):
    data = learned(rec("other1.blob.core.windows.net"))
    text = render_yaml(suggest(data, workspace_policy), data, workspace_policy)
    assert "a wildcard over a public suffix, as the catalog documents it" in text


def test_a_suggestion_for_nothing_is_still_a_valid_policy():
    data = learned()
    policy = load_policy()
    text = render_yaml(suggest(data, policy), data, policy)
    suggested = policy_from_text(text)
    assert suggested.rule_count == 0
    assert not suggested.decide("pypi.org", 443).allowed


def test_hosts_refused_by_the_address_check_are_not_suggested():
    from proxy_addon.learnfile import HostRecord, LearnData
    from proxy_addon.learn_suggest import suggest
    from proxy_addon.policy_loader import load_policy

    T = "2026-11-29T17:00:00.000Z"
    data = LearnData()
    data.hosts[("localhost", 9464, "http")] = HostRecord(host="localhost", port=9464, protocol="http", first_seen=T, last_seen=T, count=2,
                                                         reasons={"rule_matched": 1, "private_address": 1})
    data.hosts[("gone.example", 443, "https")] = HostRecord(host="gone.example", port=443, protocol="https", first_seen=T, last_seen=T,
                                                            count=1,
                                                            reasons={"dns_failure": 1})
    result = suggest(data, load_policy())
    assert not any(r.target in ("localhost", "gone.example") for rules in result.collections.values() for r in rules)
    assert [why.split(" ")[0] for _, why in result.skipped] == ["resolved", "never"]
