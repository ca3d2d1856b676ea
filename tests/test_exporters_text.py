"""Plain-text export."""

from __future__ import annotations

from pathlib import Path

from proxy_addon.exporters import export
from proxy_addon.patterns import parse_pattern
from proxy_addon.policy_loader import load_policy

RICH = Path(__file__).parent / "data" / "rich-policy.yaml"


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_one_valid_pattern_per_line_in_evaluation_order():
    policy = load_policy("azureml-2020-04")
    patterns = lines(export(policy, "text"))
    assert patterns == [p.text for pl in policy.placements() for p in pl.rule.target_fqdns]
    for pattern in patterns:
        parse_pattern(pattern)


def test_denies_ports_and_sources_are_comments():
    text = export(load_policy(str(RICH)), "text")
    patterns = lines(text)
    assert "test.pypi.org" not in patterns and "mirror.contoso.example" in patterns
    assert len(patterns) == len(set(patterns))
    assert "#   DefaultApplicationRuleCollectionGroup/internal/mirror: only from 10.0.0.0/8" in text
    assert "#   DefaultApplicationRuleCollectionGroup/block-lookalikes/no-test-pypi: DENY test.pypi.org" in text
