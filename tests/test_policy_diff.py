"""Diff between policies and catalogs."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy_addon.config import ConfigError
from proxy_addon.policy_diff import diff_policies, entries, format_text, load_side
from proxy_addon.policy_loader import load_policy, policy_from_text

RICH = Path(__file__).parent / "data" / "rich-policy.yaml"


@pytest.fixture(scope="module")
def april_vs_today():
    return diff_policies(load_side("azureml-2020-04"), load_side("catalog:azureml"), "azureml-2020-04", "catalog:azureml")


def test_what_the_april_2020_list_misses(april_vs_today):
    missing = {s["pattern"]: s for s in april_vs_today.only_in_b}
    for host in ("files.pythonhosted.org", "*.pythonhosted.org", "login.microsoftonline.com", "mcr.microsoft.com",
                 "*.blob.core.windows.net", "*.data.mcr.microsoft.com"):
        assert host in missing, host
    assert missing["files.pythonhosted.org"]["features"] == ["pip-downloads"]
    assert missing["files.pythonhosted.org"]["other_side"]["action"] == "deny"
    # *.instances.azureml.ms is new as a pattern but *.azureml.ms already allowed it in 2020
    covered = missing["*.instances.azureml.ms"]["other_side"]
    assert covered["action"] == "allow" and covered["rule"] == "wildcard.azureml.ms"
    assert "pip-downloads" in april_vs_today.features_only_in_b


def test_what_today_dropped_from_april_2020(april_vs_today):
    dropped = {s["pattern"] for s in april_vs_today.only_in_a}
    assert dropped == {"*.batchai.core.windows.net", "mlworkspace.azure.ai", "*.aether.ms", "windows.net",
                       "vault.azure.net", "microsoft.com", "azurecr.io"}
    assert set(april_vs_today.features_only_in_a) == {"training-clusters", "experiments", "azure-portal-workspace",
                                                      "pipelines", "blob-storage"}


def test_port_changes(april_vs_today):
    changed = {c["pattern"]: c for c in april_vs_today.changed}
    assert changed["*.azureml.ms"]["a"]["ports"] == ["http:80", "https:443"]
    assert changed["*.azureml.ms"]["b"]["ports"] == ["https:443"]
    assert "pypi.org" not in changed  # http:80 https:443 on both sides


def test_action_change_and_identical_policies():
    a = load_policy(str(RICH))
    text = RICH.read_text().replace("action: deny\n    rules:\n      - name: no-test-pypi",
                                    "action: allow\n    rules:\n      - name: no-test-pypi")
    b = policy_from_text(text, "b.yaml")
    result = diff_policies(a, b)
    assert [(c["pattern"], c["a"]["action"], c["b"]["action"]) for c in result.changed] == [
        ("test.pypi.org", "deny", "allow"), ("*evil.example", "deny", "allow")]
    assert not result.only_in_a and not result.only_in_b
    same = diff_policies(a, load_policy(str(RICH)))
    assert same.empty and "no differences" in format_text(same)


def test_entries_first_rule_decides_the_action():
    rich = entries(load_policy(str(RICH)))
    assert rich["test.pypi.org"].action == "deny"
    assert rich["*.instances.azureml.ms"].ports == ("https:443", "https:8787", "https:18881")
    assert rich["westeurope.tundra.azureml.ms"].ports == ("udp:5831",)
    assert rich["contosoml.file.core.windows.net"].ports == ("https:443", "tcp:445")


def test_text_report(april_vs_today):
    text = format_text(april_vs_today)
    assert text.startswith("--- A: azureml-2020-04\n+++ B: catalog:azureml\n")
    assert "  + files.pythonhosted.org  allow http:80 https:443 [pip-downloads]  -> denied there " \
           "(files.pythonhosted.org:443: no_rule_matched)" in text
    assert "  ~ *.azureml.ms: A allow http:80 https:443  B allow https:443" in text


def test_unknown_side():
    with pytest.raises(ConfigError, match="unknown catalog 'nope'"):
        load_side("catalog:nope")
    with pytest.raises(ConfigError, match="file not found"):
        load_side("missing-policy.yaml")
