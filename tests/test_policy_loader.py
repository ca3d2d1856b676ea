"""Policy files: every mistake names file, line, key path and what to write."""

import pytest

from proxy_addon.config import ConfigError
from proxy_addon.policy_loader import load_policy, policy_from_text, rule_name_for


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as e:
        policy_from_text(text, file="p.yaml")
    return [str(p) for p in e.value.problems]


@pytest.mark.parametrize("text, expected", [
    ("version: 1\nfeaturs: [required]\n", "p.yaml:2: featurs: unknown key 'featurs'; did you mean 'features'?"),
    ("version: 2\n", "p.yaml:1: version:"),
    ("name: x\n", "missing required key: 'version'"),
    ("version: 1\nfeatures: [pip]\n", "p.yaml:2: features[0]: unknown feature 'pip' in catalog 'azureml'; did you mean 'pip-"),
    ("version: 1\nfeatures: [training-clusters]\n", "it is a feature of catalog 'azureml-2020-04'"),
    ("version: 1\nfeatures: ['group:Pyton']\n", "no group 'Pyton'; did you mean 'Python'?"),
    ("version: 1\nfeatures: required\n", "features: expected array, got str 'required'"),
    ("version: 1\nmode: block\n", "mode: 'block' is not one of 'enforce', 'simulate', 'learn'"),
    ("version: 1\ncatalog: azurml\n", "unknown catalog 'azurml'"),
    ("version: 1\ncloud: AzureUSGovernment\ncatalog: azureml\n", "does not match catalog 'azureml'"),
    ("version: 1\nworkspace: {storage_account: Contoso.ML}\n", "workspace.storage_account"),
    ("version: 1\nworkspace: {bucket: x}\n", "unknown key 'bucket'"),
    ("version: 1\nrule_collections:\n  - name: c\n    priority: 100\n    action: allow\n    rules:\n      - name: r\n        target_fqdns: ['a.*.c']\n",
     "p.yaml:8: rule_collections[0].rules[0].target_fqdns[0]: target FQDN 'a.*.c': '*' is accepted only as the left-most character"),
    ("version: 1\nrule_collections:\n  - name: c\n    priority: 100\n    action: allow\n    rules:\n      - name: r\n        target_fqdns: ['pypi.org:443']\n",
     "contains a port"),
    ("version: 1\nrule_collections:\n  - name: c\n    priority: 100\n    action: allow\n    rules:\n      - name: r\n        target_fqdns: [x.example]\n        protocols: [ftp:21]\n",
     "write http:PORT or https:PORT"),
    ("version: 1\nrule_collections:\n  - name: c\n    priority: 100\n    action: allow\n    rules:\n      - name: r\n        target_fqdns: [x.example]\n        source_addresses: [10.0.0.0/33]\n",
     "not an IP address or CIDR"),
    ("version: 1\nrule_collections:\n  - name: c\n    priority: 10\n    action: allow\n    rules: []\n", "priority"),
    ("version: 1\nrule_collections:\n  - name: c\n    priority: 100\n    action: permit\n    rules: []\n", "'permit' is not one of 'allow', 'deny'"),
    ("version: 1\nrule_collections:\n  - name: 'bad name!'\n    priority: 100\n    action: allow\n    rules: []\n", "Azure Firewall names"),
    ("version: 1\nrule_collections:\n  - name: c\n    priority: 100\n    action: allow\n    rules:\n      - name: r\n", "needs 'target_fqdns' or 'destination_addresses'"),
    ("version: 1\nrule_collections:\n  - name: c\n    priority: 100\n    action: allow\n    rules:\n      - {name: r, target_fqdns: [a.example], feature: pypi}\n", "unknown feature 'pypi'"),
    ("version: 1\nrule_collections:\n  - {name: c, priority: 100, action: allow, rules: []}\n  - {name: c, priority: 200, action: allow, rules: []}\n", "already used"),
    ("version: 1\nversion: 1\n", "duplicate key 'version'"),
    ("version: 1\nfeatures: [required\n", "not valid YAML"),
    ("", "the file is empty"),
    ("- version: 1\n", "expected object"),
], ids=["typo key", "bad version", "missing version", "unknown feature", "feature of another catalog", "group typo",
        "wrong type", "bad mode", "bad catalog", "cloud mismatch", "bad workspace value", "unknown workspace key",
        "middle wildcard", "port in pattern", "bad protocol", "bad cidr", "low priority", "bad action", "bad name",
        "empty rule", "unknown rule feature", "duplicate collection", "duplicate key", "yaml syntax", "empty file",
        "top-level list"])
def test_mistakes_are_reported_precisely(text, expected):
    found = problems(text)
    assert any(expected in p for p in found), found


def test_all_problems_reported_at_once():
    found = problems("version: 1\nfeatures: [pip, conda, nope]\n")
    assert len(found) == 2


def test_missing_file():
    with pytest.raises(ConfigError, match="file not found"):
        load_policy("/nonexistent/policy.yaml")


def test_builtin_policies():
    default = load_policy()
    assert {"pip-index", "pip-downloads", "conda", "cran", "entra-id", "container-images"} <= default.enabled_features
    april = load_policy("azureml-2020-04")
    assert april.catalog.id == "azureml-2020-04"
    assert len(april.enabled_features) == len(april.catalog.features)
    hosts = {p.text for pl in april.placements() for p in pl.rule.target_fqdns}
    assert "files.pythonhosted.org" not in hosts and "pypi.org" in hosts and len(hosts) == 15


def test_warnings_for_risky_patterns():
    p = policy_from_text("version: 1\nrule_collections:\n  - name: c\n    priority: 100\n    action: allow\n"
                         "    rules:\n      - {name: r, target_fqdns: ['*pypi.org']}\n", file="p.yaml")
    assert any("evilpypi.org" in w and "p.yaml:7" in w for w in p.warnings)


def test_mode_override():
    assert load_policy(None, "simulate").mode == "simulate"


@pytest.mark.parametrize("pattern, name", [
    ("pypi.org", "pypi.org"), ("*.azureml.ms", "wildcard.azureml.ms"), ("*pypi.org", "wildcard-pypi.org"),
])
def test_rule_names(pattern, name):
    assert rule_name_for(pattern) == name


def test_warns_when_private_ranges_open_the_metadata_endpoint():
    p = policy_from_text("version: 1\noptions: {private_ranges_allowed: [0.0.0.0/0, 10.0.0.0/8]}\n", file="p.yaml")
    assert any("169.254.169.254" in w for w in p.warnings)
    assert not any("10.0.0.0/8" in w for w in p.warnings)
