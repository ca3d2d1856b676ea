from proxy_addon.audit import DecisionEvent
from proxy_addon.decision import Action, Decision, Reason
from proxy_addon.deny import deny_text


def test_body_names_host_feature_and_fix():
    d = Decision(Action.DENY, Reason.NO_RULE_MATCHED, "https", "files.pythonhosted.org", 443, feature="pip-downloads",
                 feature_title="pip package downloads", group="Python", feature_enabled=False, detail="no rule matched",
                 catalog="azureml")
    status, headers, body = deny_text(DecisionEvent(d, "enforce", "127.0.0.1:1", "CONNECT"), "/etc/p.yaml")
    assert status == 403
    assert headers["X-Azml-Egress-Decision"] == "deny" and headers["X-Azml-Egress-Reason"] == "no_rule_matched"
    assert headers["X-Azml-Egress-Feature"] == "pip-downloads"
    assert "files.pythonhosted.org:443" in body
    assert "pip package downloads (pip-downloads, Python), not enabled in this policy" in body
    assert "add 'pip-downloads' to 'features' in the policy (/etc/p.yaml) (catalog 'azureml')" in body


def test_advice_for_generated_rules_and_built_in_policies():
    from proxy_addon.policy_loader import builtin_policy_path, load_policy

    policy = load_policy()
    d = policy.decide("pypi.org", 8443)
    _, _, body = deny_text(DecisionEvent(d, "enforce", "127.0.0.1:1", "CONNECT"), str(builtin_policy_path()))
    assert "comes from catalog feature 'pip-index'" in body
    assert "target_fqdns [pypi.org], protocols [https:8443]" in body
    assert "a copy of the built-in policy default.yaml (run it with --config)" in body


def test_unknown_host_and_host_mismatch():
    d = Decision(Action.DENY, Reason.NO_RULE_MATCHED, "https", "evil.example", 443)
    _, headers, body = deny_text(DecisionEvent(d, "enforce", "127.0.0.1:1", "CONNECT"), None)
    assert "not an Azure ML host" in body and "target_fqdns [evil.example]" in body
    assert "X-Azml-Egress-Feature" not in headers
    d = Decision(Action.DENY, Reason.HOST_MISMATCH, "http", "pypi.org", 80)
    assert deny_text(DecisionEvent(d, "enforce", "127.0.0.1:1", "GET"), None)[0] == 400
