"""The azml-egress CLI: every input of the matching spec answered by `check`."""

import json
import subprocess
from pathlib import Path

import pytest

from proxy_addon.cli import main
from support.proxy import azml_egress_command

DATA = Path(__file__).parent / "data"


def check(capsys, target, config=None, *extra):
    argv = ["check", target, "--json", *extra]
    if config:
        argv += ["--config", str(DATA / f"{config}.yaml") if not config.startswith("azureml-2020") else config]
    code = main(argv)
    out = capsys.readouterr().out
    return code, json.loads(out)


@pytest.mark.parametrize("config, target, action, reason", [
    ("star-pypi", "pypi.org", "deny", "no_rule_matched"),
    ("star-pypi", "test.pypi.org", "allow", "rule_matched"),
    ("star-pypi", "evilpypi.org", "deny", "no_rule_matched"),
    ("suffix-pypi", "evilpypi.org", "allow", "rule_matched"),
    ("azureml-ms", "notazureml.ms", "deny", "no_rule_matched"),
    ("azureml-ms", "azureml.ms.evil.example", "deny", "no_rule_matched"),
    ("azureml-ms", "evil-ml.azure.com", "deny", "no_rule_matched"),
    ("azureml-ms", "xml.azure.com", "deny", "no_rule_matched"),
    ("azureml-ms", "contoso.api.azureml.ms", "allow", "rule_matched"),
    (None, "PyPI.ORG", "allow", "rule_matched"),
    (None, "pypi.org.", "allow", "rule_matched"),
    (None, "pypi.org..", "deny", "invalid_host"),
    (None, "pypi\x00.org", "deny", "invalid_host"),
    ("instances", "ci-contoso.westeurope.instances.azureml.ms:8787", "allow", "rule_matched"),
    ("instances", "ci-contoso.westeurope.instances.azureml.ms:22", "deny", "port_not_allowed"),
    (None, "203.0.113.10:443", "deny", "ip_literal"),
    (None, "[2001:db8::10]:443", "deny", "ip_literal"),
    (None, "3405803786:443", "deny", "ip_literal"),
    ("mcr-only", "westeurope.data.mcr.microsoft.com", "deny", "no_rule_matched"),
    ("mcr-data", "westeurope.data.mcr.microsoft.com", "allow", "rule_matched"),
])
def test_check_answers_the_spec_inputs(capsys, config, target, action, reason):
    code, data = check(capsys, target, config)
    assert (data["action"], data["reason"]) == (action, reason)
    assert code == (0 if action == "allow" else 1)
    assert "ts" not in data and "client" not in data


def test_check_names_features_of_denied_hosts(capsys):
    _, data = check(capsys, "ci-contoso.westeurope.instances.azureml.ms:22", "instances")
    assert data["feature"] == "compute-instance"
    _, data = check(capsys, "westeurope.data.mcr.microsoft.com", "mcr-only")
    assert data["feature"] == "container-images" and data["feature_enabled"] is False
    _, data = check(capsys, "files.pythonhosted.org", "azureml-2020-04")
    assert (data["feature"], data["feature_title"]) == ("pip-downloads", "pip package downloads")


def test_check_text_output(capsys):
    assert main(["check", "files.pythonhosted.org", "--config", "azureml-2020-04"]) == 1
    out = capsys.readouterr().out
    assert "DENY files.pythonhosted.org:443 (https) reason no_rule_matched" in out
    assert "pip package downloads (pip-downloads, Python), not enabled in this policy" in out


def test_check_plain_http(capsys):
    code, data = check(capsys, "pypi.org", None, "--protocol", "http")
    assert code == 0 and data["port"] == 80 and data["method"] == "GET" and data["msg"].startswith("HTTP request")


def test_validate_ok_and_warnings(capsys):
    assert main(["validate", "--config", str(DATA / "suffix-pypi.yaml")]) == 0
    out = capsys.readouterr().out
    assert "evilpypi.org" in out and "valid" in out


def test_validate_bad_file_exit_2(capsys):
    assert main(["validate", "--config", str(DATA / "bad-policy.yaml")]) == 2
    err = capsys.readouterr().err
    assert "bad-policy.yaml:2: features[1]: unknown feature 'pip'" in err
    assert "bad-policy.yaml:9: rule_collections[0].rules[0].target_fqdns[0]" in err
    assert "Traceback" not in err


def test_catalog_listing(capsys):
    assert main(["catalog", "--group", "Python"]) == 0
    out = capsys.readouterr().out
    assert "pip-downloads: pip package downloads" in out and "files.pythonhosted.org" in out
    assert main(["catalog", "--json", "--catalog", "azureml-2020-04"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert sum(len(f["hosts"]) for f in data[0]["features"]) == 15
    assert main(["catalog", "--group", "Nope"]) == 2


def test_addon_path(capsys):
    assert main(["addon-path"]) == 0
    assert Path(capsys.readouterr().out.strip()).is_file()


@pytest.mark.parametrize("argv, message", [
    (["run", "--listen-port", "99999"], "outside 0..65535"),
    (["run", "--mode", "block"], "invalid choice"),
    (["check"], "required"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_flags_exit_2_with_message(argv, message):
    done = subprocess.run(azml_egress_command() + argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_run_refuses_a_bad_policy():
    done = subprocess.run(azml_egress_command() + ["run", "--config", str(DATA / "bad-policy.yaml"),
                                                   "--listen-port", "0"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "unknown feature 'pip'" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("argv, message", [
    (["check", "pypi.org:99999"], "outside 1..65535"),
    (["check", "pypi.org:abc"], "not a number"),
    (["check", "pypi.org", "--source", "nope"], "not an IP address"),
    (["validate", "--config", ""], "--config is empty"),
    (["validate", "--config", "/dev/zero"], "not a regular file"),
    (["validate", "--config", "x" * 100_000], "cannot be read"),
    (["run", "-s", "/nonexistent/script.py", "--listen-port", "0"], "not a readable file"),
    (["run", "--metrics-host", "\u202ebad host", "--listen-port", "0"], "--metrics-host"),
])
def test_bad_input_exits_2_with_a_message(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
