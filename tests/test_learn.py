"""The learn recorder: what it keeps per host, its bounds, and when it writes."""

from __future__ import annotations

import itertools
import json
import logging
import time

import pytest

from proxy_addon.audit import DecisionEvent
from proxy_addon.learn import LearnRecorder
from proxy_addon.learnfile import load
from proxy_addon.policy_loader import load_policy


@pytest.fixture(scope="module")
def policy():
    return load_policy("azureml-2020-04", "learn")


def ticking_clock():
    counter = itertools.count()
    return lambda: f"2026-11-29T10:00:{next(counter) % 60:02d}.000Z"


def event(policy, host, port=443, protocol="https", client="10.0.0.1:40000", ts="2026-11-29T10:00:00.000Z"):
    return DecisionEvent(policy.decide(host, port, protocol, client.rsplit(":", 1)[0]), "learn", client,
                         "CONNECT" if protocol == "https" else "GET", policy.name, ts=ts)


def test_one_entry_per_host_port_protocol_with_counts_and_attribution(policy, tmp_path):
    r = LearnRecorder(tmp_path / "l.json")
    r.on_decision(event(policy, "pypi.org", ts="2026-11-29T10:00:01.000Z"))
    r.on_decision(event(policy, "pypi.org", ts="2026-11-29T10:00:05.000Z", client="10.0.0.2:1"))
    r.on_decision(event(policy, "pypi.org", 80, "http"))
    r.on_decision(event(policy, "files.pythonhosted.org"))
    data = r.snapshot()
    assert list(data.hosts) == [("pypi.org", 443, "https"), ("pypi.org", 80, "http"),
                                ("files.pythonhosted.org", 443, "https")]
    pypi = data.hosts[("pypi.org", 443, "https")]
    assert (pypi.count, pypi.first_seen, pypi.last_seen) == (2, "2026-11-29T10:00:01.000Z", "2026-11-29T10:00:05.000Z")
    assert pypi.clients == ["10.0.0.1", "10.0.0.2"]
    assert (pypi.feature, pypi.rule, pypi.rule_collection) == ("pip-index", "pypi.org", "pip-index")
    assert pypi.catalog_pattern == "pypi.org" and pypi.actions == {"allow": 2} and pypi.reasons == {"rule_matched": 2}
    files = data.hosts[("files.pythonhosted.org", 443, "https")]
    assert files.feature == "pip-downloads" and files.rule is None
    assert files.actions == {"deny": 1} and files.reasons == {"no_rule_matched": 1}


def test_tunnel_bytes_add_up_per_entry(policy, tmp_path):
    r = LearnRecorder(tmp_path / "l.json")
    e = event(policy, "pypi.org")
    r.on_decision(e)
    r.on_tunnel_bytes(e, 100, 0)
    r.on_tunnel_bytes(e, 0, 5000)
    r.on_tunnel_bytes(e, 7, 3)
    record = r.snapshot().hosts[("pypi.org", 443, "https")]
    assert (record.bytes_sent, record.bytes_received) == (107, 5003)


def test_clients_per_entry_are_bounded(policy, tmp_path):
    r = LearnRecorder(tmp_path / "l.json", max_clients=3)
    for i in range(10):
        r.on_decision(event(policy, "pypi.org", client=f"10.0.0.{i}:1000"))
    r.on_decision(event(policy, "pypi.org", client="10.0.0.0:2000"))
    record = r.snapshot().hosts[("pypi.org", 443, "https")]
    assert record.clients == ["10.0.0.0", "10.0.0.1", "10.0.0.2"]
    assert (record.count, record.clients_more) == (11, 7)


def test_hosts_beyond_the_bound_go_to_overflow_with_one_warning(policy, tmp_path, caplog):
    r = LearnRecorder(tmp_path / "l.json", max_hosts=5)
    with caplog.at_level(logging.WARNING, logger="proxy_addon.learn"):
        for i in range(50):
            e = event(policy, f"h{i}.example.org", ts=f"2026-11-29T10:00:{i:02d}.000Z")
            r.on_decision(e)
            r.on_tunnel_bytes(e, 1, 2)
        r.on_decision(event(policy, "h0.example.org"))  # a known host still counts normally
    data = r.snapshot()
    assert [k[0] for k in data.hosts] == [f"h{i}.example.org" for i in range(5)]
    assert data.hosts[("h0.example.org", 443, "https")].count == 2
    assert (data.overflow.count, data.overflow.bytes_sent, data.overflow.bytes_received) == (45, 45, 90)
    assert (data.overflow.first_seen, data.overflow.last_seen) == ("2026-11-29T10:00:05.000Z", "2026-11-29T10:00:49.000Z")
    warnings = [rec.getMessage() for rec in caplog.records if "overflow" in rec.getMessage()]
    assert len(warnings) == 1 and "more than 5 distinct hosts" in warnings[0]


def test_policy_is_recorded_once(policy, tmp_path):
    r = LearnRecorder(tmp_path / "l.json")
    r.on_policy(policy, True)
    r.on_policy(policy, True)
    r.on_policy(None, False, "bad file")
    (entry,) = r.snapshot().policies
    assert entry["name"] == "azureml-2020-04" and entry["catalog"] == "azureml-2020-04"
    assert entry["sha256"] == policy.sha256 and entry["mode"] == "learn"


def test_flush_writes_only_after_changes(policy, tmp_path):
    path = tmp_path / "l.json"
    r = LearnRecorder(path, clock=ticking_clock())
    r.start()
    try:
        assert load(path).hosts == {}
        assert r.flush() is False
        r.on_decision(event(policy, "pypi.org"))
        assert r.flush() is True
        assert r.flush() is False
        assert list(load(path).hosts) == [("pypi.org", 443, "https")]
    finally:
        r.close()


def test_background_thread_writes_every_interval_and_close_writes_the_rest(policy, tmp_path):
    path = tmp_path / "l.yaml"
    r = LearnRecorder(path, interval=0.05)
    r.start()
    r.on_decision(event(policy, "pypi.org"))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not load(path).hosts:
        time.sleep(0.02)
    assert list(load(path).hosts) == [("pypi.org", 443, "https")]
    r.on_decision(event(policy, "ml.azure.com"))
    r.close()
    assert len(load(path).hosts) == 2
    assert not r._thread, "close() stops the writer thread"


def test_write_errors_are_logged_once_and_never_raise(policy, tmp_path, caplog):
    path = tmp_path / "dir" / "l.json"
    r = LearnRecorder(path)
    r.on_decision(event(policy, "pypi.org"))
    with caplog.at_level(logging.ERROR, logger="proxy_addon.learn"):
        assert r.flush() is False
        r.on_decision(event(policy, "pypi.org"))
        assert r.flush() is False
    assert len([x for x in caplog.records if "cannot write" in x.getMessage()]) == 1
    with pytest.raises(OSError):
        r.start()  # the first write at start-up fails loudly


def test_written_file_is_valid_json_with_the_documented_fields(policy, tmp_path):
    path = tmp_path / "l.json"
    r = LearnRecorder(path)
    e = event(policy, "ml.azure.com")
    r.on_decision(e)
    r.on_tunnel_bytes(e, 1, 2)
    r.start()
    r.close()
    doc = json.loads(path.read_text())
    assert doc["format"] == "azml-egress-learn" and doc["version"] == 1
    assert doc["hosts"][0] == {
        "host": "ml.azure.com", "port": 443, "protocol": "https", "first_seen": e.ts, "last_seen": e.ts,
        "count": 1, "clients": ["10.0.0.1"], "clients_more": 0, "bytes_sent": 1, "bytes_received": 2,
        "feature": "studio", "feature_title": doc["hosts"][0]["feature_title"], "group": "Azure ML service",
        "catalog_pattern": "ml.azure.com", "rule": "ml.azure.com", "rule_collection": "studio",
        "rule_collection_group": "azureml-features", "actions": {"allow": 1}, "reasons": {"rule_matched": 1},
    }


@pytest.mark.parametrize("kwargs", [{"interval": 0}, {"max_hosts": 0}, {"max_clients": -1}],
                         ids=["interval", "max_hosts", "max_clients"])
def test_bounds_must_be_positive(tmp_path, kwargs):
    with pytest.raises(ValueError):
        LearnRecorder(tmp_path / "l.json", **kwargs)


@pytest.mark.parametrize(("reason", "count", "reasons"), [
    ("sni_mismatch", 1, {"rule_matched": 1, "sni_mismatch": 1}),
    ("upstream_error", 1, {"rule_matched": 1, "upstream_error": 1}),
    ("dns_failure", 1, {"rule_matched": 1, "dns_failure": 1}),
    ("private_address", 1, {"rule_matched": 1, "private_address": 1}),
    ("proxy_auth_required", 1, {"rule_matched": 1}),
    ("invalid_request", 1, {"rule_matched": 1}),
], ids=["sni mismatch", "upstream error", "dns failure", "private address", "407 ignored", "bad request ignored"])
def test_follow_up_events_add_a_reason_not_a_request(policy, tmp_path, reason, count, reasons):
    from dataclasses import replace

    from proxy_addon.decision import Action, Reason

    r = LearnRecorder(tmp_path / "l.json")
    first = event(policy, "pypi.org")
    r.on_decision(first)
    r.on_decision(replace(first, decision=replace(first.decision, action=Action.DENY, reason=Reason(reason))))
    record = r.snapshot().hosts[("pypi.org", 443, "https")]
    assert (record.count, record.reasons, record.actions) == (count, reasons, {"allow": 1})
