"""Squid export: accepted by ``squid -k parse``, and a real squid on loopback
allows and denies exactly what azml-egress decides on a corpus of hosts."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy_addon.exporters import export, squid as squid_export
from proxy_addon.policy_loader import load_policy
from support import squid
from support.corpus import corpus

RICH = Path(__file__).parent / "data" / "rich-policy.yaml"

needs_squid = pytest.mark.skipif(squid.squid_binary() is None, reason="squid is not installed (Debian package squid)")


def test_wildcards_never_widen_to_the_apex():
    text = export(load_policy("default"), "squid")
    # '*.azureml.ms' = '.azureml.ms' minus the apex, on the same line
    assert "acl azml_below.azureml.ms dstdomain -n .azureml.ms" in text
    assert "acl azml_azureml.ms dstdomain -n azureml.ms" in text
    assert "http_access allow azml_connect azml_port_443 azml_below.azureml.ms !azml_azureml.ms" in text
    assert text.rstrip().endswith("http_access deny all")


def test_suffix_wildcard_is_a_regex_and_deny_comes_first():
    text = export(load_policy(str(RICH)), "squid")
    assert "acl azml_suffix.evil.example dstdom_regex -n -i evil\\.example$" in text
    access = [line for line in text.splitlines() if line.startswith("http_access")]
    first_deny = access.index("http_access deny azml_connect azml_port_443 azml_blob.core.windows.net")
    first_blob_allow = next(i for i, line in enumerate(access) if "azml_below.blob.core.windows.net" in line
                            and line.startswith("http_access allow"))
    assert first_deny < first_blob_allow
    assert "http_access allow !azml_connect azml_port_8080 azml_src_mirror azml_below.mirror.contoso.example" \
           " !azml_mirror.contoso.example" in text


@needs_squid
@pytest.mark.parametrize("policy_name", ["default", str(RICH)], ids=["default", "rich"])
def test_squid_parses_the_export(tmp_path, policy_name):
    conf, _ = squid.write_config(tmp_path, export(load_policy(policy_name), "squid"))
    done = squid.parse(conf)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ERROR" not in done.stderr and "WARNING" not in done.stderr, done.stderr[-3000:]


@needs_squid
@pytest.mark.parametrize("policy_name", ["default", str(RICH)], ids=["default", "rich"])
def test_squid_agrees_with_azml_egress_on_the_corpus(policy_name):
    policy = load_policy(policy_name)
    probes = corpus([policy])
    assert len(probes) >= 200
    try:
        proxy = squid.start(export(policy, "squid"))
    except RuntimeError as e:
        pytest.skip(f"squid cannot run here: {e}")
    try:
        disagreements = []
        allowed = 0
        for host, port, protocol in probes:
            ours = policy.decide(host, port, protocol, "127.0.0.1").allowed
            theirs, status = proxy.ask(host, port, protocol)
            allowed += ours
            if ours != theirs:
                disagreements.append((host, port, protocol, ours, status))
    finally:
        proxy.stop()
    assert disagreements == []
    assert 50 < allowed < len(probes) - 200  # both outcomes are exercised


def test_acl_names_are_unique_per_definition():
    acls = squid_export._Acls()
    a = acls.get("dstdomain -n", ("x.example",), "x.example")
    b = acls.get("dstdomain -n", ("x.example",), "x.example")
    c = acls.get("dstdom_regex -n -i", ("x\\.example$",), "x.example")
    assert a == b and a != c and len(acls.lines) == 2
