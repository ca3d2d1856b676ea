"""The Metrics observer on a fresh CollectorRegistry per test."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from proxy_addon import __version__
from proxy_addon.audit import DecisionEvent
from proxy_addon.decision import Action, Decision, Reason
from proxy_addon.metrics import DECISION_LABELS, Metrics
from proxy_addon.observers import UPSTREAM_ERROR_KINDS
from proxy_addon.policy_loader import load_policy


@pytest.fixture(scope="module")
def policy():
    return load_policy("azureml-2020-04")


@pytest.fixture
def registry():
    return CollectorRegistry()


@pytest.fixture
def metrics(registry, policy):
    m = Metrics(registry, process_metrics=False, mitmproxy_version="11.0.2")
    m.on_policy(policy, True)
    return m


def event(policy, host="pypi.org", port=443, protocol="https", mode="enforce", client="127.0.0.1:5000"):
    return DecisionEvent(policy.decide(host, port, protocol, "127.0.0.1"), mode, client, "CONNECT", policy.name)


def decisions(registry, **labels):
    """Sum of the decisions counter over every series matching ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            if sample.name == "azml_egress_decisions_total" and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def all_label_values(registry) -> set[str]:
    return {v for family in text_string_to_metric_families(generate_latest(registry).decode())
            for sample in family.samples for v in sample.labels.values()}


@pytest.mark.parametrize(("host", "port", "mode", "labels"), [
    ("pypi.org", 443, "enforce", dict(action="allow", enforced="true", mode="enforce", reason="rule_matched",
                                      protocol="https", feature="pip-index", group="Python")),
    ("files.pythonhosted.org", 443, "enforce", dict(action="deny", enforced="true", reason="no_rule_matched",
                                                    feature="pip-downloads", group="Python")),
    ("evil.example", 443, "enforce", dict(action="deny", reason="no_rule_matched", feature="unknown", group="unknown")),
    ("evil.example", 443, "simulate", dict(action="deny", enforced="false", mode="simulate", feature="unknown")),
    ("ml.azure.com", 22, "enforce", dict(action="deny", reason="port_not_allowed", feature="studio")),
    ("203.0.113.7", 443, "enforce", dict(action="deny", reason="ip_literal", feature="unknown")),
    ("bad..host", 443, "enforce", dict(action="deny", reason="invalid_host", feature="unknown")),
], ids=["allowed by rule", "denied feature of another catalog", "not an Azure ML host", "simulated would-deny",
        "port not allowed keeps the feature", "IP literal", "invalid host"])
def test_each_decision_counts_once_with_bounded_labels(metrics, registry, policy, host, port, mode, labels):
    before = decisions(registry)
    metrics.on_decision(event(policy, host, port, mode=mode))
    assert decisions(registry) == before + 1
    assert set(labels) <= set(DECISION_LABELS)
    assert decisions(registry, **labels) == 1


def test_counts_add_up_per_feature(metrics, registry, policy):
    for host, times in (("pypi.org", 3), ("files.pythonhosted.org", 2), ("evil.example", 4)):
        for _ in range(times):
            metrics.on_decision(event(policy, host))
    assert decisions(registry, action="allow") == 3
    assert decisions(registry, action="deny") == 6
    assert decisions(registry, feature="pip-index") == 3
    assert decisions(registry, feature="pip-downloads") == 2
    assert decisions(registry, feature="unknown") == 4


def test_no_label_value_comes_from_the_network(metrics, registry, policy):
    hosts = ["evil.example", "xn--bcher-kva.example", "pypi.org", "203.0.113.7", "a" * 63 + ".example"]
    for host in hosts:
        metrics.on_decision(event(policy, host, client="198.51.100.23:40000"))
    forged = replace(event(policy, "pypi.org").decision, feature="evil.example", group="attacker", reason=Reason.RULE_MATCHED)
    metrics.on_decision(DecisionEvent(forged, "weird-mode", "198.51.100.23:1", "GET"))
    metrics.on_upstream_error(None, "getaddrinfo failed for evil.example", "evil.example")
    values = all_label_values(registry)
    for leaked in hosts + ["198.51.100.23", "198.51.100.23:40000", "attacker", "weird-mode",
                           "getaddrinfo failed for evil.example"]:
        assert leaked not in values
    assert decisions(registry, feature="unknown", group="unknown", mode="unknown") == 1
    assert registry.get_sample_value("azml_egress_upstream_errors_total", {"kind": "other"}) == 1


def test_children_are_cached_only_for_bounded_keys(metrics, policy):
    first = event(policy, "pypi.org")
    metrics.on_decision(first)
    size = len(metrics._decision_children)
    metrics.on_decision(event(policy, "pypi.org"))
    assert len(metrics._decision_children) == size
    for i in range(50):
        odd = replace(first.decision, feature=f"not-a-feature-{i}")
        metrics.on_decision(DecisionEvent(odd, "enforce", "127.0.0.1:1", "CONNECT"))
    assert len(metrics._decision_children) == size


def test_series_are_precreated_for_every_feature_of_the_policy(registry, metrics, policy):
    enabled = sorted(policy.enabled_features)
    assert enabled
    for feature in enabled:
        labels = dict(action="allow", enforced="true", mode="enforce", reason="rule_matched", protocol="https",
                      feature=feature, group=policy.features_by_id[feature].group)
        assert registry.get_sample_value("azml_egress_decisions_total", labels) == 0
        assert registry.get_sample_value("azml_egress_tunnels_active", {"feature": feature}) == 0
        for direction in ("upstream", "downstream"):
            assert registry.get_sample_value("azml_egress_tunnel_bytes_total",
                                             {"direction": direction, "feature": feature}) == 0
    assert len(policy.features_by_id) > len(policy.catalog.features)
    for feature in policy.features_by_id.values():
        expected = 1 if feature.id in policy.enabled_features else 0
        assert registry.get_sample_value("azml_egress_feature_enabled",
                                         {"feature": feature.id, "group": feature.group}) == expected
    assert registry.get_sample_value("azml_egress_decisions_total", dict(
        action="deny", enforced="true", mode="enforce", reason="no_rule_matched", protocol="https",
        feature="pip-downloads", group="Python")) == 0
    for kind in UPSTREAM_ERROR_KINDS:
        assert registry.get_sample_value("azml_egress_upstream_errors_total", {"kind": kind}) == 0


def test_tunnels_gauge_and_bytes(metrics, registry, policy):
    e = event(policy, "pypi.org")
    metrics.on_tunnel_open(e)
    metrics.on_tunnel_open(e)
    assert registry.get_sample_value("azml_egress_tunnels_active", {"feature": "pip-index"}) == 2
    metrics.on_tunnel_bytes(e, 517, 0)
    metrics.on_tunnel_bytes(e, 0, 4000)
    metrics.on_tunnel_bytes(e, 100, 50)
    metrics.on_tunnel_close(e)
    assert registry.get_sample_value("azml_egress_tunnels_active", {"feature": "pip-index"}) == 1
    assert registry.get_sample_value("azml_egress_tunnel_bytes_total", {"direction": "upstream", "feature": "pip-index"}) == 617
    assert registry.get_sample_value("azml_egress_tunnel_bytes_total", {"direction": "downstream", "feature": "pip-index"}) == 4050
    other = event(policy, "evil.example", mode="simulate")
    metrics.on_tunnel_open(other)
    metrics.on_tunnel_bytes(other, 10, 20)
    assert registry.get_sample_value("azml_egress_tunnel_bytes_total", {"direction": "downstream", "feature": "unknown"}) == 20


@pytest.mark.parametrize("kind", UPSTREAM_ERROR_KINDS)
def test_upstream_errors_by_kind(metrics, registry, policy, kind):
    metrics.on_upstream_error(event(policy), kind, "message")
    metrics.on_upstream_error(None, kind, "message")
    assert registry.get_sample_value("azml_egress_upstream_errors_total", {"kind": kind}) == 2


def test_policy_loads_info_and_reload_results(registry, policy):
    m = Metrics(registry, process_metrics=False)
    assert registry.get_sample_value("azml_egress_policy_loaded") == 0
    assert registry.get_sample_value("azml_egress_policy_reloads_total", {"result": "failure"}) == 0
    m.on_policy(None, False, "bad.yaml:3: unknown feature")
    assert registry.get_sample_value("azml_egress_policy_reloads_total", {"result": "failure"}) == 1
    assert registry.get_sample_value("azml_egress_policy_loaded") == 0
    assert registry.get_sample_value("azml_egress_policy_last_reload_success_timestamp_seconds") == 0
    before = time.time()
    m.on_policy(policy, True)
    assert registry.get_sample_value("azml_egress_policy_reloads_total", {"result": "success"}) == 1
    assert registry.get_sample_value("azml_egress_policy_loaded") == 1
    assert registry.get_sample_value("azml_egress_policy_rules") == policy.rule_count == 15
    assert before <= registry.get_sample_value("azml_egress_policy_last_reload_success_timestamp_seconds") <= time.time()
    info = {"policy": "azureml-2020-04", "policy_sha256": policy.sha256, "catalog": "azureml-2020-04",
            "catalog_revision": "2020-04-27", "mode": "enforce"}
    assert registry.get_sample_value("azml_egress_policy_info", info) == 1
    # a failed reload keeps the policy in force
    m.on_policy(None, False, "broken")
    assert registry.get_sample_value("azml_egress_policy_loaded") == 1
    assert registry.get_sample_value("azml_egress_policy_info", info) == 1
    # a new policy replaces the info series and the enabled features
    default = load_policy(None, "simulate")
    m.on_policy(default, True)
    assert registry.get_sample_value("azml_egress_policy_info", info) is None
    assert registry.get_sample_value("azml_egress_policy_info", {
        "policy": default.name, "policy_sha256": default.sha256, "catalog": "azureml",
        "catalog_revision": default.catalog.revision, "mode": "simulate"}) == 1
    assert registry.get_sample_value("azml_egress_feature_enabled", {"feature": "pip-downloads", "group": "Python"}) == 1
    assert registry.get_sample_value("azml_egress_decisions_total", dict(
        action="allow", enforced="false", mode="simulate", reason="rule_matched", protocol="https",
        feature="pip-downloads", group="Python")) == 0


def test_decide_latency_histogram(metrics, registry):
    for seconds in (2e-6, 3e-6, 0.002):
        metrics.observe_decide(seconds)
    assert registry.get_sample_value("azml_egress_decision_duration_seconds_count") == 3
    assert registry.get_sample_value("azml_egress_decision_duration_seconds_bucket", {"le": "2.5e-06"}) == 1
    assert registry.get_sample_value("azml_egress_decision_duration_seconds_bucket", {"le": "5e-06"}) == 2
    assert registry.get_sample_value("azml_egress_decision_duration_seconds_bucket", {"le": "0.0025"}) == 3
    assert registry.get_sample_value("azml_egress_decision_duration_seconds_sum") == pytest.approx(0.002005)


def test_build_info(registry):
    Metrics(registry, process_metrics=False, mitmproxy_version="12.3.1")
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    (sample,) = families["azml_egress_build_info"].samples
    assert sample.labels["version"] == __version__
    assert sample.labels["mitmproxy_version"] == "12.3.1"
    assert sample.labels["python_version"].count(".") == 2


def test_two_instances_never_clash_and_one_registry_refuses_twice():
    a, b = Metrics(), Metrics()  # each on its own registry, as a reloaded script builds them
    assert a.registry is not b.registry
    registry = CollectorRegistry()
    Metrics(registry, process_metrics=False)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Metrics(registry, process_metrics=False)


def test_every_metric_has_the_prefix_and_counters_end_in_total(metrics, registry):
    names = {s.name for f in text_string_to_metric_families(generate_latest(registry).decode()) for s in f.samples}
    assert names and all(n.startswith("azml_egress_") for n in names)
    counters = {f.name for f in registry.collect() if f.type == "counter"}
    assert counters == {"azml_egress_decisions", "azml_egress_tunnel_bytes", "azml_egress_upstream_errors",
                        "azml_egress_policy_reloads"}
    assert "azml_egress_decisions_total" in names


def test_process_metrics_are_optional():
    names = {f.name for f in Metrics().registry.collect()}
    assert {f.name for f in Metrics(process_metrics=False).registry.collect()} == {
        n for n in names if not n.startswith("process_")}


def test_deny_of_unknown_feature_precreated_per_mode(registry, policy):
    m = Metrics(registry, process_metrics=False)
    m.on_policy(replace(policy, mode="simulate"), True)
    assert registry.get_sample_value("azml_egress_decisions_total", dict(
        action="deny", enforced="false", mode="simulate", reason="no_rule_matched", protocol="https",
        feature="unknown", group="unknown")) == 0


def test_action_enum_and_text_share_a_child(metrics, registry, policy):
    d = Decision(Action.DENY, Reason.NO_RULE_MATCHED, "https", "evil.example", 443)
    metrics.on_decision(DecisionEvent(d, "enforce", "127.0.0.1:1", "CONNECT"))
    metrics.on_decision(DecisionEvent(replace(d, host="other.example"), "enforce", "127.0.0.1:2", "CONNECT"))
    assert decisions(registry, feature="unknown", reason="no_rule_matched", action="deny") == 2
