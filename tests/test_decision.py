import pytest

from proxy_addon.decision import Action, Decision, Reason


@pytest.mark.parametrize("decision, message", [
    (Decision(Action.ALLOW, Reason.RULE_MATCHED, "https", "pypi.org", 443, rule="pypi", rule_collection="python"),
     "HTTPS request from 10.0.0.4:55640 to pypi.org:443. Action: Allow. Rule Collection: python. Rule: pypi"),
    (Decision(Action.DENY, Reason.NO_RULE_MATCHED, "https", "x.example", 443),
     "HTTPS request from 10.0.0.4:55640 to x.example:443. Action: Deny. No rule matched. Proceeding with default action"),
    (Decision(Action.DENY, Reason.PORT_NOT_ALLOWED, "https", "x.example", 22),
     "HTTPS request from 10.0.0.4:55640 to x.example:22. Action: Deny. No rule matched. Proceeding with default action"),
    (Decision(Action.DENY, Reason.DENY_RULE, "http", "x.example", 80, rule="r", rule_collection="c"),
     "HTTP request from 10.0.0.4:55640 to x.example:80. Action: Deny. Rule Collection: c. Rule: r"),
    (Decision(Action.DENY, Reason.SNI_MISSING, "https", "x.example", 443),
     "HTTPS request from 10.0.0.4:55640 was denied. Reason: SNI TLS extension was missing."),
    (Decision(Action.DENY, Reason.IP_LITERAL, "https", "203.0.113.10", 443, detail="an IP"),
     "HTTPS request from 10.0.0.4:55640 to 203.0.113.10:443. Action: Deny. Reason: an IP"),
], ids=["allow", "no match", "port", "deny rule", "sni missing", "other reason"])
def test_azure_firewall_wording(decision, message):
    assert decision.firewall_message("10.0.0.4:55640") == message


def test_fields_and_feature_description():
    d = Decision(Action.DENY, Reason.NO_RULE_MATCHED, "https", "h.example", 443, feature="pip-downloads",
                 feature_title="pip package downloads", group="Python", feature_enabled=False)
    assert d.fields()["action"] == "deny" and d.fields()["reason"] == "no_rule_matched"
    assert d.describe_feature() == "pip package downloads (pip-downloads, Python), not enabled in this policy"
    assert Decision(Action.DENY, Reason.NO_RULE_MATCHED, "https", "h", 1).describe_feature() == "not an Azure ML host"
