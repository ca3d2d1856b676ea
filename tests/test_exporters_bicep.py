"""Bicep export, parsed with pycep-parser and compared with the ARM export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxy_addon.exporters import bicep, export
from proxy_addon.policy_loader import load_policy

pycep = pytest.importorskip("pycep", reason="pycep-parser is not installed")

RICH = Path(__file__).parent / "data" / "rich-policy.yaml"


def parse(text: str) -> dict:
    return pycep.BicepParser(cache=False).parse(text=text)


@pytest.mark.parametrize("policy_name", ["default", str(RICH)], ids=["default", "rich"])
def test_bicep_parses_to_the_arm_resources(policy_name):
    policy = load_policy(policy_name)
    parsed = parse(export(policy, "bicep"))
    arm = json.loads(export(policy, "arm"))
    assert parsed["parameters"]["firewallPolicyName"]["type"] == "string"
    assert parsed["resources"]["firewallPolicy"]["existing"] is True
    groups = [r for name, r in parsed["resources"].items() if name != "firewallPolicy"]
    assert len(groups) == len(arm["resources"])
    for resource, arm_resource in zip(groups, arm["resources"], strict=True):
        assert resource["type"] == arm_resource["type"]
        assert resource["api_version"] == arm_resource["apiVersion"]
        assert resource["config"]["parent"] == "firewallPolicy"
        assert resource["config"]["name"] == arm_resource["name"].split("'")[-2]
        assert resource["config"]["properties"] == arm_resource["properties"]


@pytest.mark.parametrize(("text", "literal"), [
    ("plain", "'plain'"),
    ("it's", "'it\\'s'"),
    ("back\\slash", "'back\\\\slash'"),
    ("${injection}", "'\\${injection}'"),
    ("two\nlines", "'two\\nlines'"),
], ids=["plain", "quote", "backslash", "interpolation", "newline"])
def test_string_escapes(text, literal):
    assert bicep.string(text) == literal


def test_escaped_string_stays_one_literal_for_the_parser():
    literal = bicep.string("a'b ${c} \\d")
    # pycep keeps escapes as written: the whole literal is one string token
    assert parse(f"param p string = {literal}\n")["parameters"]["p"]["default"] == literal[1:-1]
