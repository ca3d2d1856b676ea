"""The decision engine: Azure Firewall order, ports, sources, reasons, attribution."""

import pytest

from proxy_addon.decision import Action, Reason
from proxy_addon.policy_loader import load_policy, policy_from_text


def policy(rules_yaml: str, features: str = "[]", extra: str = ""):
    return policy_from_text(f"version: 1\nfeatures: {features}\n{extra}\nrule_collections:\n{rules_yaml}")


STAR_PYPI = policy("""
  - name: python
    priority: 100
    action: allow
    rules:
      - {name: pypi-sub, target_fqdns: ["*.pypi.org"]}
""")

SUFFIX_PYPI = policy("""
  - name: python
    priority: 100
    action: allow
    rules:
      - {name: pypi-suffix, target_fqdns: ["*pypi.org"]}
""")

AZUREML = policy("""
  - name: azureml
    priority: 100
    action: allow
    rules:
      - {name: api, target_fqdns: ["*.azureml.ms"]}
      - {name: studio, target_fqdns: [ml.azure.com]}
""")

INSTANCES = policy("""
  - name: ci
    priority: 100
    action: allow
    rules:
      - {name: instances, target_fqdns: ["*.instances.azureml.ms"], protocols: [https:443, https:8787, https:18881],
         feature: compute-instance}
""")


@pytest.mark.parametrize("pol, target, action, reason", [
    (STAR_PYPI, "pypi.org:443", "deny", "no_rule_matched"),
    (STAR_PYPI, "test.pypi.org:443", "allow", "rule_matched"),
    (STAR_PYPI, "evilpypi.org:443", "deny", "no_rule_matched"),
    (SUFFIX_PYPI, "evilpypi.org:443", "allow", "rule_matched"),
    (AZUREML, "notazureml.ms:443", "deny", "no_rule_matched"),
    (AZUREML, "azureml.ms.evil.example:443", "deny", "no_rule_matched"),
    (AZUREML, "evil-ml.azure.com:443", "deny", "no_rule_matched"),
    (AZUREML, "xml.azure.com:443", "deny", "no_rule_matched"),
    (AZUREML, "contoso.api.azureml.ms:443", "allow", "rule_matched"),
    (INSTANCES, "ci-contoso.westeurope.instances.azureml.ms:8787", "allow", "rule_matched"),
    (INSTANCES, "ci-contoso.westeurope.instances.azureml.ms:22", "deny", "port_not_allowed"),
    (STAR_PYPI, "203.0.113.10:443", "deny", "ip_literal"),
    (STAR_PYPI, "[2001:db8::10]:443", "deny", "ip_literal"),
    (STAR_PYPI, "3405803786:443", "deny", "ip_literal"),
    (STAR_PYPI, "TEST.PyPI.ORG.:443", "allow", "rule_matched"),
    (STAR_PYPI, "test.pypi.org..:443", "deny", "invalid_host"),
    (STAR_PYPI, "test.pypi\x00.org:443", "deny", "invalid_host"),
], ids=["apex of wildcard", "subdomain", "lookalike", "suffix lookalike", "prefix lookalike", "suffix attack",
        "dash lookalike", "letter lookalike", "deep subdomain", "RStudio port", "ssh port", "ipv4", "ipv6",
        "integer ipv4", "case and dot", "double dot", "NUL"])
def test_issue_inputs(pol, target, action, reason):
    host, _, port = target.rpartition(":")
    d = pol.decide(host, int(port), "https")
    assert (d.action.value, d.reason.value) == (action, reason)


def test_port_not_allowed_names_the_feature():
    d = INSTANCES.decide("ci-contoso.westeurope.instances.azureml.ms", 22, "https")
    assert d.feature == "compute-instance" and d.rule == "instances"
    assert "https:8787" in d.detail


def test_default_policy_inputs():
    p = load_policy()
    assert p.decide("pypi.org", 443).allowed
    assert p.decide("PyPI.ORG", 443).allowed
    assert p.decide("pypi.org.", 443).allowed
    d = p.decide("ci-contoso.westeurope.instances.azureml.ms", 22)
    assert (d.reason, d.feature) == (Reason.PORT_NOT_ALLOWED, "compute-instance")
    assert p.decide("ci-contoso.westeurope.instances.azureml.ms", 8787).allowed


def test_mcr_data_endpoint_needs_its_own_wildcard():
    only_mcr = policy("""
  - name: containers
    priority: 100
    action: allow
    rules:
      - {name: mcr, target_fqdns: [mcr.microsoft.com]}
""")
    d = only_mcr.decide("westeurope.data.mcr.microsoft.com", 443)
    assert d.action is Action.DENY and d.feature == "container-images" and d.feature_enabled is False
    with_data = policy("""
  - name: containers
    priority: 100
    action: allow
    rules:
      - {name: mcr, target_fqdns: [mcr.microsoft.com, "*.data.mcr.microsoft.com"]}
""")
    assert with_data.decide("westeurope.data.mcr.microsoft.com", 443).allowed


def test_azure_firewall_order_deny_collection_first():
    p = policy("""
  - name: allow-all-pypi
    priority: 200
    action: allow
    rules:
      - {name: pypi, target_fqdns: ["*.pypi.org", pypi.org]}
  - name: block-test
    priority: 100
    action: deny
    rules:
      - {name: no-test, target_fqdns: [test.pypi.org]}
""")
    d = p.decide("test.pypi.org", 443)
    assert (d.action, d.reason, d.rule_collection, d.rule) == (Action.DENY, Reason.DENY_RULE, "block-test", "no-test")
    assert d.firewall_message("10.0.0.4:5555").endswith("Action: Deny. Rule Collection: block-test. Rule: no-test")
    assert p.decide("pypi.org", 443).allowed


def test_group_priority_beats_collection_priority():
    p = policy_from_text("""
version: 1
rule_collection_groups:
  - name: late
    priority: 500
    rule_collections:
      - {name: allow-first, priority: 100, action: allow, rules: [{name: a, target_fqdns: [x.example]}]}
  - name: early
    priority: 200
    rule_collections:
      - {name: deny-late, priority: 60000, action: deny, rules: [{name: d, target_fqdns: [x.example]}]}
""")
    d = p.decide("x.example", 443)
    assert (d.action, d.rule_collection_group) == (Action.DENY, "early")


def test_user_rules_before_features_and_rules_top_down():
    p = policy("""
  - name: c
    priority: 100
    action: allow
    rules:
      - {name: first, target_fqdns: ["*.pypi.org"], protocols: [https:443]}
      - {name: second, target_fqdns: [test.pypi.org]}
""", features="[pip-index]")
    assert p.decide("test.pypi.org", 443).rule == "first"
    assert p.decide("test.pypi.org", 80, "http").rule == "second"
    assert p.decide("pypi.org", 443).rule_collection == "pip-index"


def test_source_addresses():
    p = policy("""
  - name: c
    priority: 100
    action: allow
    rules:
      - {name: subnet, target_fqdns: [x.example], source_addresses: [10.0.0.0/24]}
""")
    assert p.decide("x.example", 443, "https", "10.0.0.4").allowed
    d = p.decide("x.example", 443, "https", "10.0.1.4")
    assert d.reason is Reason.SOURCE_NOT_ALLOWED and "source address" in d.detail
    assert p.decide("x.example", 443, "https", "::ffff:10.0.0.9").allowed


def test_destination_addresses_allow_ip_literals():
    p = policy("""
  - name: c
    priority: 100
    action: allow
    rules:
      - {name: net, destination_addresses: [203.0.113.0/24], protocols: [https:443]}
""")
    assert p.decide("203.0.113.10", 443).allowed
    assert p.decide("3405803786", 443).allowed
    assert p.decide("203.0.113.10", 8443).reason is Reason.IP_LITERAL
    assert p.decide("198.51.100.1", 443).reason is Reason.IP_LITERAL


def test_protocol_matters():
    p = policy("""
  - name: c
    priority: 100
    action: allow
    rules:
      - {name: tls-only, target_fqdns: [x.example], protocols: [https:443]}
""")
    assert p.decide("x.example", 443, "https").allowed
    assert p.decide("x.example", 80, "http").reason is Reason.PORT_NOT_ALLOWED


def test_attribution_of_denied_hosts_uses_every_catalog():
    p = load_policy("azureml-2020-04")
    d = p.decide("files.pythonhosted.org", 443)
    assert (d.action, d.feature, d.feature_title, d.group, d.feature_enabled) == (
        Action.DENY, "pip-downloads", "pip package downloads", "Python", False)
    assert d.describe_feature() == "pip package downloads (pip-downloads, Python), not enabled in this policy"
    assert p.decide("evil.example", 443).feature is None


def test_workspace_parameters_fill_placeholders():
    p = policy_from_text("""
version: 1
workspace: {storage_account: contosoml, region: westeurope, registry: contosoacr}
features: [workspace-storage, container-registry]
""")
    assert p.decide("contosoml.blob.core.windows.net", 443).allowed
    assert not p.decide("other.blob.core.windows.net", 443).allowed
    assert p.decide("contosoacr.azurecr.io", 443).allowed
    assert p.decide("contosoacr.westeurope.data.azurecr.io", 443).allowed
    assert not p.decide("evilacr.azurecr.io", 443).allowed
    assert p.decide("other.blob.core.windows.net", 443).feature is not None


def test_unfilled_placeholders_fall_back_to_the_documented_wildcard():
    p = policy_from_text("version: 1\nfeatures: [workspace-storage]\n")
    assert p.decide("anything.blob.core.windows.net", 443).allowed
    assert not p.decide("blob.core.windows.net", 443).allowed


def test_decisions_are_cached_and_immutable():
    d1 = STAR_PYPI.decide("test.pypi.org", 443)
    assert STAR_PYPI.decide("test.pypi.org", 443) is d1
    with pytest.raises(AttributeError):
        d1.action = Action.DENY  # type: ignore[misc]


def test_internal_error_fails_closed(monkeypatch):
    p = policy("""
  - name: c
    priority: 100
    action: allow
    rules:
      - {name: a, target_fqdns: [boom.example]}
""")

    def explode(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(p, "_decide_name", explode)
    d = p.decide("boom.example", 443)
    assert (d.action, d.reason) == (Action.DENY, Reason.INTERNAL_ERROR)
    assert "RuntimeError" in d.detail


def test_bad_port_is_invalid_host():
    assert STAR_PYPI.decide("test.pypi.org", 0).reason is Reason.INVALID_HOST
    assert STAR_PYPI.decide("test.pypi.org", 70000).reason is Reason.INVALID_HOST


def test_network_only_rule_explains_itself():
    p = policy_from_text("version: 1\nfeatures: [compute-instance]\n")
    d = p.decide("westeurope.tundra.azureml.ms", 443)
    assert d.reason is Reason.PORT_NOT_ALLOWED and d.feature == "compute-instance"
    assert "udp:5831" in d.detail and "network rule" in d.detail


def test_feature_enabled_only_for_the_active_catalog():
    p = policy_from_text("version: 1\ncloud: AzureUSGovernment\nfeatures: [required]\n")
    d = p.decide("login.microsoftonline.com", 443)
    assert d.action is Action.DENY and d.feature == "entra-id" and d.catalog == "azureml"
    assert d.feature_enabled is False
    assert p.decide("login.microsoftonline.us", 443).allowed
