"""az CLI export: valid bash, and only the argument names of the real commands."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from proxy_addon.exporters import export
from proxy_addon.exporters.model import build_model
from proxy_addon.policy_loader import load_policy

RICH = Path(__file__).parent / "data" / "rich-policy.yaml"

# Argument names of each command (reference azure-ml-hosts.md §5a/§5b; azure-firewall CLI
# extension _params.py). Values are the required ones.
COMMON_RULE = {"--description", "--source-addresses", "--destination-addresses", "--protocols", "--target-fqdns",
               "--ip-protocols", "--destination-ports", "--destination-fqdns", "--rule-type"}
ALLOWED = {
    ("policy", "rule-collection-group", "create"): (
        {"--resource-group", "--policy-name", "--name", "--priority"}, {"--resource-group", "--policy-name", "--name", "--priority"}),
    ("policy", "rule-collection-group", "collection", "add-filter-collection"): (
        {"--resource-group", "--policy-name", "--rule-collection-group-name", "--name", "--collection-priority",
         "--action", "--rule-name"} | COMMON_RULE,
        {"--resource-group", "--policy-name", "--rule-collection-group-name", "--name", "--collection-priority",
         "--action", "--rule-name", "--rule-type"}),
    ("policy", "rule-collection-group", "collection", "rule", "add"): (
        {"--resource-group", "--policy-name", "--rule-collection-group-name", "--collection-name", "--name"} | COMMON_RULE,
        {"--resource-group", "--policy-name", "--rule-collection-group-name", "--collection-name", "--name", "--rule-type"}),
    ("application-rule", "create"): (
        {"--resource-group", "--firewall-name", "--collection-name", "--name", "--protocols", "--target-fqdns",
         "--source-addresses", "--priority", "--action", "--description"},
        {"--resource-group", "--firewall-name", "--collection-name", "--name", "--protocols", "--target-fqdns"}),
    ("network-rule", "create"): (
        {"--resource-group", "--firewall-name", "--collection-name", "--name", "--protocols", "--destination-fqdns",
         "--destination-ports", "--source-addresses", "--priority", "--action", "--description"},
        {"--resource-group", "--firewall-name", "--collection-name", "--name", "--protocols", "--destination-ports"}),
}


def commands(script: str) -> list[tuple[tuple[str, ...], dict[str, list[str]]]]:
    """Each ``az network firewall ...`` line as (sub-command words, {flag: values})."""
    out = []
    for line in script.splitlines():
        if not line.startswith("az "):
            continue
        words = shlex.split(line)
        assert words[:3] == ["az", "network", "firewall"], line
        i = 3
        while i < len(words) and not words[i].startswith("--"):
            i += 1
        sub, args, flag = tuple(words[3:i]), {}, None
        for word in words[i:]:
            if word.startswith("--"):
                flag = word
                assert flag not in args, f"{flag} twice: {line}"
                args[flag] = []
            else:
                args[flag].append(word)
        out.append((sub, args))
    return out


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
@pytest.mark.parametrize("classic", [False, True], ids=["policy", "classic"])
def test_bash_accepts_the_script(tmp_path, classic):
    script = tmp_path / "rules.sh"
    script.write_text(export(load_policy(str(RICH)), "az-cli", classic=classic))
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    # without the variables it stops before calling az
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode != 0 and "RESOURCE_GROUP" in done.stderr


@pytest.mark.parametrize("classic", [False, True], ids=["policy", "classic"])
def test_only_real_argument_names(classic):
    script = export(load_policy(str(RICH)), "az-cli", classic=classic)
    seen = set()
    for sub, args in commands(script):
        assert sub in ALLOWED, sub
        allowed, required = ALLOWED[sub]
        assert set(args) <= allowed, (sub, set(args) - allowed)
        seen.add(sub)
        if sub[-1] == "create" and sub[0] in ("application-rule", "network-rule"):
            continue
        assert required <= set(args), (sub, required - set(args))
    expected = {("application-rule", "create"), ("network-rule", "create")} if classic else {
        ("policy", "rule-collection-group", "create"),
        ("policy", "rule-collection-group", "collection", "add-filter-collection"),
        ("policy", "rule-collection-group", "collection", "rule", "add")}
    assert seen == expected


def test_policy_script_carries_every_rule_in_order():
    policy = load_policy(str(RICH))
    model = build_model(policy)
    created = []
    for sub, args in commands(export(policy, "az-cli")):
        if sub[-1] == "add-filter-collection":
            created.append((args["--rule-collection-group-name"][0], args["--name"][0],
                            int(args["--collection-priority"][0]), args["--action"][0], args["--rule-name"][0]))
        elif sub[-1] == "add":
            created.append((args["--rule-collection-group-name"][0], args["--collection-name"][0], None, None,
                            args["--name"][0]))
    expected = []
    for group, collection in model.collections():
        for i, rule in enumerate(collection.rules):
            expected.append((group.name, collection.name, collection.priority if i == 0 else None,
                             collection.action if i == 0 else None, rule.name))
    assert created == expected
    mirror = next(args for sub, args in commands(export(policy, "az-cli"))
                  if args.get("--rule-name") == ["mirror"])
    assert mirror["--protocols"] == ["Http=8080", "Https=443", "Https=8443"]
    assert mirror["--target-fqdns"] == ["*.mirror.contoso.example", "mirror.contoso.example"]
    assert mirror["--source-addresses"] == ["10.0.0.0/8"]
    udp = next(args for sub, args in commands(export(policy, "az-cli"))
               if args.get("--rule-type") == ["NetworkRule"] and args.get("--ip-protocols") == ["UDP"])
    assert udp["--destination-fqdns"] == ["westeurope.tundra.azureml.ms"] and udp["--destination-ports"] == ["5831"]


def test_classic_priorities_follow_evaluation_order():
    policy = load_policy(str(RICH))
    created = [(sub[0], args["--collection-name"][0], int(args["--priority"][0]), args["--action"][0])
               for sub, args in commands(export(policy, "az-cli", classic=True)) if "--priority" in args]
    app = [c for c in created if c[0] == "application-rule"]
    assert [c[1] for c in app[:4]] == ["platform-deny", "platform-allow", "block-lookalikes", "internal"]
    assert [c[2] for c in app] == list(range(100, 100 + 10 * len(app), 10))
    assert app[0][3] == "Deny"
