"""End to end: an imported Azure Firewall policy simulated by a real proxy process."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from proxy_addon.cli import main

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")

FIREWALL = [{
    "name": "contoso-policy/egress",
    "type": "Microsoft.Network/firewallPolicies/ruleCollectionGroups",
    "properties": {"priority": 250, "ruleCollections": [
        {"ruleCollectionType": "FirewallPolicyFilterRuleCollection", "name": "python-allow", "priority": 400,
         "action": {"type": "Allow"}, "rules": [
             {"ruleType": "ApplicationRule", "name": "pypi-all", "sourceAddresses": ["*"],
              "protocols": [{"protocolType": "Https", "port": 443}], "targetFqdns": ["pypi.org", "*.pypi.org"]}]},
        {"ruleCollectionType": "FirewallPolicyFilterRuleCollection", "name": "lookalike-deny", "priority": 150,
         "action": {"type": "Deny"}, "rules": [
             {"ruleType": "ApplicationRule", "name": "no-test-index", "sourceAddresses": ["*"],
              "protocols": [{"protocolType": "Https", "port": 443}], "targetFqdns": ["test.pypi.org"]}]},
    ]},
}]


def curl(proxy, url, pki):
    done = subprocess.run(["curl", "-sS", "--max-time", "10", "-x", proxy.url, "--cacert", str(pki.ca_pem), "-D", "-",
                           url], capture_output=True, text=True, timeout=20)
    return done.returncode, done.stdout


def test_deny_collection_of_higher_priority_wins_with_imported_names(tmp_path, proxy_factory, pki):
    source = tmp_path / "firewall.json"
    source.write_text(json.dumps(FIREWALL))
    policy = tmp_path / "imported.yaml"
    assert main(["import", str(source), "-o", str(policy)]) == 0
    proxy = proxy_factory(["--config", str(policy)])

    code, out = curl(proxy, "https://test.pypi.org/simple/", pki)
    assert code != 0 and "403" in out and "X-Azml-Egress-Reason: deny_rule" in out
    code, out = curl(proxy, "https://pypi.org/simple/", pki)
    assert code == 0 and "HTTP/1.1 200" in out

    denied, allowed = proxy.decisions(2)
    assert (denied["host"], denied["action"], denied["reason"]) == ("test.pypi.org", "deny", "deny_rule")
    assert (denied["rule_collection_group"], denied["rule_collection"], denied["rule"]) == (
        "egress", "lookalike-deny", "no-test-index")
    assert denied["msg"].endswith("to test.pypi.org:443. Action: Deny. Rule Collection: lookalike-deny. "
                                  "Rule: no-test-index")
    assert denied["feature"] is None or denied["feature_enabled"] is False
    assert (allowed["host"], allowed["action"], allowed["rule_collection"], allowed["rule"]) == (
        "pypi.org", "allow", "python-allow", "pypi-all")
    assert allowed["msg"].endswith("Action: Allow. Rule Collection: python-allow. Rule: pypi-all")
    assert allowed["feature"] == "pip-index" and allowed["policy"] == "firewall"
