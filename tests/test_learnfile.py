"""The learn file: merging, reading, validating and atomic writing."""

from __future__ import annotations

import json

import pytest

from proxy_addon import learnfile
from proxy_addon.config import ConfigError
from proxy_addon.learnfile import HostRecord, LearnData, Overflow, load, load_all, merge, save

T1, T2, T3, T4 = ("2026-11-29T10:00:00.000Z", "2026-11-29T11:00:00.000Z", "2026-11-29T12:00:00.000Z",
                  "2026-11-29T13:00:00.000Z")


def rec(host="pypi.org", port=443, protocol="https", first=T1, last=T2, count=1, clients=("10.0.0.1",), **kw):
    return HostRecord(host, port, protocol, first, last, count=count, clients=list(clients), **kw)


def data(*records, overflow=None, max_clients=16, started=T1, updated=T2, file="a.json"):
    d = LearnData(started=started, updated=updated, max_clients=max_clients, overflow=overflow, files=[file])
    for r in records:
        d.hosts[r.key] = r
    return d


def test_merge_adds_counts_bytes_and_widens_the_time_span():
    a = data(rec(count=2, first=T2, last=T3, bytes_sent=10, bytes_received=100, reasons={"rule_matched": 2},
                 actions={"allow": 2}), started=T2, updated=T3)
    b = data(rec(count=3, first=T1, last=T2, bytes_sent=1, bytes_received=2, reasons={"rule_matched": 1,
                 "sni_mismatch": 2}, actions={"allow": 1, "deny": 2}), started=T1, updated=T4, file="b.json")
    m = merge([a, b])
    (r,) = m.hosts.values()
    assert (r.count, r.bytes_sent, r.bytes_received) == (5, 11, 102)
    assert (r.first_seen, r.last_seen) == (T1, T3)
    assert r.reasons == {"rule_matched": 3, "sni_mismatch": 2} and r.actions == {"allow": 3, "deny": 2}
    assert (m.started, m.updated, m.files) == (T1, T4, ["a.json", "b.json"])
    assert a.hosts[r.key].count == 2, "merge must not modify its inputs"


@pytest.mark.parametrize(("a_clients", "b_clients", "bound", "clients", "more"), [
    (["10.0.0.1"], ["10.0.0.1"], 16, ["10.0.0.1"], 0),
    (["10.0.0.1"], ["10.0.0.2"], 16, ["10.0.0.1", "10.0.0.2"], 0),
    (["10.0.0.1", "10.0.0.2"], ["10.0.0.3", "10.0.0.2"], 2, ["10.0.0.1", "10.0.0.2"], 1),
], ids=["same client once", "clients united", "bound holds, extra counted"])
def test_merge_unites_clients_up_to_the_bound(a_clients, b_clients, bound, clients, more):
    m = merge([data(rec(clients=a_clients), max_clients=bound), data(rec(clients=b_clients), max_clients=bound)])
    (r,) = m.hosts.values()
    assert (r.clients, r.clients_more) == (clients, more)


def test_merge_keeps_distinct_keys_and_fills_missing_attribution():
    a = data(rec("pypi.org", 443), rec("pypi.org", 80, "http"))
    b = data(rec("pypi.org", 443, feature="pip-index", rule="pypi.org"), rec("example.org"))
    m = merge([a, b])
    assert list(m.hosts) == [("pypi.org", 443, "https"), ("pypi.org", 80, "http"), ("example.org", 443, "https")]
    assert m.hosts[("pypi.org", 443, "https")].feature == "pip-index"
    assert m.hosts[("pypi.org", 443, "https")].rule == "pypi.org"


def test_merge_adds_overflow():
    m = merge([data(overflow=Overflow(3, 10, 20, T2, T3)), data(), data(overflow=Overflow(1, 0, 5, T1, T2))])
    assert m.overflow == Overflow(4, 10, 25, T1, T3)


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_save_and_load_round_trip(tmp_path, suffix):
    original = data(rec(feature="pip-index", reasons={"rule_matched": 1}), rec("203.0.113.7", 8443),
                    overflow=Overflow(2, 1, 1, T1, T2))
    original.policies.append({"name": "p", "source": "p.yaml", "sha256": "ab", "catalog": "azureml", "mode": "learn"})
    path = tmp_path / f"learn{suffix}"
    save(original, path)
    text = path.read_text()
    assert text.lstrip().startswith("{" if suffix == ".json" else "format:")
    loaded = load(path)
    assert loaded.hosts == original.hosts and loaded.overflow == original.overflow
    assert loaded.policies == original.policies and loaded.files == [str(path)]


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not valid JSON"),
    ("[]", "expected object"),
    ('{"format": "azml-egress-learn", "version": 2, "hosts": []}', "version"),
    ('{"format": "other", "version": 1, "hosts": []}', "format"),
    ('{"format": "azml-egress-learn", "version": 1, "hosts": [{"host": "a.b", "port": 443, "protocol": "ftp", '
     '"count": 1, "first_seen": "2026-11-29T10:00:00Z", "last_seen": "2026-11-29T10:00:00Z"}]}', "'ftp' is not one of"),
    ('{"format": "azml-egress-learn", "version": 1, "hosts": [{"host": "a.b", "port": 443, "protocol": "https", '
     '"count": 1, "first_seen": "2026-13-29T10:00:00Z", "last_seen": "2026-11-29T10:00:00Z"}]}', "not a valid time"),
    ('{"format": "azml-egress-learn", "version": 1, "hosts": [], "extra": 1}', "unknown key 'extra'"),
], ids=["bad json", "not an object", "wrong version", "wrong format", "bad protocol", "bad time", "unknown key"])
def test_bad_learn_files_are_reported_with_the_file_name(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as err:
        load(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_duplicate_entries_are_refused(tmp_path):
    doc = data(rec()).to_dict()
    doc["hosts"].append(dict(doc["hosts"][0]))
    path = tmp_path / "dup.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=r"hosts\[1\]: duplicate entry for pypi.org:443"):
        load(path)


def test_load_all_reports_every_bad_file(tmp_path):
    good = tmp_path / "good.json"
    save(data(rec()), good)
    with pytest.raises(ConfigError) as err:
        load_all([good, tmp_path / "missing.json", tmp_path / "also-missing.yaml"])
    assert [p.message for p in err.value.problems] == ["file not found", "file not found"]


@pytest.mark.parametrize(("name", "problem"), [
    ("learn.json", None),
    ("learn.YAML", None),
    ("learn.txt", "must end in .json, .yaml or .yml"),
    ("missing-dir/learn.json", "does not exist"),
], ids=["json", "yaml upper case", "unknown extension", "missing directory"])
def test_check_path(tmp_path, name, problem):
    result = learnfile.check_path(tmp_path / name)
    assert result == problem if problem is None else problem in result
